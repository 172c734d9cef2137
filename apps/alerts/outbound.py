"""Where outbound webhooks may go (SSRF): HTTPS only, except plain HTTP to a loopback
address outside production; in production never to a private, loopback, link-local,
reserved or multicast address, checked on every address the host resolves to, just
before each request."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrl(ValueError):
    pass


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def check_syntax(url: str) -> None:
    """What can be said of the URL without resolving it (the API's validation)."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeUrl("the URL must be https://host/...")
    if parts.username or parts.password:
        raise UnsafeUrl("the URL may not carry credentials")
    if parts.scheme == "http" and (settings.PRODUCTION or not _is_loopback_name(parts.hostname)):
        raise UnsafeUrl("the URL must use https (plain http only to loopback, outside production)")


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(url: str) -> None:
    """Raise :class:`UnsafeUrl` unless a request to ``url`` may be made now."""
    check_syntax(url)
    parts = urlsplit(url)
    assert parts.hostname is not None
    addresses = _addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    if settings.PRODUCTION and any(_forbidden(a) for a in addresses):
        raise UnsafeUrl("the URL resolves to a private or reserved address")
    if parts.scheme == "http" and not all(a.is_loopback for a in addresses):
        raise UnsafeUrl("plain http only to loopback")
