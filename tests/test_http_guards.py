"""The HTTP edge's guards, against a real server on 127.0.0.1: the Host allowlist (DNS
rebinding), the cap on open connections, and ``/metrics`` rendered off the event loop."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.service import MonitorService


@asynccontextmanager
async def served(tmp_path: Path, **http: Any) -> AsyncIterator[MonitorService]:
    """The service's HTTP edge alone (no broker), bound to 127.0.0.1 on a free port."""
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0, **http},
        "state": {"path": "state.sqlite"},
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    svc = MonitorService(parse_config(raw, base_dir=tmp_path))
    await svc.http.start()
    try:
        yield svc
    finally:
        await svc.http.stop()


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def _get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    reply = await _exchange(port, (head + "Connection: close\r\n\r\n").encode())
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _refused(svc: MonitorService, reason: str) -> float:
    value = svc.registry.get_sample_value("monitor_http_refused_total", {"reason": reason})
    assert value is not None, reason
    return value


# -- Host allowlist ---------------------------------------------------------------------


async def test_a_loopback_server_answers_loopback_names_only(tmp_path: Path) -> None:
    """A page on ``evil.example`` rebound to 127.0.0.1 read the whole JSON API from the
    victim's browser: nothing looked at the Host header. On a loopback bind only loopback
    names are answered now; others get a 421 naming the setting, counted by reason."""
    async with served(tmp_path) as svc:
        port = svc.http.bound_port
        assert port is not None
        for host in (f"127.0.0.1:{port}", f"LocalHost:{port}", "localhost.", f"[::1]:{port}"):
            status, _ = await _get(port, "/api/overview", host)
            assert status == 200, host
        for path in ("/api/overview", "/api/status", "/", "/metrics"):
            status, body = await _get(port, path, f"evil.example:{port}")
            assert status == 421, path
            assert b"evil.example" in body and b"http.allowed_hosts" in body
        assert _refused(svc, "host_not_allowed") == 4
        # A keep-alive request is refused and its connection closed: no slot held for it.
        reply = await _exchange(port, b"GET /api/status HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 421 ")
        # Hostile bytes in the header are never echoed; a missing Host is refused too.
        status, body = await _get(port, "/api/overview", "a<script>b")
        assert status == 421 and b"<script>" not in body and b"malformed" in body
        assert _refused(svc, "host_malformed") == 1
        reply = await _exchange(port, b"GET /api/overview HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.0 421") or reply.startswith(b"HTTP/1.1 421")
        assert _refused(svc, "host_missing") == 1


async def test_probes_answer_an_ip_address_as_host_but_not_a_name(tmp_path: Path) -> None:
    """Kubernetes probes send the pod IP as Host: /healthz and /readyz answer any IP
    address (no DNS answer makes a browser send one), but not a foreign name."""
    async with served(tmp_path, allowed_hosts=["monitor.example"]) as svc:
        port = svc.http.bound_port
        assert port is not None
        for path in ("/healthz", "/readyz"):
            assert (await _get(port, path, f"10.1.2.3:{port}"))[0] in (200, 503)
            assert (await _get(port, path, "[fd00::5]"))[0] in (200, 503)
            assert (await _get(port, path, "evil.example"))[0] == 421
        assert (await _get(port, "/api/status", "10.1.2.3"))[0] == 421
        # An explicit list is the whole list: localhost is not added to it.
        assert (await _get(port, "/api/status", "localhost"))[0] == 421
        assert (await _get(port, "/api/status", "Monitor.Example:443"))[0] == 200
    async with served(tmp_path, allowed_hosts=["*"]) as svc:
        assert svc.http.bound_port is not None
        assert (await _get(svc.http.bound_port, "/api/status", "anything.example"))[0] == 200


def test_the_default_policy_follows_the_bind_address() -> None:
    """Loopback bind: loopback names only. Any other or a wildcard bind: every name (the
    service cannot know the names it is reached by), unless ``allowed_hosts`` is set."""
    from monitor.http_hosts import HostPolicy, host_of

    for bind in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        policy = HostPolicy.for_server(bind, None)
        assert policy.refusal("evil.example") == "host_not_allowed", bind
        assert policy.refusal("localhost:1") is None and policy.refusal("[::1]") is None
        assert policy.refusal("127.0.0.9") is None
    for bind in ("0.0.0.0", "::", "", "10.0.0.7", "monitor.internal"):
        assert HostPolicy.for_server(bind, None).refusal("evil.example") is None, bind
    assert HostPolicy.for_server("0.0.0.0", ["m.example"]).refusal("evil.example") is not None
    assert host_of("[0:0::1]:80") == "::1" and host_of("::1") is None
    assert host_of("x:99999999") is None and host_of("a b") is None


