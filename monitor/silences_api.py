"""HTTP API for silences, mounted on the service's aiohttp application.

* ``GET /api/silences[?expired=true]``: list (no token needed: read-only);
* ``POST /api/silences``: create; body ``{"matchers": {"model", "subject", "kind"},
  "starts_at"?, "ends_at" | "duration_seconds", "comment", "created_by"}`` with
  times as ISO 8601 or epoch seconds; 201 with the silence;
* ``DELETE /api/silences/{id}``: expire now; 404 unknown, 409 if from the config file.

State-changing endpoints require ``Authorization: Bearer <token>`` (401 when
missing, 403 when wrong). Without a configured token they are disabled
(403): muting pages must never be open to anyone who can reach the port.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.alerting.engine import AlertService
from monitor.alerting.notification import iso
from monitor.alerting.silences import Silence


class _Matchers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "*"
    subject: str = "*"
    kind: Literal["drift", "performance", "data_quality"] | None = None


class _NewSilence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: _Matchers = Field(default_factory=_Matchers)
    starts_at: datetime | float | None = None
    ends_at: datetime | float | None = None
    duration_seconds: float | None = Field(default=None, gt=0)
    comment: str = Field(default="", max_length=1000)
    created_by: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one_end(self) -> _NewSilence:
        if (self.ends_at is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of ends_at and duration_seconds")
        return self


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return value.timestamp()


def silence_json(s: Silence) -> dict[str, Any]:
    """A silence as the API shows it (epoch and ISO times)."""
    return {
        **s.to_json(),
        "starts_at_iso": iso(s.starts_at),
        "ends_at_iso": iso(s.ends_at),
    }


def register_routes(app: web.Application, service: AlertService, token: str | None) -> None:
    """Add the silence endpoints to ``app``; ``token=None`` disables the state-changing ones."""

    def authorize(request: web.Request) -> None:
        if token is None:
            raise web.HTTPForbidden(
                text='{"error": "silence management disabled: no API token configured"}',
                content_type="application/json",
            )
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": "Bearer"},
                text='{"error": "bearer token required"}',
                content_type="application/json",
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise web.HTTPForbidden(
                text='{"error": "invalid token"}', content_type="application/json"
            )

    async def list_silences(request: web.Request) -> web.Response:
        expired = request.query.get("expired", "").lower() in ("1", "true", "yes")
        items = service.list_silences(include_expired=expired)
        return web.json_response({"silences": [silence_json(s) for s in items]})

    async def create_silence(request: web.Request) -> web.Response:
        authorize(request)
        try:
            body = _NewSilence.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        start = _epoch(body.starts_at)
        if start is None:
            start = service_now(service)
        end = _epoch(body.ends_at)
        if end is None:
            assert body.duration_seconds is not None
            end = start + body.duration_seconds
        try:
            silence = service.add_silence(
                starts_at=start,
                ends_at=end,
                model=body.matchers.model,
                subject=body.matchers.subject,
                kind=body.matchers.kind,
                comment=body.comment,
                created_by=body.created_by,
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(silence_json(silence), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        authorize(request)
        try:
            silence = service.expire_silence(request.match_info["silence_id"])
        except KeyError:
            return web.json_response({"error": "no such silence"}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response(silence_json(silence))

    app.router.add_get("/api/silences", list_silences)
    app.router.add_post("/api/silences", create_silence)
    app.router.add_delete("/api/silences/{silence_id}", delete_silence)


def service_now(service: AlertService) -> float:
    """The service's clock reading (the API never reads the system clock itself)."""
    return service.now()


__all__ = ["register_routes", "silence_json"]
