"""Packages for setuptools; everything else is in setup.cfg.

Only here because setup.cfg cannot both find the packages and map one more: the top-level
migrations_sql/ folder ships inside the wheel as package `notifications_api.migrations_sql`
(read with importlib.resources; a wheel contains only packages, see migrate.py).
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["notifications_api", "notifications_api.*"])
    + ["notifications_api.migrations_sql"],
    package_dir={"notifications_api.migrations_sql": "migrations_sql"},
    package_data={"notifications_api.migrations_sql": ["*.sql", "repeatable/*.sql"],
                  # the web inbox's files (views/ui.py serves them from the package)
                  "notifications_api.views": ["ui_assets/*.js", "ui_assets/*.css", "ui_assets/*.html"],
                  # the /docs page's script (web/openapi.py)
                  "notifications_api.web": ["docs_assets/*.js"]},
)
