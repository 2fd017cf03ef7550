"""Trust in the proxies in front: client address and scheme from exactly TRUSTED_PROXY_HOPS of them."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        # Client address and scheme from the last `hops` proxies' X-Forwarded-For/-Proto; with no
        # trusted hop the socket's peer is the client and forwarded headers are ignored. The Host
        # header is the client's: proxies must pass it through (X-Forwarded-Host is not trusted).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
