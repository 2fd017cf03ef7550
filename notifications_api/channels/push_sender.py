"""The one request the push worker makes: POST an encrypted message to a subscription's endpoint.

The endpoint is a URL a user chose, so every request is guarded against SSRF (docs/PUSH.md):
- its host must be allowed by PUSH_ALLOWED_HOSTS (`host`, `*.domain`), over https; an
  `http://host:port` entry allows plain HTTP to exactly that origin (test push services);
- every new connection resolves the host and refuses loopback, private, link-local, shared,
  reserved and multicast addresses unless the exact origin is allow-listed; the socket goes to the
  address that was checked (a DNS answer that changes between check and connect cannot slip in),
  while TLS still verifies the certificate against the host name (SNI = host name);
- no redirect is followed, urllib3 retries nothing (the outbox retries), connect and read timeouts
  bound each request, and at most MAX_RESPONSE_BYTES of an answer is read.
Connections are pooled per origin (keep-alive) with at most `per_origin` sockets each.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

MAX_RESPONSE_BYTES = 4096
# urllib3 logs each request line at DEBUG ("POST /fcm/send/<token> HTTP/1.1" 201): the path of an
# endpoint is a capability, so its loggers stay at WARNING whatever LOG_LEVEL is (with retries off,
# nothing it logs at WARNING carries a path).
URLLIB3_LOG_LEVEL = logging.WARNING
Resolver = Callable[[str, int], list[str]]


class BlockedDestination(Exception):
    """The endpoint is not one we may send to (never retried: a permanent failure)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def public_address(ip: str) -> bool:
    """Whether ip is a public unicast address (not loopback, private, link-local, shared, reserved,
    documentation, unspecified or multicast; an IPv4-mapped IPv6 address is judged as its IPv4)."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _origin(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host.lower()}:{port or (443 if scheme == 'https' else 80)}"


@dataclass(frozen=True)
class EndpointPolicy:
    """PUSH_ALLOWED_HOSTS as a rule: which endpoints may be registered and sent to."""

    allowed_hosts: tuple[str, ...] = ()
    resolver: Resolver = system_resolver
    plain_origins: frozenset[str] = field(init=False)  # exact http://host:port entries

    def __post_init__(self) -> None:
        plain = (urlsplit(entry) for entry in self.allowed_hosts if entry.startswith("http://"))
        origins = frozenset(_origin("http", p.hostname, p.port) for p in plain)
        object.__setattr__(self, "plain_origins", origins)

    def _host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            if entry.startswith("http://"):
                continue
            if entry.startswith("*."):
                if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                    return True
            elif host == entry:
                return True
        return False

    def refusal(self, url: str) -> str | None:
        """Why the endpoint may not be used (None: it may). Shape and allow-list only: no DNS."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "must be a URL"
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return "must be an https:// URL"
        if parts.username is not None or parts.password is not None:
            return "must not carry credentials"
        if parts.scheme == "http" or port not in (None, 443):
            if _origin(parts.scheme, parts.hostname, port) in self.plain_origins:
                return None
            if parts.scheme == "http":
                return "must be an https:// URL"
            return "must use the default https port"
        if not self._host_allowed(parts.hostname):
            return "is not a push service allowed by PUSH_ALLOWED_HOSTS"
        return None

    def addresses(self, scheme: str, host: str, port: int) -> list[str]:
        """The addresses a connection to host may use; BlockedDestination when any is not public and
        the origin is not allow-listed (one private record is enough to refuse the host)."""
        ips = self.resolver(host, port)
        if _origin(scheme, host, port) in self.plain_origins:
            return ips
        if not ips or any(not public_address(ip) for ip in ips):
            raise BlockedDestination("the push service resolves to a non-public address")
        return ips


def _guarded(base: type[HTTPConnection], scheme: str, policy: EndpointPolicy) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[misc, valid-type]
        """Connects only to the addresses the policy accepted (checked for every new socket)."""

        def _new_conn(self) -> socket.socket:
            try:
                ips = policy.addresses(scheme, self._dns_host, self.port)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            last: Exception | None = None
            for ip in ips:
                try:
                    return urllib3_connection.create_connection(
                        (ip, self.port), self.timeout, source_address=self.source_address,
                        socket_options=self.socket_options)
                except socket.timeout:
                    last = ConnectTimeoutError(self, "connect timed out")
                except OSError as exc:
                    last = NewConnectionError(self, f"connect failed: {exc.strerror or type(exc).__name__}")
            raise last  # type: ignore[misc]

    return Guarded


@dataclass(frozen=True)
class PushResponse:
    status: int
    retry_after: str | None
    body: bytes


class PushSender:
    """A pool of keep-alive connections per push-service origin, guarded by the policy. Thread-safe."""

    def __init__(self, policy: EndpointPolicy, *, per_origin: int = 8, origins: int = 32,
                 connect_timeout: float = 5.0, read_timeout: float = 10.0, ca_certs: str | None = None):
        self.policy = policy
        logging.getLogger("urllib3").setLevel(URLLIB3_LOG_LEVEL)
        http_conn = _guarded(HTTPConnection, "http", policy)
        https_conn = _guarded(HTTPSConnection, "https", policy)

        class Pool(HTTPConnectionPool):
            ConnectionCls = http_conn

        class TLSPool(HTTPSConnectionPool):
            ConnectionCls = https_conn

        self.pool = urllib3.PoolManager(
            num_pools=origins, maxsize=per_origin, block=True, retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout), ca_certs=ca_certs)
        self.pool.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    def post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> PushResponse:
        """One POST, never redirected; BlockedDestination, or urllib3's errors for the network."""
        refusal = self.policy.refusal(endpoint)
        if refusal:
            raise BlockedDestination(f"endpoint {refusal}")
        response = self.pool.request("POST", endpoint, body=body, headers=headers, redirect=False,
                                     retries=False, preload_content=False, decode_content=False)
        complete = False
        try:
            data = response.read(MAX_RESPONSE_BYTES, decode_content=False)
            complete = not response.read(1, decode_content=False)
            return PushResponse(response.status, response.headers.get("Retry-After"), data)
        finally:
            if not complete:
                response.close()  # more than we read: drop the socket; the pool opens another
            response.release_conn()

    def connections(self) -> Iterable[tuple[str, int]]:
        """(origin, connections opened) per pool (tests: keep-alive reuses them)."""
        for key in list(self.pool.pools.keys()):
            pool = self.pool.pools[key]
            yield _origin(key.key_scheme, key.key_host, key.key_port), pool.num_connections

    def close(self) -> None:
        self.pool.clear()


def endpoint_origin(endpoint: str) -> str:
    """scheme://host[:port] of an endpoint: all that a log line or metric may say about it."""
    parts = urlsplit(endpoint)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = parts.port
    suffix = f":{port}" if port and port != default else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{suffix}"
