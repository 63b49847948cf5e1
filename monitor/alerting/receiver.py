"""The receiver interface and what every HTTP receiver shares.

A receiver turns one :class:`~monitor.alerting.notification.Notification`
into one HTTP request. It raises :class:`~monitor.errors.RetryableDeliveryError`
or :class:`~monitor.errors.PermanentDeliveryError` and nothing else; retrying,
backoff and bookkeeping belong to the dispatcher. Every receiver shares the
one ``httpx.AsyncClient`` the service owns (connection pooling, one
``transport=`` seam for tests).

A receiver's error messages never carry its secrets: :meth:`HttpReceiver.send`
passes every message through :func:`redact` with the receiver's own secret
values (URL, routing key, tokens, header values), also in the URL-encoded and
JSON-escaped forms a receiver might echo back in an error body.

The factory that picks a receiver by its configuration is
:mod:`monitor.alerting.receivers`: it imports the four receivers, which import
this module, so the two cannot be one module without an import cycle.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, quote_plus, unquote_to_bytes

import httpx

from monitor.alerting.config import (
    receiver_secrets,
)
from monitor.alerting.notification import Notification
from monitor.clock import Clock
from monitor.errors import DeliveryError

REDACTED = "[redacted]"
#: Longest error message a receiver raises (after redaction): enough to diagnose, bounded.
MAX_ERROR_CHARS = 300


#: Shortest URL part treated as secret on its own (shorter ones, like ``T000`` or ``v2``,
#: would redact innocent text and protect nothing).
MIN_SECRET_PART = 8


def secret_forms(secrets: Iterable[str]) -> list[str]:
    """Each secret as configured, as httpx normalises a URL, URL-encoded and JSON-escaped.

    A URL is a secret in parts too: a receiver may echo just its path (Slack's
    ``/services/T.../B.../<secret>``) or a query value (``?token=...``), so the
    path, its last segment, every query value and the password of ``user:password@``
    (an Alertmanager or webhook behind a proxy's basic auth; also as the Basic
    credentials sent) count as secrets of their own. Longest first, so that a secret
    containing another is replaced whole.
    """
    parts: set[str] = set()
    for s in secrets:
        if not s:
            continue
        parts.add(s)
        url: httpx.URL | None = None
        with contextlib.suppress(httpx.InvalidURL, TypeError, ValueError):
            url = httpx.URL(s)
        if url is None or not url.scheme:
            continue
        parts.add(str(url))
        path = url.path
        if path not in ("", "/"):
            parts.update({path, url.raw_path.decode("ascii", "replace")})
            parts.add(path.rstrip("/").rsplit("/", 1)[-1])
        for _, value in url.params.multi_items():
            parts.add(value)
        if url.password:
            # and as httpx sends it (Authorization: Basic <base64>), which a proxy may echo
            basic = base64.b64encode(unquote_to_bytes(url.userinfo)).decode()
            parts.update({url.password, url.userinfo.decode("ascii", "replace"), basic})
    forms: set[str] = set()
    for p in parts:
        forms.update({p, quote(p, safe=""), quote_plus(p), p.replace("/", "\\/")})
    return sorted((f for f in forms if len(f) >= MIN_SECRET_PART), key=len, reverse=True)


def redact(text: str, forms: Iterable[str]) -> str:
    """``text`` with every secret form replaced by ``[redacted]``.

    >>> redact("POST http://h/services/T/B/XYZ failed", ["http://h/services/T/B/XYZ"])
    'POST [redacted] failed'
    """
    for f in forms:
        if f in text:
            text = text.replace(f, REDACTED)
    return text


if TYPE_CHECKING:
    pass


class Receiver(Protocol):
    """Something that delivers a notification, or raises a DeliveryError saying whether to retry."""

    name: str

    async def send(self, notification: Notification) -> None: ...


class HttpReceiver:
    """What every HTTP receiver holds: its name, its settings, the shared client, the clock.

    Subclasses implement :meth:`_send`; :meth:`send` redacts their errors.
    """

    def __init__(self, name: str, config: Any, client: httpx.AsyncClient, clock: Clock) -> None:
        self.name = name
        self._config = config
        self._client = client
        self._clock = clock
        self._secret_forms = secret_forms(receiver_secrets([config]))

    async def send(self, notification: Notification) -> None:
        """Deliver, or raise a :class:`DeliveryError` whose message holds no secret."""
        try:
            await self._send(notification)
        except DeliveryError as exc:
            # ``from None``: the chained httpx error carries the request, URL included.
            raise self._redacted(exc) from None

    def _redacted(self, exc: DeliveryError) -> DeliveryError:
        """``exc`` again, its message without this receiver's secrets (raise it ``from
        None``). For a receiver whose requests do not all go through :meth:`send`."""
        return type(exc)(
            redact(str(exc), self._secret_forms)[:MAX_ERROR_CHARS],
            status=exc.status,
            retry_after=exc.retry_after,
            reason=exc.reason,
        )

    async def _send(self, notification: Notification) -> None:
        raise NotImplementedError


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused (they are not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


__all__ = [
    "REDACTED",
    "HttpReceiver",
    "Receiver",
    "encode_json",
    "redact",
    "secret_forms",
]
