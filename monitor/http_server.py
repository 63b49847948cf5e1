"""The HTTP edge: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/status``, the admin API,
and the web UI with its read-only JSON API (:mod:`monitor.ui.web`).

Binds to 127.0.0.1 unless configured otherwise. State-changing endpoints (the
silences API of the alert engine) require ``Authorization: Bearer <admin_token>``
and are disabled when no token is configured. Nothing here prints a secret.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from collections.abc import MutableMapping
from typing import Any, Protocol

from aiohttp import http_exceptions, web
from aiohttp.log import server_logger
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.aiohttp import make_aiohttp_handler

from monitor.alerting.engine import AlertService
from monitor.errors import ConfigError
from monitor.silences_api import register_routes
from monitor.ui.web import UiRoutes

_log = logging.getLogger(__name__)

#: Why aiohttp refused a request before any handler ran (the label values of
#: ``monitor_http_bad_requests_total``), most specific class first.
BAD_REQUEST_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.BadHttpMethod, "bad_method"),
    (http_exceptions.BadStatusLine, "bad_request_line"),
    (http_exceptions.LineTooLong, "too_long"),
    (http_exceptions.InvalidHeader, "bad_header"),
    (http_exceptions.InvalidURLError, "bad_url"),
    (http_exceptions.PayloadEncodingError, "bad_body"),
    (http_exceptions.HttpProcessingError, "bad_request"),
)


def bad_request_reason(exc: BaseException) -> str | None:
    """The bounded reason of a malformed request, or ``None`` for anything else."""
    for kind, reason in BAD_REQUEST_REASONS:
        if isinstance(exc, kind):
            return reason
    return None


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, minus the client's own errors.

    aiohttp logs a malformed request (a request line or header over 8 KB, a bad
    request line or header) at ERROR with a traceback quoting the bytes received, so any
    client could fill the logs at ERROR. Such a request costs a counter by reason and
    one DEBUG line here; everything else (a handler's exception above all) passes on to
    aiohttp's logger unchanged, at ERROR with its traceback. Given to aiohttp as its
    documented ``logger`` handler argument; ``log`` is where every level method ends.
    """

    def __init__(self, counter: Counter) -> None:
        super().__init__(server_logger, {})
        self._counter = counter

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if exc is True:
            exc = sys.exc_info()[1]
        elif isinstance(exc, tuple):
            exc = exc[1]
        reason = bad_request_reason(exc) if isinstance(exc, BaseException) else None
        if reason is None:
            super().log(level, msg, *args, **kwargs)
            return
        self._counter.labels(reason=reason).inc()
        # The reason only: the exception's text quotes the hostile bytes.
        _log.debug("malformed HTTP request refused (%s)", reason)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


class ServedService(Protocol):
    """What the HTTP edge reads of the service (:class:`~monitor.service.MonitorService`).

    The service builds this server, so the server depends on this small protocol
    and not on the service module: the dependency points one way.
    """

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def alerts(self) -> AlertService: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...


#: How long a connection may sit without a whole request before it is closed: idle before
#: its first request, between keep-alive requests, or trickling a request's headers a byte
#: at a time. aiohttp's default is 3630 s, so a client that opened connections and never
#: finished a request (a crashed scraper, a half-open proxy, a slowloris) held a socket
#: each for an hour. Above Prometheus' usual scrape intervals, so a scraper keeps its
#: connection alive between scrapes.
IDLE_TIMEOUT_SECONDS = 75.0


class HttpServer:
    """aiohttp application around the service (anything that is a :class:`ServedService`)."""

    def __init__(
        self,
        service: ServedService,
        host: str,
        port: int,
        admin_token: str | None,
        *,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.idle_timeout_seconds = idle_timeout_seconds
        self.service = service
        self.host = host
        self.port = port
        self.app = web.Application()
        # prometheus_client's handler: content negotiation (OpenMetrics when the scraper
        # asks for it, as Prometheus does) and compression when the client accepts it.
        self.app.router.add_get("/metrics", make_aiohttp_handler(service.registry))
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/api/status", self._status)
        register_routes(self.app, service.alerts, admin_token)
        UiRoutes(service, service.history, admin_token is not None).register(self.app)
        self.bad_requests = Counter(
            "monitor_http_bad_requests",
            "Malformed HTTP requests refused with 400 before any handler ran, by reason.",
            ["reason"],
            registry=service.registry,
        )
        for _, reason in BAD_REQUEST_REASONS:
            self.bad_requests.labels(reason=reason)
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            logger=_ServerLog(self.bad_requests),
            keepalive_timeout=self.idle_timeout_seconds,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            # One line naming the setting to change, not a traceback.
            await self._runner.cleanup()
            self._runner = None
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                # The host, not the port: a name that does not resolve ("unknown error -2"
                # blamed http.port) or an address this machine does not have.
                why = exc.strerror if isinstance(exc, socket.gaierror) else os.strerror(exc.errno)
                raise ConfigError(
                    [f"http.host {self.host}: not an address to listen on here ({why.lower()})"]
                ) from exc
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError([f"http.port {self.port}: {why} (http.host {self.host})"]) from exc
        # ``runner.addresses``: the bound socket names (public API), so port 0 reports the real one.
        addresses = self._runner.addresses
        self.bound_port = int(addresses[0][1]) if addresses else self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.bound_port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, detail = self.service.health()
        return web.json_response(detail, status=200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, detail = self.service.readiness()
        return web.json_response(detail, status=200 if ok else 503)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.status())
