"""The SQL migrations, shipped inside the wheel as `notifications_api.migrations_sql` (see setup.py).

Numbered files here are applied once each, `repeatable/` files whenever they change; read with
importlib.resources by notifications_api.migrate. Only the .sql files matter: this file just makes
the folder a package, so that the same import finds it in a checkout, an editable install and a wheel.
"""
