"""HTTP at the boundary: one call, httpx errors translated into our delivery errors.

Like Alertmanager's ``notify/util.go``: network errors, timeouts, 429 and
5xx are retryable (the same request may succeed later); any other 4xx is
permanent (the receiver rejected the request; repeating it cannot help).
A ``Retry-After`` header, in seconds or as an HTTP date, is carried on the
error so the dispatcher can wait at least that long. Every error carries a
bounded ``reason`` (``timeout``, ``connect``, ``transport``, ``invalid_url``,
``http_429``, ``http_4xx``, ``http_5xx``) for metrics and logs.

The URL never enters a message: it is a secret for Slack and may hold a token
for others. Callers name the receiver in ``what`` instead. httpx logs each
request, URL included, at INFO on the ``httpx`` logger: :class:`DropRequestLogs`
filters those records for the URLs of our receivers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime

import httpx

from monitor.errors import PermanentDeliveryError, RetryableDeliveryError

#: Characters of a response body quoted in an error message. Generous, because the
#: receiver redacts its secrets from the message *before* cutting it to
#: :data:`~monitor.alerting.receiver.MAX_ERROR_CHARS` (a cut secret could not be found).
_BODY_EXCERPT = 4096


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (delta-seconds or HTTP date).

    >>> parse_retry_after("7", now=0.0)
    7.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0)
    60.0
    >>> parse_retry_after("soon", now=0.0) is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def raise_for_status(response: httpx.Response, now: float, *, what: str) -> None:
    """Return if the response is a success (2xx); otherwise raise the matching delivery error."""
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = response.text[:_BODY_EXCERPT] if response.content else ""
    excerpt = excerpt.encode("ascii", "backslashreplace").decode().replace("\n", " ")
    message = f"{what}: HTTP {status} {excerpt}".rstrip()
    if status == 429 or status >= 500:
        raise RetryableDeliveryError(
            message,
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after"), now),
            reason="http_429" if status == 429 else "http_5xx",
        )
    raise PermanentDeliveryError(message, status=status, reason="http_4xx")


async def send_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - an httpx per-request timeout, not a wait
    what: str,
) -> httpx.Response:
    """Send one request; transport failures become :class:`RetryableDeliveryError`.

    The status is *not* checked here (a receiver may accept e.g. 409 as "already
    done"); call :func:`raise_for_status` on the result.
    """
    try:
        return await client.request(
            method, url, content=content, headers=dict(headers), timeout=timeout
        )
    except httpx.TimeoutException as exc:
        raise RetryableDeliveryError(
            f"{what}: timed out after {timeout}s ({type(exc).__name__})", reason="timeout"
        ) from exc
    except httpx.ConnectError as exc:
        raise RetryableDeliveryError(f"{what}: {type(exc).__name__}", reason="connect") from exc
    except httpx.UnsupportedProtocol as exc:
        raise PermanentDeliveryError(
            f"{what}: the URL's scheme is not http(s)", reason="invalid_url"
        ) from exc
    except httpx.TransportError as exc:  # resets, protocol errors
        raise RetryableDeliveryError(f"{what}: {type(exc).__name__}", reason="transport") from exc
    except httpx.InvalidURL as exc:
        raise PermanentDeliveryError(f"{what}: invalid URL", reason="invalid_url") from exc


class DropRequestLogs(logging.Filter):
    """Drops log records of the HTTP client that mention one of our receivers' secrets.

    httpx logs ``HTTP Request: POST <url> "HTTP/1.1 200 OK"`` at INFO for every
    request; for a Slack receiver that URL is the credential. Attached by
    :class:`~monitor.alerting.engine.AlertService` to the ``httpx`` and
    ``httpcore`` loggers while it runs; other users of httpx in the process keep
    their logs. Delivery outcomes are logged by the dispatcher instead, by
    receiver name.
    """

    LOGGERS = ("httpx", "httpcore")

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: keep it out rather than risk a leak
            return False
        return not any(s in text for s in self._secrets)

    def attach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def detach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


__all__ = ["DropRequestLogs", "parse_retry_after", "raise_for_status", "send_request"]
