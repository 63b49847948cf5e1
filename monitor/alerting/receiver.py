"""The receiver interface and what every HTTP receiver shares.

A receiver turns one :class:`~monitor.alerting.notification.Notification`
into one HTTP request. It raises :class:`~monitor.errors.RetryableDeliveryError`
or :class:`~monitor.errors.PermanentDeliveryError` and nothing else; retrying,
backoff and bookkeeping belong to the dispatcher. Every receiver shares the
one ``httpx.AsyncClient`` the service owns (connection pooling, one
``transport=`` seam for tests).

The factory that picks a receiver by its configuration is
:mod:`monitor.alerting.receivers`: it imports the four receivers, which import
this module, so the two cannot be one module without an import cycle.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import httpx

from monitor.alerting.notification import Notification
from monitor.clock import Clock


class Receiver(Protocol):
    """Something that delivers a notification, or raises a DeliveryError saying whether to retry."""

    name: str

    async def send(self, notification: Notification) -> None: ...


class HttpReceiver:
    """What every HTTP receiver holds: its name, its settings, the shared client, the clock."""

    def __init__(self, name: str, config: Any, client: httpx.AsyncClient, clock: Clock) -> None:
        self.name = name
        self._config = config
        self._client = client
        self._clock = clock


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused (they are not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


__all__ = ["HttpReceiver", "Receiver", "encode_json"]
