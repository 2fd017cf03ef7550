"""Settings of the peer: a small JSON API deployed the way Django projects usually are.

Everything that varies comes from the environment peer.py sets (PEER_*). DEBUG is off, database
connections persist (CONN_MAX_AGE), and the rate limits use django-ratelimit on Django's own
RedisCache when PEER_REDIS_URL is set; without it they are off (`serve --no-limits`).
"""
import os

from psycopg.conninfo import conninfo_to_dict

DEBUG = False
SECRET_KEY = os.environ.get("PEER_SECRET_KEY", "peer-benchmark-only-not-a-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "notifications",
    "peersite",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "peersite.auth.JWTAuthenticationMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
]
ROOT_URLCONF = "peersite.urls"
WSGI_APPLICATION = "peersite.wsgi.application"
TEMPLATES = []  # JSON only
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"  # the package's migrations use AutoField


def _database(conninfo):
    """A libpq URL or key=value string (what bench/run.py has) as Django's DATABASES entry."""
    params = conninfo_to_dict(conninfo)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", ""),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        "OPTIONS": params,  # sslmode, ...
        "CONN_MAX_AGE": None,  # persistent: one connection per worker for its whole life
    }


DATABASE_URL = os.environ.get("PEER_DATABASE_URL", "dbname=peer")
DATABASES = {"default": _database(DATABASE_URL)}

# The user's JWT (HS256, sub = the user's uuid = auth_user.username), as the service accepts it.
JWT_SECRET = os.environ.get("PEER_JWT_SECRET", "")
JWT_ALGORITHMS = ["HS256"]

# Per-user read limit: the service's default RATE_LIMIT_USER_READ (notifications_api/config.py).
REDIS_URL = os.environ.get("PEER_REDIS_URL", "")
RATE_LIMIT_USER_READ = os.environ.get("PEER_RATE_LIMIT_USER_READ", "600/m")
RATELIMIT_ENABLE = bool(REDIS_URL)
RATELIMIT_VIEW = "peersite.views.rate_limited"
# django-ratelimit lists django-redis, not Django's RedisCache, as supported (W001); Django's works:
# SET NX, then EXISTS + INCR once the window's key exists (three round trips per hit; README.md).
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "peer"}}
else:  # limits off: nothing uses the cache (its check would refuse a dummy one, hence E003)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
