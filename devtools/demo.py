"""The end-to-end demo: a local Kafka broker, the monitor, a webhook receiver, a drifting stream.

``bash scripts/demo.sh`` (``python -m devtools.demo`` from the checkout root) does, on
127.0.0.1 only:

1. starts a single-node KRaft Kafka broker (:mod:`devtools.local_kafka`);
2. starts a webhook receiver that verifies each alert's Standard Webhooks
   signature and prints it as it arrives;
3. writes a reference file of stationary events for the ``credit-risk`` model;
4. starts the monitor with ``config/demo.yaml``;
5. publishes a stream in which ``income`` and ``credit_score`` shift by one
   standard deviation half-way through;
6. prints a summary: what drifted, how long after the drift onset the first
   alert came, where the metrics are; then shuts everything down in order.

A checkout script, not part of the installed package: it reads ``config/demo.yaml`` from
the checkout and needs :mod:`devtools.local_kafka` (Java and Maven).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from devtools.local_kafka import LocalKafka
from monitor.config import load_config
from monitor.errors import MonitorError
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish, write_reference

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
DRIFTED = ("income", "credit_score")


class DemoReceiver:
    """A webhook endpoint that checks signatures and remembers what arrived."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[float, dict[str, Any], bool]] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alerts", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/alerts"

    def _verify(self, headers: Any, body: bytes) -> bool:
        key = self.secret.removeprefix("whsec_")
        key_bytes = base64.b64decode(key) if self.secret.startswith("whsec_") else key.encode()
        signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
        expected = base64.b64encode(hmac.new(key_bytes, signed, hashlib.sha256).digest()).decode()
        return any(
            hmac.compare_digest(sig.partition(",")[2], expected)
            for sig in headers.get("webhook-signature", "").split()
        )

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = self._verify(request.headers, body)
        alert = json.loads(body)
        self.received.append((time.time(), alert, ok))
        self.arrived.set()
        feats = ", ".join(
            f"{sig.get('subject')} ({sig.get('detector')} {_num(sig.get('statistic'))})"
            for sig in alert.get("signals", [])
        )
        print(
            f"  >> ALERT {alert.get('action')} [{alert.get('status')}/{alert.get('severity')}] "
            f"model={alert.get('model')} signature={'valid' if ok else 'INVALID'}: {feats}",
            flush=True,
        )
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, int | float) else "n/a"


async def run_demo(workdir: Path, events: int = 24_000, rate: float = 3000.0) -> int:
    workdir = await asyncio.to_thread(workdir.resolve)
    await asyncio.to_thread(shutil.rmtree, workdir, True)
    await asyncio.to_thread(workdir.mkdir, parents=True)
    print("== 1/5 starting a local Kafka broker (KRaft, 127.0.0.1)", flush=True)
    kafka = LocalKafka(data_dir=workdir / "kafka")
    await asyncio.to_thread(kafka.start)
    try:
        return await _with_broker(kafka, workdir, events, rate)
    finally:
        await asyncio.to_thread(kafka.stop)


async def _with_broker(kafka: LocalKafka, workdir: Path, events: int, rate: float) -> int:
    print(f"   broker at {kafka.bootstrap_servers}", flush=True)
    await asyncio.to_thread(
        kafka.create_topics, ["predictions", "labels", "predictions-dead-letter"]
    )
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = DemoReceiver(secret)
    await receiver.start()
    print(f"== 2/5 webhook receiver at {receiver.url}", flush=True)
    write_reference(workdir / "reference.jsonl", 10_000)
    print(f"== 3/5 reference: 10000 stationary events in {workdir / 'reference.jsonl'}", flush=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "WEBHOOK_URL": receiver.url,
        "WEBHOOK_SECRET": secret,
        "MONITOR_STATE_DIR": str(workdir),
        "MONITOR_HTTP_PORT": os.environ.get("MONITOR_HTTP_PORT", "0"),
    }
    config = load_config(DEMO_CONFIG, env=env)
    service = MonitorService(config)
    await service.start()
    runner = asyncio.create_task(service.run())
    metrics_url = f"{service.http.url}/metrics"
    print(f"== 4/5 monitor running; metrics at {metrics_url}", flush=True)
    drift_start = events // 2
    print(
        f"== 5/5 publishing {events} events at {rate:.0f}/s; {', '.join(DRIFTED)} shift by "
        f"+1 sigma from event {drift_start}",
        flush=True,
    )
    try:
        info = await publish(
            kafka.bootstrap_servers,
            labels_topic="labels",
            events=events,
            rate=rate,
            drift=DriftSpec(kind="mean", features=DRIFTED, size=1.0, start=drift_start),
        )
        # Let the monitor drain and the outbox deliver.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            mm = service.models.get("credit-risk")
            if mm is not None and mm.events_total >= events and receiver.received:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(metrics_url)).text
    finally:
        service.request_stop()
        await runner
        await service.stop(grace_seconds=5)
        await receiver.stop()
    return _summary(receiver, info, metrics, metrics_url, events)


def _summary(
    receiver: DemoReceiver, info: dict[str, float], metrics: str, url: str, events: int
) -> int:
    print("\n== summary", flush=True)
    firing = [(t, a, ok) for t, a, ok in receiver.received if a.get("status") == "firing"]
    drifting = [
        line.split('feature="')[1].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith("monitor_feature_drift_severity{") and not line.endswith(" 0.0")
    ]
    drifting_text = ", ".join(drifting) or "none"
    print(f"   events published: {int(info['sent'])}; drifting at the end: {drifting_text}")
    if not firing:
        print("   no alert arrived: something is wrong (see the log above)")
        return 1
    t, first, ok = firing[0]
    named = sorted({s.get("subject") for s in first.get("signals", [])})
    onset = info.get("drift_sent_at")
    delay = f"{t - onset:.1f} s after the first drifted event was published" if onset else "n/a"
    signature = "valid" if ok else "INVALID"
    print(f"   first alert: {delay}; it named {', '.join(map(str, named))}; signature {signature}")
    print(f"   alerts received: {len(receiver.received)} ({len(firing)} firing)")
    print(f"   metrics were served at {url} (Prometheus text format); the monitor has stopped")
    expected = set(DRIFTED)
    return 0 if expected <= set(named) | set(drifting) else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.demo [--workdir DIR] [--events N] [--rate R]``."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description="The end-to-end demo: local broker, monitor, webhook receiver, drift.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"))
    parser.add_argument("--events", type=int, default=24_000)
    parser.add_argument("--rate", type=float, default=3000.0, help="events per second")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        return asyncio.run(run_demo(workdir=args.workdir, events=args.events, rate=args.rate))
    except MonitorError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
