"""HTTP API for silences, mounted on the service's aiohttp application.

* ``GET /api/silences[?expired=true]``: list (no token needed: read-only); ``expired``
  is ``true``/``false`` (or ``1``/``0``, ``yes``/``no``), anything else a 400;
* ``POST /api/silences``: create; body ``{"matchers": {"model", "subject", "kind", "segment"},
  "starts_at"?, "ends_at" | "duration_seconds", "comment", "created_by"}`` with
  times as ISO 8601 or epoch seconds; 201 with the silence;
* ``DELETE /api/silences/{id}``: expire now; 404 unknown, 409 if from the config file.

State-changing endpoints require ``Authorization: Bearer <token>`` (401 when
missing or malformed, 403 when wrong). Without a configured token they are
disabled (403): muting pages must never be open to anyone who can reach the port.

Every request is hostile until parsed: a header or body that is not what the
API accepts (non-ASCII or control bytes in the credential, another scheme,
invalid UTF-8, invalid JSON, not an object, non-finite or out-of-range times)
is a 4xx with a JSON ``{"error": ...}`` naming the field, never a 500. The
core raises :class:`~monitor.errors.SilenceError` subclasses; this edge alone
maps them to statuses (:data:`STATUS_OF`).
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.alerting.config import segment_pattern_problem
from monitor.alerting.engine import AlertService
from monitor.alerting.notification import iso
from monitor.alerting.silences import Silence
from monitor.errors import (
    InvalidSilence,
    ReadOnlySilence,
    SilenceError,
    StateError,
    UnknownSilence,
)

#: HTTP status of each error the core raises for a silence request.
STATUS_OF: dict[type[Exception], int] = {
    InvalidSilence: 400,
    UnknownSilence: 404,
    ReadOnlySilence: 409,
}

#: The spellings ``?expired=`` takes (any case); anything else is a 400.
FLAG_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}

#: Longest accepted credential; longer ones are refused before any comparison.
MAX_TOKEN_CHARS = 1024
#: Largest accepted request body (a silence is a few hundred bytes).
MAX_BODY_BYTES = 64 * 1024


class _Matchers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(default="*", max_length=200)
    subject: str = Field(default="*", max_length=200)
    segment: str = Field(default="*", max_length=200)
    kind: Literal["drift", "performance", "data_quality", "multivariate"] | None = None

    @field_validator("segment")
    @classmethod
    def _segment_can_match(cls, value: str) -> str:
        if why := segment_pattern_problem(value):
            raise ValueError(why)
        return value


class _NewSilence(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    matchers: _Matchers = Field(default_factory=_Matchers)
    starts_at: datetime | float | None = None
    ends_at: datetime | float | None = None
    duration_seconds: float | None = Field(default=None, gt=0)
    comment: str = Field(default="", max_length=1000)
    created_by: str = Field(default="", max_length=200)

    @field_validator("starts_at", "ends_at", "duration_seconds", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        """JSON ``true`` is no time: coerced, it silenced for one second, or from 1970."""
        if isinstance(value, bool):
            raise ValueError("a number or a time, not true or false")
        return value

    @model_validator(mode="after")
    def _one_end(self) -> _NewSilence:
        if (self.ends_at is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of ends_at and duration_seconds")
        return self


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    try:
        return value.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidSilence("time: out of range") from exc


def _describe(exc: ValidationError) -> str:
    """Which fields are wrong and why, without echoing the (hostile) input values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def silence_json(s: Silence) -> dict[str, Any]:
    """A silence as the API shows it (epoch and ISO times)."""
    return {
        **s.to_json(),
        "starts_at_iso": iso(s.starts_at),
        "ends_at_iso": iso(s.ends_at),
    }


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def bearer_credential(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None if malformed.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``, so any byte
    may arrive here; only visible ASCII (RFC 7235 ``token68`` and friends) is a
    credential. Anything else is refused before it is encoded or compared.

    >>> bearer_credential("Bearer abc"), bearer_credential("Bearer \xa0"), bearer_credential("")
    ('abc', None, None)
    """
    scheme, _, given = header.strip(" \t").partition(" ")
    given = given.strip(" \t")
    if scheme.lower() != "bearer" or not given or len(given) > MAX_TOKEN_CHARS:
        return None
    if not all("!" <= c <= "~" for c in given):
        return None
    return given


def register_routes(app: web.Application, service: AlertService, token: str | None) -> None:
    """Add the silence endpoints to ``app``; ``token=None`` disables the state-changing ones."""
    expected = token.encode("utf-8", "surrogateescape") if token is not None else None

    def authorize(request: web.Request) -> web.Response | None:
        """None when allowed, else the 401/403 to answer."""
        if expected is None:
            return _error(403, "silence management disabled: no API token configured")
        given = bearer_credential(request.headers.get("Authorization", ""))
        if given is None:
            return _error(
                401,
                "bearer token required (Authorization: Bearer <token>, visible ASCII)",
                **{"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode("ascii"), expected):
            return _error(403, "invalid token")
        return None

    def failure(exc: Exception) -> web.Response:
        """The 4xx/5xx of an error raised by the core (its message is safe to show)."""
        for cls, status in STATUS_OF.items():
            if isinstance(exc, cls):
                return _error(status, str(exc))
        if isinstance(exc, StateError):
            return _error(503, "silence store unavailable")
        return _error(400, str(exc))

    async def read_json(request: web.Request) -> Any:
        """The body as JSON; InvalidSilence when too large, not UTF-8, or not JSON."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise InvalidSilence(f"body: larger than {MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(16 * 1024):  # chunked bodies too
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise InvalidSilence(f"body: larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidSilence(f"body: not valid UTF-8 (byte {exc.start})") from exc
        except (ValueError, RecursionError) as exc:
            raise InvalidSilence("body: not valid JSON") from exc

    async def list_silences(request: web.Request) -> web.Response:
        flag = request.query.get("expired", "false").lower()
        if flag not in FLAG_VALUES:
            # ``expired=True1`` or ``expired=on`` listed the active ones only, silently.
            return _error(400, "expired: give true or false")
        expired = FLAG_VALUES[flag]
        items = service.list_silences(include_expired=expired)
        return web.json_response({"silences": [silence_json(s) for s in items]})

    async def create_silence(request: web.Request) -> web.Response:
        denied = authorize(request)
        if denied is not None:
            return denied
        try:
            data = await read_json(request)
            if not isinstance(data, dict):
                raise InvalidSilence("body: must be a JSON object")
            try:
                body = _NewSilence.model_validate(data)
            except ValidationError as exc:
                raise InvalidSilence(_describe(exc)) from exc
            start = _epoch(body.starts_at)
            if start is None:
                start = service_now(service)
            end = _epoch(body.ends_at)
            if end is None:
                assert body.duration_seconds is not None
                end = start + body.duration_seconds
            silence = await service.add_silence_async(
                starts_at=start,
                ends_at=end,
                model=body.matchers.model,
                subject=body.matchers.subject,
                kind=body.matchers.kind,
                segment=body.matchers.segment,
                comment=body.comment,
                created_by=body.created_by,
            )
        except (SilenceError, StateError) as exc:
            return failure(exc)
        return web.json_response(silence_json(silence), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        denied = authorize(request)
        if denied is not None:
            return denied
        try:
            silence = await service.expire_silence_async(request.match_info["silence_id"])
        except (SilenceError, StateError) as exc:
            return failure(exc)
        return web.json_response(silence_json(silence))

    app.router.add_get("/api/silences", list_silences)
    app.router.add_post("/api/silences", create_silence)
    app.router.add_delete("/api/silences/{silence_id}", delete_silence)


def service_now(service: AlertService) -> float:
    """The service's clock reading (the API never reads the system clock itself)."""
    return service.now()


__all__ = ["register_routes", "silence_json"]
