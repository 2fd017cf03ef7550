"""`make run` (cli `dev`): Pushpin is started in front of the dev server when installed, with a
generated GRIP_SIG_KEY kept for the next run, and the printed curl really streams."""
from __future__ import annotations

import re
import time

import pytest
from pushpin_helpers import AppServer
from pushpin_helpers import SseClient, require_pushpin
from werkzeug.serving import make_server

from notifications_api.ops import cli_dev as cli
from notifications_api import create_app
from notifications_api.ops.devpushpin import free_port

pytestmark = pytest.mark.e2e


def test_dev_starts_pushpin_and_prints_a_streaming_curl(tmp_path, stream_config, database, capsys):
    require_pushpin()
    from notifications_api.db import admin
    admin.create_user(database.admin, user_id=cli.DEMO_USER_ID, email=cli.DEMO_EMAIL, active=True)
    port = free_port()
    env = {"PUSHPIN_PORT": str(free_port())}
    config = {**stream_config, "PORT": port, "API_V1_PREFIX": "/api/v1"}
    pushpin = cli._start_dev_pushpin(env, tmp_path, config)
    assert pushpin is not None
    server = None
    try:
        assert env["GRIP_SIG_KEY"] == (tmp_path / "grip-sig-key").read_text().strip()
        assert env["GRIP_PUBLISH_URL"] == pushpin.publish_url
        assert pushpin.url.endswith(f":{env['PUSHPIN_PORT']}")
        app = create_app({**stream_config, "GRIP_SIG_KEY": env["GRIP_SIG_KEY"],
                          "GRIP_PUBLISH_URL": (env["GRIP_PUBLISH_URL"],)})
        server = AppServer(app, make_server("127.0.0.1", port, app, threaded=True))
        cli._print_stream_request(config, pushpin.url)
        printed = capsys.readouterr().out
        token, url = re.search(r'curl -N -H "Authorization: Bearer (\S+)" (\S+)', printed).groups()
        client = None
        for _ in range(50):  # the proxy and handler connect a moment after they listen
            try:
                client = SseClient(pushpin.url, url.removeprefix(pushpin.url),
                                   {"Authorization": f"Bearer {token}"}, timeout=1)
            except OSError:
                continue
            if client.response.getheader("Transfer-Encoding") == "chunked":  # held open by Pushpin
                break
            client.close()
            time.sleep(0.1)
        assert client is not None
        try:
            assert client.response.getheader("Transfer-Encoding") == "chunked"
            assert client.wait_for(lambda e: True, 5)["event"] == "counts"
        finally:
            client.close()
    finally:
        pushpin.stop()
        if server is not None:
            server.stop()
