"""The SSRF guard and the HTTP rules of the push sender, against local servers (no push service needed):
https only, the allow-list, no private/loopback/link-local/multicast address unless that exact origin
is allow-listed (checked at connect time, for every new socket), no redirects, timeouts, a bounded read."""
from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
import urllib3

from notifications_api.channels.push_sender import (MAX_RESPONSE_BYTES, BlockedDestination, EndpointPolicy,
                                                    PushSender, endpoint_origin, public_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour = "ok"
    hits: list = []

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).hits.append(self.path)
        if self.behaviour == "redirect":
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.behaviour == "huge":
            self.send_response(400)
            self.send_header("Content-Length", str(1024 * 1024))
            self.end_headers()
            try:
                self.wfile.write(b"x" * (1024 * 1024))
            except OSError:
                pass
        elif self.behaviour == "slow":
            time.sleep(3)
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    """factory(behaviour) -> port of a threaded HTTP server on 127.0.0.1."""
    servers = []

    def start(behaviour: str = "ok") -> int:
        handler = type("Handler", (_Handler,), {"behaviour": behaviour, "hits": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], handler
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


HEADERS = {"TTL": "60", "Content-Encoding": "aes128gcm"}


@pytest.mark.parametrize("ip, public", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("::ffff:8.8.8.8", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("239.1.1.1", False), ("255.255.255.255", False), ("192.0.2.1", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("ff02::1", False),
])
def test_only_public_unicast_addresses_are_public(ip, public):
    assert public_address(ip) is public


def test_https_only_and_the_allow_list():
    policy = EndpointPolicy(("fcm.googleapis.com", "*.push.apple.com", "http://127.0.0.1:9999"))
    assert policy.refusal("https://fcm.googleapis.com/fcm/send/x") is None
    assert policy.refusal("https://x.y.push.apple.com/a") is None
    assert policy.refusal("http://127.0.0.1:9999/notify/a") is None
    assert "https" in policy.refusal("http://fcm.googleapis.com/fcm/send/x")
    assert "https" in policy.refusal("http://127.0.0.1:9998/notify/a")
    assert "PUSH_ALLOWED_HOSTS" in policy.refusal("https://push.apple.com/a")
    assert "PUSH_ALLOWED_HOSTS" in policy.refusal("https://fcm.googleapis.com.evil.net/a")
    assert "credentials" in policy.refusal("https://a:b@fcm.googleapis.com/x")
    assert policy.refusal("ftp://fcm.googleapis.com/x") is not None


def test_sending_to_a_refused_endpoint_raises_before_any_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("resolved")
    sender = PushSender(EndpointPolicy(("fcm.googleapis.com",), resolver=refuse))
    for url in ("http://fcm.googleapis.com/x", "https://evil.example.net/x"):
        with pytest.raises(BlockedDestination):
            sender.post(url, b"x", HEADERS)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "224.0.0.9"])
def test_an_allowed_host_that_resolves_to_a_private_address_is_refused_at_connect(address):
    policy = EndpointPolicy(("fcm.googleapis.com",), resolver=lambda host, port: [address])
    sender = PushSender(policy, connect_timeout=1, read_timeout=1)
    with pytest.raises(BlockedDestination, match="non-public"):
        sender.post("https://fcm.googleapis.com/fcm/send/x", b"x", HEADERS)


def test_one_private_record_among_public_ones_refuses_the_host():
    policy = EndpointPolicy(("fcm.googleapis.com",), resolver=lambda host, port: ["8.8.8.8", "10.0.0.1"])
    with pytest.raises(BlockedDestination):
        policy.addresses("https", "fcm.googleapis.com", 443)