@pytest.mark.parametrize(
    ("hosts", "says"),
    [
        (["monitor.example:9108"], "without a port"),
        (["a b"], "not a host name"),
        ([], "empty list"),
        (["*", "x"], "goes alone"),
        ([""], "empty host name"),
    ],
)
def test_allowed_hosts_is_checked_at_start(tmp_path: Path, hosts: list[str], says: str) -> None:
    raw = {"kafka": {"bootstrap_servers": "x:1"}, "http": {"allowed_hosts": hosts}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base_dir=tmp_path)
    assert "http.allowed_hosts" in str(info.value) and says in str(info.value)


# -- open connections -------------------------------------------------------------------


async def test_connections_over_the_limit_get_a_503_and_are_closed(tmp_path: Path) -> None:
    """Nothing capped open connections: a flood of idle ones held a file descriptor and a
    request handler each until the idle timeout. Over ``max_connections`` a connection is
    answered 503 and closed at once, counted; a slot freed is used again."""
    async with served(tmp_path, max_connections=2) as svc:
        port = svc.http.bound_port
        assert port is not None
        held = []
        for _ in range(2):  # two keep-alive connections, each past a whole request
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 ")
            held.append((reader, writer))
        reply = await _exchange(port, b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 ") and b"http.max_connections" in reply
        assert _refused(svc, "too_many_connections") == 1
        held[0][1].close()
        gate = svc.http.gate
        assert gate is not None
        for _ in range(500):  # the server sees the close a few loop turns later
            if gate.open < 2:
                break
            await asyncio.sleep(0.01)
        status, _ = await _get(port, "/api/status", "localhost")
        assert status == 200
        held[1][1].close()


# -- /metrics off the event loop ---------------------------------------------------------


class _Blocking(Collector):
    """A collector that waits in ``collect`` until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None
        self._lock = threading.Lock()
        self.inside = self.most_inside = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.entered.set()
        # On the event loop (the old handler) nothing can set it: it times out.
        self.released_in_time = self.release.wait(timeout=3)
        with self._lock:
            self.inside -= 1
        yield GaugeMetricFamily("zz_blocking_collector", "A test collector.", value=1.0)


async def test_the_loop_keeps_turning_while_metrics_render(tmp_path: Path) -> None:
    """``/metrics`` was rendered on the event loop: a slow page (many models) stopped
    consumption and every other request meanwhile. Rendered on a thread, the loop answers
    ``/healthz`` while a collector is still blocked."""
    async with served(tmp_path) as svc:
        port = svc.http.bound_port
        assert port is not None
        slow = _Blocking()
        svc.registry.register(slow)
        scrape = asyncio.create_task(_get(port, "/metrics", "localhost"))
        assert await asyncio.to_thread(slow.entered.wait, 10)
        assert (await _get(port, "/healthz", "localhost"))[0] in (200, 503)
        slow.release.set()
        status, body = await scrape
        assert slow.released_in_time is True
        assert status == 200 and b"zz_blocking_collector 1.0" in body


async def test_scrapes_render_one_at_a_time_off_the_default_executor(tmp_path: Path) -> None:
    """Pages are built one at a time on a thread of their own: a burst of scrapes costs one
    page's memory, and the default executor (checkpoint writes) stays free meanwhile."""
    async with served(tmp_path) as svc:
        port = svc.http.bound_port
        assert port is not None
        slow = _Blocking()
        svc.registry.register(slow)
        scrapes = [asyncio.create_task(_get(port, "/metrics", "localhost")) for _ in range(8)]
        for _ in range(1000):
            if slow.entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2) == "free"
        slow.release.set()
        assert [status for status, _ in await asyncio.gather(*scrapes)] == [200] * 8
        assert slow.most_inside == 1


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "text/plain",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=0.0.4;q=0.3",
    ],
)
async def test_metrics_negotiate_as_prometheus_clients_handler(tmp_path: Path, accept: str) -> None:
    """The same content type and page as prometheus_client's aiohttp handler for each
    Accept header, the ``name[]`` filter kept, and gzip when the scraper accepts it."""
    async with served(tmp_path) as svc:
        port = svc.http.bound_port
        assert port is not None
        query = "name[]=monitor_http_refused_total&name[]=monitor_http_bad_requests_total"
        theirs = await make_aiohttp_handler(svc.registry)(
            make_mocked_request("GET", f"/metrics?{query}", headers={"Accept": accept})
        )
        for encoding in ("identity", "gzip"):
            head = (
                f"GET /metrics?{query} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\n"
                f"Accept-Encoding: {encoding}\r\nConnection: close\r\n\r\n"
            )
            reply = await _exchange(port, head.encode())
            headers, _, body = reply.partition(b"\r\n\r\n")
            lines = headers.decode().lower().split("\r\n")
            assert f"content-type: {theirs.headers['Content-Type']}".lower() in lines
            if encoding == "gzip":
                assert "content-encoding: gzip" in lines
                body = gzip.decompress(body)
            assert body == theirs.body


