"""The web inbox in a real browser: Playwright driving Debian's Chromium (no browser download),
headless, against gunicorn + PostgreSQL, with Pushpin in front where it is installed.

Two origins, as in production: the API (gunicorn, directly or through Pushpin) and a host page on
another origin (`HostSite`, with a strict CSP) that embeds `<notification-inbox>` with one script tag
and hands it a user's JWT through its token callback. Missing chromium, pushpin or the playwright
package: skipped locally, a failure under CI=true (.ci/run installs them).
"""
from __future__ import annotations

import os
import secrets
import shutil
import uuid

import pytest
from machine_tools import skip_unless_ci
from web_ui_helpers import CHROMIUM_ARGS, POLL_SECONDS, Api, Gunicorn, HostSite, Stack, free_port, held


@pytest.fixture(scope="session")
def host_origin_port():
    return free_port()


@pytest.fixture(scope="session")
def stack(database, tmp_path_factory, host_origin_port):
    from notifications_api.db import admin
    from notifications_api.ops import devpushpin

    work = tmp_path_factory.mktemp("web-ui")
    demo_user = str(uuid.uuid4())
    admin.create_user(database.admin, user_id=demo_user, email=f"{demo_user}@example.test", active=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_", "RATE_LIMIT", "SERVICE_TOKEN", "GRIP_",
                                "METRICS_TOKEN", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "PORT",
                                "ENABLE_", "CORS_"))}
    env.update({
        "ENV_FILE": os.devnull, "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "DATABASE_URL": database.app,
        "JWT_SECRET": secrets.token_urlsafe(36), "SERVICE_TOKEN": secrets.token_urlsafe(36), "METRICS_TOKEN": "",
        "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "8", "DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "8",
        "RATE_LIMIT_ENABLED": "false", "EMAIL_API_URL": "", "POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
        "ENABLE_UI_DEMO": "true", "UI_DEMO_USER_ID": demo_user,
        "CORS_ORIGINS": f"http://127.0.0.1:{host_origin_port}",
    })
    pushpin = None
    if devpushpin.available():
        env["GRIP_SIG_KEY"] = secrets.token_urlsafe(36)
        pushpin = devpushpin.Pushpin(work / "pushpin", env["GRIP_SIG_KEY"])
        env["GRIP_PUBLISH_URL"] = pushpin.publish_url
    server = Gunicorn(env, work / "gunicorn.log")
    try:
        if pushpin is not None:
            pushpin.start(f"127.0.0.1:{server.port}", ready=lambda: held(pushpin.url, env, demo_user))
        yield Stack(Api(server.url, env), Api(pushpin.url, env) if pushpin else None, env, demo_user)
    finally:
        if pushpin is not None:
            pushpin.stop()
        server.stop()


@pytest.fixture
def live_api(stack) -> Api:
    """The API through Pushpin: required (skipped locally without it, a failure under CI=true)."""
    if stack.live is None:
        skip_unless_ci("pushpin, zurl or condure is not installed (apt-get install -y pushpin)")
    return stack.live


@pytest.fixture
def api(stack) -> Api:
    """Through Pushpin where installed, else gunicorn directly (the component then polls)."""
    return stack.live or stack.direct


@pytest.fixture(scope="session")
def host(stack, host_origin_port):
    site = HostSite(host_origin_port, stack)
    yield site
    site.close()


# ---- the browser ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        skip_unless_ci("chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_unless_ci("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")
    ctx.set_default_timeout(10000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def user(database):
    from notifications_api.db import admin
    user_id = str(uuid.uuid4())
    admin.create_user(database.admin, user_id=user_id, email=f"{user_id}@example.test", active=True)
    return user_id