def test_every_new_connection_resolves_and_checks_again(local_server):
    """DNS rebinding: the check is not made once per endpoint but for every new socket (here the
    first connection is dropped after an oversized answer; the second resolves again). With the
    refusal test above, an answer that turns private later is refused then."""
    port, handler = local_server("huge")
    calls = []

    def resolver(host, p):
        calls.append(host)
        return ["127.0.0.1"]
    sender = PushSender(EndpointPolicy((f"http://push.invalid:{port}",), resolver=resolver))
    sender.post(f"http://push.invalid:{port}/a", b"x", HEADERS)
    handler.behaviour = "ok"
    sender.post(f"http://push.invalid:{port}/b", b"x", HEADERS)
    sender.post(f"http://push.invalid:{port}/c", b"x", HEADERS)  # kept alive: no new socket
    assert calls == ["push.invalid", "push.invalid"]


def test_the_socket_goes_to_the_checked_address(local_server):
    """The host name is resolved by the policy (and only there): a name that the system cannot resolve
    works when the policy's resolver maps it, so the connection used the checked address."""
    port, handler = local_server()
    policy = EndpointPolicy((f"http://push.invalid:{port}",), resolver=lambda host, p: ["127.0.0.1"])
    response = PushSender(policy).post(f"http://push.invalid:{port}/notify/a", b"x", HEADERS)
    assert response.status == 201 and handler.hits == ["/notify/a"]


def test_redirects_are_never_followed(local_server):
    port, handler = local_server("redirect")
    sender = PushSender(EndpointPolicy((f"http://127.0.0.1:{port}",)))
    response = sender.post(f"http://127.0.0.1:{port}/a", b"x", HEADERS)
    assert response.status == 307
    assert handler.hits == ["/a"]


def test_the_response_read_is_bounded_and_the_pool_recovers(local_server):
    port, handler = local_server("huge")
    sender = PushSender(EndpointPolicy((f"http://127.0.0.1:{port}",)))
    response = sender.post(f"http://127.0.0.1:{port}/a", b"x", HEADERS)
    assert response.status == 400 and len(response.body) == MAX_RESPONSE_BYTES
    handler.behaviour = "ok"
    assert sender.post(f"http://127.0.0.1:{port}/b", b"x", HEADERS).status == 201


def test_read_timeout(local_server):
    port, _ = local_server("slow")
    sender = PushSender(EndpointPolicy((f"http://127.0.0.1:{port}",)), connect_timeout=1, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        sender.post(f"http://127.0.0.1:{port}/a", b"x", HEADERS)
    assert time.monotonic() - started < 2.5


def test_connect_timeout_is_set_on_every_request():
    """A connect that never completes is bounded by connect_timeout (urllib3 passes it to the socket:
    checked on the pool's configuration, since no local address reliably drops SYNs)."""
    sender = PushSender(EndpointPolicy(()), connect_timeout=1.5, read_timeout=4)
    timeout = sender.pool.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (1.5, 4)
    retries = sender.pool.connection_pool_kw["retries"]
    assert retries is False or (retries.total is False and retries.redirect == 0)


def test_a_refused_connection_is_a_network_error(local_server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sender = PushSender(EndpointPolicy((f"http://127.0.0.1:{port}",)), connect_timeout=1)
    with pytest.raises(urllib3.exceptions.HTTPError):
        sender.post(f"http://127.0.0.1:{port}/a", b"x", HEADERS)


def test_keep_alive_reuses_one_connection(local_server):
    port, handler = local_server()
    sender = PushSender(EndpointPolicy((f"http://127.0.0.1:{port}",)))
    for i in range(20):
        assert sender.post(f"http://127.0.0.1:{port}/{i}", b"x", HEADERS).status == 201
    assert list(sender.connections()) == [(f"http://127.0.0.1:{port}", 1)]


def test_the_origin_is_all_a_log_says():
    assert endpoint_origin("https://fcm.googleapis.com/fcm/send/secret") == "https://fcm.googleapis.com"
    assert endpoint_origin("https://FCM.googleapis.com:443/x") == "https://fcm.googleapis.com"
    assert endpoint_origin("http://127.0.0.1:8090/notify/abc") == "http://127.0.0.1:8090"
