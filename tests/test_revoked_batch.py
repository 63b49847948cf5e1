"""A batch polled before a rebalance revoked some of its partitions applies only the rest.

The consume loop polls, then takes the service's lock to apply the batch; a revocation
that takes the lock first (its checkpoint runs while holding it) gives the partitions
away. Their messages in the batch in hand belong to the new owner now. Applied anyway
(as they were), they made the model again in memory and moved the partition's position
back, and the next checkpoint wrote that stale state and offset over the new owner's:
``tests/test_kafka_scale.py`` saw a model count 300 events twice after the next move.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import orjson

from monitor.clock import ManualClock
from monitor.events import MessageBatch
from monitor.service import MonitorService
from tests import scale_stream

P0 = ("predictions", 0)
P1 = ("predictions", 1)


def _batch(runs: dict[tuple[str, int], tuple[list[bytes], range]]) -> MessageBatch:
    batch = MessageBatch([], [], [], [], [])
    for (topic, partition), (values, offsets) in runs.items():
        n = len(values)
        batch.add_run(topic, partition, values, [0.0] * n, offsets, [None] * n)
    return batch


def _values(model: str, n: int, seed: int) -> list[bytes]:
    return [v for _, v in scale_stream._events(n * 8, seed) if orjson.loads(v)["model"] == model][
        :n
    ]


async def _revoked_between_poll_and_apply() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        config = scale_stream.service_config(Path(tmp))
        svc = MonitorService(config, clock=ManualClock(scale_stream.T0 + 3600))
        svc.source = scale_stream._NoKafka()  # type: ignore[assignment]
        await svc.alerts.start()
        try:
            m0, m1 = _values("m0", 60, 1), _values("m1", 60, 2)
            await svc.process(_batch({P0: (m0[:30], range(30)), P1: (m1[:30], range(30))}))
            before = {m: svc.models[m].events_total for m in ("m0", "m1")}

            svc._revoked_since_poll.clear()  # what the consume loop does as a poll begins
            polled = _batch({P0: (m0[30:], range(30, 60)), P1: (m1[30:], range(30, 60))})
            # The rebalance gets the lock before the batch does.
            await svc._on_revoked({P0})
            await svc.process(polled)
            return {
                "before": before,
                "models": sorted(svc.models),
                "m1": svc.models["m1"].events_total,
                "positions": dict(svc._positions),
                "discarded": svc.registry.get_sample_value(
                    "monitor_rebalance_discarded_messages_total"
                ),
                "partition": dict(svc._model_partition),
            }
        finally:
            await svc.alerts.stop(grace_seconds=0)


def test_messages_of_a_partition_revoked_after_the_poll_are_not_applied() -> None:
    got = asyncio.run(_revoked_between_poll_and_apply())
    assert got["before"] == {"m0": 30, "m1": 30}
    # m0's partition went away with the rebalance: its model is not made again in
    # memory, its position not moved, nothing of it is checkpointed by this instance.
    assert "m0" not in got["models"]  # type: ignore[operator]
    assert P0 not in got["positions"]  # type: ignore[operator]
    assert got["partition"] == {"m1": P1}
    # The partition still ours is applied whole.
    assert got["m1"] == 60
    assert got["positions"] == {P1: 60}
    assert got["discarded"] == 30.0
