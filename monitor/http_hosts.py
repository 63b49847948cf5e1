"""Which ``Host`` header values the HTTP edge answers: the guard against DNS rebinding.

A web page on ``evil.example`` whose DNS name is rebound to 127.0.0.1 makes the victim's
browser send its requests to the monitor, same-origin for the page: without a check it
reads the UI's JSON API (model names, features, categories, incidents). The browser
still sends ``Host: evil.example``, which is what :class:`HostPolicy` refuses.

Pure (no I/O): the config validates entries with :func:`normalize_allowed`, the server
builds a :class:`HostPolicy` from the bind address and ``http.allowed_hosts``.

Default (``allowed_hosts`` unset):

* bound to a loopback address (``127.0.0.1``, ``::1``, ``localhost``): only loopback
  names, ``localhost`` and the loopback IP literals (``127.0.0.0/8``, ``[::1]``), and
  the bind host itself. Nobody else can connect, so a name other than those is a browser
  talking for a page it loaded from elsewhere.
* bound to any other or a wildcard address (``0.0.0.0``, ``::``, a pod IP): every host.
  The service cannot know the names it is reached by (a Service name, an ingress host,
  the pod IP, ``localhost`` through ``kubectl port-forward``), and refusing them would
  break every deployment at its first scrape; set ``allowed_hosts`` to those names to
  guard a port reachable from browsers on that network.

Names compare case-insensitively, without the port and without one trailing dot;
IPv6 literals in brackets compare as the address (``[0:0::1]`` is ``[::1]``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: A DNS name (letters, digits, ``-`` and ``_`` in dot-separated labels of 1 to 63) or
#: an IPv4 literal; lower case.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")

#: Every host: the one entry of ``allowed_hosts`` that turns the check off.
ANY = "*"

#: Names of this machine's loopback interface that no DNS answer can change.
LOOPBACK_NAMES = frozenset({"localhost"})


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _name(text: str) -> str | None:
    """``text`` as a comparable host name (lower case, no trailing dot), or None if it is
    not a DNS name, an IPv4 literal or a bare/bracketed IPv6 literal."""
    text = text.lower()
    if text.startswith("[") and text.endswith("]"):
        inner = _ip(text[1:-1])
        return str(inner) if isinstance(inner, ipaddress.IPv6Address) else None
    if ":" in text:
        inner = _ip(text)
        return str(inner) if isinstance(inner, ipaddress.IPv6Address) else None
    if text.endswith("."):
        text = text[:-1]
    if not _NAME.fullmatch(text):
        return None
    inner = _ip(text)
    return str(inner) if inner is not None else text


def normalize_allowed(entry: str) -> str:
    """One ``http.allowed_hosts`` entry as compared, or ValueError saying what is wrong."""
    text = entry.strip()
    if text == ANY:
        return ANY
    if not text:
        raise ValueError("an empty host name")
    bracketed = text.startswith("[")
    if (bracketed and "]:" in text) or (not bracketed and text.count(":") == 1):
        raise ValueError(
            f"{text[:80]!a}: a host name without a port (any port is accepted; an IPv6 "
            "address goes without a port, as [::1] or ::1)"
        )
    name = _name(text)
    if name is None:
        raise ValueError(
            f"{text[:80]!a} is not a host name or an IP address (letters, digits, '-', '_' and "
            "dots; or '*' alone for any host)"
        )
    return name


def host_of(header: str) -> str | None:
    """The host name of a ``Host`` header value (port dropped, compared form), or None
    when it is malformed (which browsers never send)."""
    text = header.strip()
    if text.startswith("["):
        address, bracket, port = text.partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        text, port = address + "]", port[1:]
    elif text.count(":") > 1:  # a bare IPv6 address is not a valid Host
        return None
    else:
        text, _, port = text.partition(":")
    if port and not (port.isdigit() and len(port) <= 5):
        return None
    return _name(text)


def is_loopback(name: str) -> bool:
    """A compared name (:func:`host_of`) that only ever means this machine."""
    if name in LOOPBACK_NAMES:
        return True
    ip = _ip(name)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip is not None and ip.is_loopback


def is_ip_literal(name: str) -> bool:
    """An address, not a name: the one kind of Host no DNS answer can produce."""
    return _ip(name) is not None


@dataclass(frozen=True)
class HostPolicy:
    """What a request's ``Host`` must be. ``allowed`` None: any host."""

    allowed: frozenset[str] | None
    loopback_only: bool

    @classmethod
    def for_server(cls, bind_host: str, allowed_hosts: list[str] | None) -> HostPolicy:
        """The policy of a server bound to ``bind_host`` (module docstring)."""
        if allowed_hosts is not None:
            names = frozenset(normalize_allowed(h) for h in allowed_hosts)
            return cls(None if ANY in names else names, loopback_only=False)
        bind = _name(bind_host.strip())
        if bind is not None and is_loopback(bind):
            return cls(frozenset({bind}), loopback_only=True)
        return cls(None, loopback_only=False)

    @property
    def checks(self) -> bool:
        return self.allowed is not None

    def refusal(self, header: str | None) -> str | None:
        """Why a request with this ``Host`` header is refused (a bounded reason), or None."""
        if self.allowed is None:
            return None
        if header is None:
            return "host_missing"
        name = host_of(header)
        if name is None:
            return "host_malformed"
        if name in self.allowed or (self.loopback_only and is_loopback(name)):
            return None
        return "host_not_allowed"


#: The bounded reasons :meth:`HostPolicy.refusal` returns.
HOST_REFUSALS = ("host_missing", "host_malformed", "host_not_allowed")
