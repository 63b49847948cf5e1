"""Real local HTTP receivers for alerting tests (aiohttp on 127.0.0.1, port 0).

Reusable by end-to-end tests::

    async with RecordingReceiver() as rx:
        rx.script(Reply(500), Reply(200))        # then the default (200)
        ... configure a webhook with url=rx.url ...
        await rx.wait_for_requests(2)
        assert rx.requests[1].json["status"] == "firing"

Behaviours: :class:`Reply` (status, headers, body), :class:`Hang` (sleep
before answering; the client times out), :class:`Hold` (answer when the test
says so), and :meth:`RecordingReceiver.go_down`
/ :meth:`RecordingReceiver.come_up` (connection refused on the same port).
Every request is recorded on arrival, before the behaviour runs.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """Answer with this status, headers and JSON body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = field(default_factory=lambda: {"ok": True})


@dataclass(frozen=True)
class Hang:
    """Sleep ``seconds`` before answering with ``then`` (the client should time out first)."""

    seconds: float
    then: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Hold:
    """Hold the request until the test sets ``released``, then answer with ``then``."""

    released: asyncio.Event
    then: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Recorded:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # loop time of arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class RecordingReceiver:
    """An HTTP server on 127.0.0.1 recording requests and playing scripted answers."""

    def __init__(self, default: Reply | None = None) -> None:
        self.requests: list[Recorded] = []
        self.default = default or Reply()
        self._script: deque[Reply | Hang | Hold] = deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._arrived = asyncio.Condition()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> RecordingReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No access log: this server stands in for Slack & co., whose logs are not ours (and
        # would quote the secret URLs that tests search the monitor's logs for).
        self._runner = web.AppRunner(
            app, shutdown_timeout=0.2, handler_cancellation=True, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port or 0, reuse_address=True)
        await site.start()
        if self._port is None:
            server = site._server  # the bound port of port 0 is only known from the socket
            assert server is not None
            self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def go_down(self) -> None:
        """Stop listening: clients get "connection refused" until :meth:`come_up`."""
        await self.stop()

    async def come_up(self) -> None:
        """Listen again on the same port."""
        await self.start()

    async def __aenter__(self) -> RecordingReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting and inspection --------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._port is not None, "start() first"
        return f"http://127.0.0.1:{self._port}/hook"

    def script(self, *behaviours: Reply | Hang | Hold) -> None:
        """Answer the next requests with these behaviours, then with ``default``."""
        self._script.extend(behaviours)

    async def wait_for_requests(self, n: int, within: float = 5.0) -> list[Recorded]:
        """Wait until at least ``n`` requests arrived (AssertionError on timeout)."""

        async def _wait() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests) >= n)

        try:
            await asyncio.wait_for(_wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"expected {n} requests within {within}s, got {len(self.requests)}"
            ) from None
        return self.requests

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                at=asyncio.get_running_loop().time(),
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        behaviour = self._script.popleft() if self._script else self.default
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            behaviour = behaviour.then
        elif isinstance(behaviour, Hold):
            await behaviour.released.wait()
            behaviour = behaviour.then
        return web.json_response(behaviour.body, status=behaviour.status, headers=behaviour.headers)


__all__ = ["Hang", "Hold", "Recorded", "RecordingReceiver", "Reply"]
