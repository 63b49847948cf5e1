"""The HTTP edge: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/status``, the admin API,
and the web UI with its read-only JSON API (:mod:`monitor.ui.web`).

Binds to 127.0.0.1 unless configured otherwise. State-changing endpoints (the
silences API of the alert engine) require ``Authorization: Bearer <admin_token>``
and are disabled when no token is configured. Nothing here prints a secret.

Before any handler runs: a request whose ``Host`` the :class:`~monitor.http_hosts.HostPolicy`
refuses gets a 421 (DNS rebinding), and a connection beyond ``max_connections`` gets a
503 and is closed (:class:`_ConnectionGate`); both count in ``monitor_http_refused_total``.
``/metrics`` is rendered on a thread of its own, so a large page does not stop the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from aiohttp import hdrs, http_exceptions, web
from aiohttp.log import server_logger
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder

from monitor.alerting.engine import AlertService
from monitor.config import DEFAULT_MAX_CONNECTIONS
from monitor.errors import ConfigError, ServiceStateError
from monitor.http_hosts import HOST_REFUSALS, HostPolicy, host_of, is_ip_literal
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

#: Endpoints for probes (kubelet, Docker, load balancers): they also answer a ``Host`` that
#: is an IP address, the pod or target IP a probe sends, which no DNS answer can produce, so
#: no rebinding page can use it. They show the service's state, not its data.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})

#: Why a request or a connection was refused before any handler ran (label values of
#: ``monitor_http_refused_total``).
REFUSED_REASONS = (*HOST_REFUSALS, "too_many_connections")

#: How long a connection over ``max_connections`` is kept after its 503 was written: long
#: enough for the client to read it (closing at once, with its request unread, makes the
#: kernel send a reset that can destroy the response), short enough for a flood.
REFUSED_LINGER_SECONDS = 1.0
#: Refused connections lingering at once at most; past them, one more is reset at once.
MAX_LINGERING = 64

_OVERLOADED_BODY = b"503: too many open connections (http.max_connections); retry\n"
_OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_OVERLOADED_BODY), _OVERLOADED_BODY)
)


def _misdirected(header: str | None, reason: str) -> web.Response:
    """The 421 for a refused Host: plain text naming the setting. A name is shown as parsed
    (letters, digits, ``.-_:`` only), a malformed header not at all: no byte of it echoed."""
    name = host_of(header) if header is not None else None
    if reason == "host_missing":
        what = "a request without a Host header"
    elif reason == "host_malformed" or name is None:
        what = "a malformed Host header (or more than one)"
    else:
        what = f"the host name {name[:100]}"
    body = (
        f"421 Misdirected Request: this server does not answer {what}.\n"
        "It answers only the names in http.allowed_hosts (by default, when it listens on a "
        "loopback address: localhost and the loopback addresses), which guards it against "
        "DNS rebinding. Add the name to http.allowed_hosts to use it.\n"
    )
    response = web.Response(
        status=421,
        text=body,
        content_type="text/plain",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        },
    )
    # A browser tab kept polling a refused name would otherwise hold a keep-alive slot.
    response.force_close()
    return response


def host_guard(policy: HostPolicy, refused: Counter) -> Any:
    """The middleware refusing requests whose ``Host`` the policy refuses (421)."""

    @web.middleware
    async def check_host(request: web.Request, handler: Any) -> web.StreamResponse:
        headers = request.headers.getall(hdrs.HOST, [])
        header = headers[0] if len(headers) == 1 else None
        reason = policy.refusal(header) if len(headers) < 2 else "host_malformed"
        if reason is not None and request.path in PROBE_PATHS and header is not None:
            name = host_of(header)
            if name is not None and is_ip_literal(name):
                reason = None
        if reason is None:
            return await handler(request)
        refused.labels(reason=reason).inc()
        return _misdirected(header, reason)

    return check_host


@web.middleware
async def unavailable_while_stopped(request: web.Request, handler: Any) -> web.StreamResponse:
    """A 503 for a request that needs the alert service while it is not running.

    The HTTP edge stops last, after the alert outbox is flushed, so that probes answer
    through the drain; a page or ``/api/silences`` asked for in that second (a dashboard
    polling) was a 500 with an ERROR traceback in the shutdown log.
    """
    try:
        return await handler(request)
    except ServiceStateError:
        return web.json_response(
            {"error": "the alert service is not running (the monitor is starting or stopping)"},
            status=503,
            headers={"Retry-After": "5"},
        )


class _Refuse(asyncio.Protocol):
    """A connection over the limit: the 503 written at once, the peer's bytes discarded,
    closed when the peer has read it and closed, or after :data:`REFUSED_LINGER_SECONDS`."""

    def __init__(self, gate: _ConnectionGate) -> None:
        self._gate = gate
        self._timer: asyncio.TimerHandle | None = None
        self._lingers = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._gate.lingering >= MAX_LINGERING:
            transport.abort()
            return
        self._gate.lingering += 1
        self._lingers = True
        transport.write(_OVERLOADED)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSED_LINGER_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: it is answered already

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lingers:
            self._gate.lingering -= 1


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted by the gate until it is lost.

    Forwards every callback asyncio makes to a protocol (``connection_made``,
    ``data_received``, ``eof_received``, ``pause_writing``, ``resume_writing``,
    ``connection_lost``) and nothing else.
    """

    def __init__(self, inner: asyncio.Protocol, gate: _ConnectionGate) -> None:
        self._inner = inner
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._gate.open -= 1
        self._inner.connection_lost(exc)


