"""SSRF guard for webhook targets.

At create/update the URL's shape is checked (http(s), a host, no credentials) and a literal IP
host is checked right away. At delivery the host is resolved and every address is checked
again (store/http_sender.py), so a name that later resolves to a private address is refused.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from modelreg_common.errors import InvalidArgument

MAX_URL_LENGTH = 2048
# Cloud metadata endpoints that are not already link-local.
_METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def refusal(address: str, *, allow_private: bool) -> str | None:
    """Why `address` may not be a webhook target, or None if it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a unicast address"
    if ip.is_loopback:
        return None if allow_private else f"{ip} is a loopback address"
    if ip.is_link_local:
        return None if allow_private else f"{ip} is a link-local address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return None if allow_private else f"{ip} is a private address"
    return None


def check_url(url: str, *, field: str, allow_private: bool) -> str:
    """The URL, normalised, if it is an acceptable webhook target; InvalidArgument otherwise."""
    url = url.strip()
    if not url:
        raise InvalidArgument(field, "is required")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(field, f"is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(field, f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(field, "must be an http or https URL")
    host = parts.hostname
    if not host:
        raise InvalidArgument(field, "must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(field, "must not carry credentials; the signature authenticates")
    if port == 0:
        raise InvalidArgument(field, "port 0 is not a valid target")
    if host.lower() in _METADATA_HOSTS:
        raise InvalidArgument(field, f"{host} is a cloud metadata host")
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        if not allow_private:
            raise InvalidArgument(field, f"{host} is a loopback host")
        return url
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return url  # a DNS name: checked when resolved, at every delivery
    why = refusal(host, allow_private=allow_private)
    if why is not None:
        raise InvalidArgument(field, why)
    return url