def test_model_collector_reads_counters_the_loop_is_adding_to() -> None:
    """On a worker thread, ``collect`` iterated a model's counters while the loop added
    keys to them: "dictionary changed size during iteration", a 500 for that scrape. It
    reads copies now. (A tiny switch interval makes the interleaving near certain.)"""
    import sys
    from types import SimpleNamespace

    from monitor.service_metrics import ModelStateCollector

    invalid = {(f"f{i}", "nan"): 1 for i in range(500)}
    model = SimpleNamespace(
        name="m",
        ready=True,
        settings=SimpleNamespace(
            performance=SimpleNamespace(task=None), window=SimpleNamespace(type="count")
        ),
        events_total=1,
        unknown_feature_events=0,
        invalid_values=invalid,
        performance=None,
        category_overflow={},
        validator=SimpleNamespace(violations={}),
        last=None,
    )
    collector = ModelStateCollector(lambda: [model], 20, "full")
    errors: list[Exception] = []
    scrapes = [0]
    stop, scraping = threading.Event(), threading.Event()

    def scrape() -> None:
        # Any exception counts: the fake model once lacked a field collect() reads, the
        # thread died at its first scrape with an AttributeError, and the test passed
        # without racing anything.
        scraping.set()
        try:
            while not stop.is_set():
                list(collector.collect())
                scrapes[0] += 1
        except Exception as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        assert scraping.wait(10), "the scraper started"  # so the writes race it
        for i in range(20_000):
            invalid[(f"g{i}", "nan")] = 1
            if errors:
                break
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert errors == []
    assert scrapes[0] >= 1, "the scraper got through whole scrapes"


# -- long categories ---------------------------------------------------------------------


async def test_a_huge_category_is_cut_where_it_is_shown(tmp_path: Path) -> None:
    """A 10 MB category value from the wire was carried whole into ``/api/feature``, the
    feature page and the HTML report. Shown cut to 200 characters and a mark (escaped as
    before); the model's own data keeps the whole value. (A value over
    ``limits.max_category_chars``, 1000, is no category at all: tests/test_long_categories.py;
    this is the longest one kept.)"""
    from monitor.drift_check import DriftCheck
    from monitor.report import render_html

    huge = "<b>" + "x" * 997
    ref = [{"plan": p} for p in ["basic", "plus"] * 200]
    cur = [{"plan": p} for p in ["basic", "plus"] * 100] + [{"plan": huge}] * 50
    result = DriftCheck(model="m").run(ref, cur)
    assert huge in result.monitor.categories["plan"]  # stored whole
    (feature,) = [f for f in result.to_dict()["features"] if f and f["feature"] == "plan"]
    shown = {r["category"]: r for r in feature["distribution"]["categories"]}
    cut = "<b>" + "x" * 197 + "\u2026"
    assert set(shown) == {"basic", "plus", cut}
    assert shown[cut]["category_chars"] == len(huge) and shown["plus"]["category_chars"] == 4
    html = render_html(result.to_dict())
    assert "&lt;b&gt;" + "x" * 197 + "\u2026" in html and "x" * 201 not in html
    async with served(tmp_path) as svc:
        svc.models["m"] = result.monitor
        port = svc.http.bound_port
        assert port is not None
        status, body = await _get(port, "/api/feature?model=m&name=plan", "localhost")
        assert status == 200 and len(body) < 100_000
        cats = json.loads(body)["distribution"]["categories"]
        assert cut in {r["category"] for r in cats}
        status, body = await _get(port, "/feature?model=m&name=plan", "localhost")
        assert status == 200 and len(body) < 100_000 and b"x" * 201 not in body


# -- alert service not running ----------------------------------------------------------


async def test_pages_needing_the_alert_service_answer_503_while_it_is_not_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The HTTP edge outlives the alert service at shutdown (probes answer through the
    drain): a dashboard polling ``/api/silences`` then got a 500 and an ERROR traceback."""
    caplog.set_level(logging.DEBUG)
    async with served(tmp_path) as svc:  # the alert service never started
        port = svc.http.bound_port
        assert port is not None
        status, body = await _get(port, "/api/silences", "127.0.0.1")
        assert status == 503, (status, body[:200])
        assert b"not running" in body
        for path in ("/api/overview", "/", "/silences"):  # these read what is in memory
            status, body = await _get(port, path, "127.0.0.1")
            assert status == 200, (path, status, body[:200])
        status, _ = await _get(port, "/healthz", "127.0.0.1")
        assert status in (200, 503)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]