class _ConnectionGate:
    """The protocol factory given to ``loop.create_server``: aiohttp's (``runner.server``,
    its documented low-level protocol factory) while fewer than ``limit`` connections are
    open, a 503 otherwise.

    Counted here, from the factory call to ``connection_lost``, and not from aiohttp's
    list of connections, which a burst of accepts outruns (a protocol joins it only when
    asyncio calls ``connection_made``, a loop turn after the factory).
    """

    def __init__(self, factory: Callable[[], asyncio.Protocol], limit: int, refused: Counter):
        self._factory = factory
        self.limit = limit
        self._refused = refused
        self.open = 0
        self.lingering = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit:
            self._refused.labels(reason="too_many_connections").inc()
            return _Refuse(self)
        inner = self._factory()
        self.open += 1
        return _Counted(inner, self)


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
        allowed_hosts: list[str] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.idle_timeout_seconds = idle_timeout_seconds
        self.max_connections = max_connections
        self.service = service
        self.host = host
        self.port = port
        self.host_policy = HostPolicy.for_server(host, allowed_hosts)
        self.refused = Counter(
            "monitor_http_refused",
            "HTTP requests refused for their Host header (421, http.allowed_hosts) and "
            "connections refused over http.max_connections (503), by reason.",
            ["reason"],
            registry=service.registry,
        )
        for reason in REFUSED_REASONS:
            self.refused.labels(reason=reason)
        self.app = web.Application()
        if self.host_policy.checks:
            # First: the outermost middleware, before any handler reads anything.
            self.app.middlewares.append(host_guard(self.host_policy, self.refused))
        self.app.middlewares.append(unavailable_while_stopped)
        self.app.router.add_get("/metrics", self._metrics)
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
        self._listener: asyncio.AbstractServer | None = None
        self.gate: _ConnectionGate | None = None
        # One thread of its own for /metrics: pages are built one at a time (a burst of
        # scrapes costs one page's memory, not one per request), and never take the default
        # executor's threads, which checkpoint writes wait for.
        self._render: ThreadPoolExecutor | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            logger=_ServerLog(self.bad_requests),
            keepalive_timeout=self.idle_timeout_seconds,
        )
        await self._runner.setup()
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-render")
        server = self._runner.server
        assert server is not None  # set by setup()
        self.gate = _ConnectionGate(server, self.max_connections, self.refused)
        try:
            # As web.TCPSite does (same backlog), with the gate as the protocol factory:
            # aiohttp has no limit on open connections of its own.
            self._listener = await asyncio.get_running_loop().create_server(
                self.gate, self.host, self.port, backlog=128
            )
        except OSError as exc:
            # One line naming the setting to change, not a traceback.
            await self.stop()
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                # The host, not the port: a name that does not resolve ("unknown error -2"
                # blamed http.port) or an address this machine does not have.
                why = exc.strerror if isinstance(exc, socket.gaierror) else os.strerror(exc.errno)
                raise ConfigError(
                    [f"http.host {self.host}: not an address to listen on here ({why.lower()})"]
                ) from exc
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError([f"http.port {self.port}: {why} (http.host {self.host})"]) from exc
        sockets = self._listener.sockets
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.bound_port}"

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()  # no new connections; the open ones are closed by the runner
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        render, self._render = self._render, None
        if render is not None:
            render.shutdown(wait=False, cancel_futures=True)

    async def _metrics(self, request: web.Request) -> web.Response:
        """The registry in the format the scraper asks for, rendered on a worker thread.

        What prometheus_client's aiohttp handler does (``choose_encoder`` for OpenMetrics
        or text, ``name[]`` for a subset, aiohttp's compression when the client accepts
        it), except that the collectors and the encoding run on a thread of their own: on
        the event loop a page of many models stopped consumption, heartbeats and every
        other request while it was built. The collectors are thread-safe for it
        (:class:`~monitor.service_metrics.ModelStateCollector` reads snapshots).
        """
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        names = request.query.getall("name[]", [])
        render = self._render
        if render is None:  # stopping
            raise web.HTTPServiceUnavailable()
        body, content_type = await asyncio.get_running_loop().run_in_executor(
            render, partial(_render_metrics, self.service.registry, accept, names)
        )
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, detail = self.service.health()
        return web.json_response(detail, status=200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, detail = self.service.readiness()
        return web.json_response(detail, status=200 if ok else 503)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.status())


def _render_metrics(
    registry: CollectorRegistry, accept: str, names: list[str]
) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    source = registry.restricted_registry(names) if names else registry
    return encoder(source), content_type
