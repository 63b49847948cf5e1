"""Helpers for tests that run the monitor as a real process and break things around it.

* :class:`MonitorProcess`: ``python -m monitor.cli run --config FILE`` as a child
  process (own process group, output to a file), its HTTP address read from its
  log, and the three ways it can end: SIGTERM, SIGKILL, or by itself.
* :func:`write_config`: a YAML config for one test (fresh topics, group, state).
* :func:`end_offsets` / :func:`committed_offsets`: what Kafka says, for comparing
  with what the state store says.

Nothing here fakes Kafka: the processes talk to a real broker on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
_SERVING = re.compile(r"serving metrics at (http://\S+)/metrics")


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float, every: float = 0.1
) -> None:
    """Poll ``check`` (sync or async) until it returns true; AssertionError after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


class MonitorProcess:
    """One ``monitor run`` child process."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self._log_from = 0

    def start(self) -> MonitorProcess:
        # A restarted process appends to the same log: only read what this one wrote.
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config)],
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.url = None
        return self

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait_serving(self, within: float = 30.0) -> str:
        """The HTTP base URL, once the service logged it (it has joined by then)."""
        assert self.proc is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            urls = _SERVING.findall(self.output()[self._log_from :])
            if urls and self.proc.poll() is None:
                self.url = urls[-1]
                return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"monitor exited ({self.proc.returncode}):\n{self.tail()}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"monitor not serving within {within}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    async def get(self, path: str) -> httpx.Response:
        assert self.url is not None
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await client.get(self.url + path)

    async def status(self) -> dict[str, Any]:
        return (await self.get("/api/status")).json()

    async def wait_positions(self, wanted: dict[str, int], within: float = 60.0) -> None:
        """Until ``/api/status`` positions reach ``wanted`` ("topic/partition" -> offset)."""
        deadline = time.monotonic() + within
        got: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                got = (await self.status())["positions"]
            except httpx.HTTPError:
                got = {}
            if all(got.get(k, -1) >= v for k, v in wanted.items()):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"positions {got} did not reach {wanted} within {within}s")

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown code runs."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, within: float = 30.0) -> int:
        """SIGTERM and wait for the exit code (SIGKILL and fail after ``within`` seconds)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"no exit within {within}s of SIGTERM:\n{self.tail()}") from None

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


async def end_offsets(bootstrap: str, topic: str) -> dict[str, int]:
    """``{"topic/partition": high watermark}`` of every non-empty partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    # Empty partitions are left out: nothing is ever consumed (or positioned) there.
    return {f"{tp.topic}/{tp.partition}": off for tp, off in ends.items() if off > 0}


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[str, int | None]:
    """What ``group`` committed for each partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        out: dict[str, int | None] = {}
        for p in sorted(parts):
            out[f"{topic}/{p}"] = await consumer.committed(TopicPartition(topic, p))
        return out
    finally:
        await consumer.stop()
