"""The HTTP edge against hostile clients: a malformed request costs a counter and a DEBUG
line, never an ERROR with a traceback, while a handler's own failure still logs ERROR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.service import MonitorService

MARK = b"zq<script>"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[MonitorService]:
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    svc = MonitorService(parse_config(raw, base_dir=tmp_path))
    await svc.http.start()  # the HTTP edge alone: no broker
    try:
        yield svc
    finally:
        await svc.http.stop()


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _bad(service: MonitorService, reason: str) -> float:
    value = service.registry.get_sample_value("monitor_http_bad_requests_total", {"reason": reason})
    assert value is not None, reason
    return value


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GET /" + MARK * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "too_long"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + MARK * 1000 + b"\r\n\r\n", "too_long"),
        (b"GET / HTTP/9." + MARK + b"\r\nHost: x\r\n\r\n", "bad_request_line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + MARK + b" header\r\n\r\n", "bad_request"),
        (b"\x16\x03\x01" + MARK + b"\r\n\r\n", "bad_method"),
    ],
)
async def test_a_malformed_request_is_counted_and_logged_at_debug_only(
    service: MonitorService,
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
    reason: str,
) -> None:
    """A request line over 8 KB made aiohttp log ERROR with a traceback quoting the bytes
    received: any client could fill the logs at ERROR with its own text."""
    caplog.set_level(logging.DEBUG)
    port = service.http.bound_port
    assert port is not None
    before = _bad(service, reason)
    for _ in range(3):
        assert (await _exchange(port, request_bytes)).startswith(b"HTTP/1.")
    assert _bad(service, reason) == before + 3
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
    assert not any(r.exc_info for r in caplog.records)
    assert all(MARK.decode() not in r.getMessage() for r in caplog.records)
    assert sum(f"({reason})" in r.getMessage() for r in caplog.records) == 3
    # The server still answers a good request on a fresh connection.
    ok = await _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 ")


async def test_a_handler_failure_still_logs_error_with_its_traceback(
    service: MonitorService, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("status broke")

    monkeypatch.setattr(service, "status", broken)
    port = service.http.bound_port
    assert port is not None
    reply = await _exchange(
        port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 500")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "aiohttp.server"
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert sum(_bad(service, reason) for reason in ("bad_request", "too_long")) == 0
