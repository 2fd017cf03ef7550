# syntax=docker/dockerfile:1
# Notifications API: gunicorn (notifications_api/gunicorn_conf.py) serving notifications_api.wsgi:app on $PORT (8003).
# Build: docker build -t notifications-api:$(git rev-parse --short HEAD) .
# The same image runs the API, `notifications-api migrate`, `preflight` and `purge`.

# Python pinned to the patch release; CI tests the same minor version (3.11).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency ships a wheel (psycopg[binary]): no compiler is needed, here or below.
COPY setup.cfg setup.py pyproject.toml README.md* ./
COPY notifications_api ./notifications_api
COPY migrations_sql ./migrations_sql
# As CI does (tests/ops/test_ops_packaging.py): build the wheel, install it into a fresh venv. The wheel
# carries the SQL migrations and the gunicorn settings; nothing of the checkout is needed at run time.
# The venv's own pip builds the wheel: a Debian python3 base (python3-venv, no python3-pip: what
# `make image-test` builds on) has no `python -m pip`; python:3.x-slim works the same way.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/notifications_api-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="notifications-api" \
      org.opencontainers.image.description="In-app notifications for the activity platform"
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# PROMETHEUS_MULTIPROC_DIR lives under /tmp: the only writable path with a read-only root filesystem
# (mount an emptyDir or tmpfs there). Migrations come from the installed package (MIGRATIONS_DIR overrides).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8003 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
USER 10001:10001
EXPOSE 8003
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8003'), timeout=2)"]
CMD ["gunicorn", "-c", "python:notifications_api.ops.gunicorn_conf", "notifications_api.wsgi:app"]
