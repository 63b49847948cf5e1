"""HTTP at the boundary: one call, httpx errors translated into our delivery errors.

Like Alertmanager's ``notify/util.go``: network errors, timeouts, 429 and
5xx are retryable (the same request may succeed later); any other 4xx is
permanent (the receiver rejected the request; repeating it cannot help).
A ``Retry-After`` header, in seconds or as an HTTP date, is carried on the
error so the dispatcher can wait at least that long.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import httpx

from monitor.errors import PermanentDeliveryError, RetryableDeliveryError

#: Bytes of a response body quoted in an error message: enough to diagnose, bounded.
_BODY_EXCERPT = 200


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
    message = f"{what}: HTTP {status} {excerpt}".rstrip()
    if status == 429 or status >= 500:
        raise RetryableDeliveryError(
            message,
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after"), now),
        )
    raise PermanentDeliveryError(message, status=status)


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
        raise RetryableDeliveryError(f"{what}: timed out after {timeout}s") from exc
    except httpx.TransportError as exc:  # connect errors, resets, protocol errors
        raise RetryableDeliveryError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise PermanentDeliveryError(f"{what}: invalid URL: {exc}") from exc


__all__ = ["parse_retry_after", "raise_for_status", "send_request"]
