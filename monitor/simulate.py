"""A realistic synthetic prediction stream, with drift of a chosen kind, size and start.

The default model, ``credit-risk``, has ten numeric features with the shapes real
tabular data has (log-normal incomes, bounded ratios, counts, a few missing
ages) and two categorical ones, and a score computed from them by a fixed
logistic model, so that input drift moves the prediction distribution as it
would in production. Labels, when asked for, are drawn as Bernoulli(score): the
scores are calibrated by construction.

Drift kinds (applied to the named features from event index ``drift_start`` on):

* ``mean``: shift by ``size`` standard deviations of the feature;
* ``scale``: multiply the spread around the mean by ``1 + size``;
* ``category``: multiply the share of the feature's first category by ``1 + size``;
* ``missing``: make ``size`` (0..1) of the values missing.

Generation is vectorised per chunk; only JSON encoding is per event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

DriftKind = Literal["none", "mean", "scale", "category", "missing"]

NUMERIC = (
    "income",
    "age",
    "credit_score",
    "debt_ratio",
    "num_accounts",
    "loan_amount",
    "employment_years",
    "utilization",
    "late_payments",
    "tenure_months",
)
CATEGORICAL = {
    "region": (("north", "south", "east", "west"), (0.4, 0.3, 0.2, 0.1)),
    "channel": (("web", "mobile", "branch", "partner"), (0.45, 0.35, 0.15, 0.05)),
}
# Population standard deviations, for drift sizes in sigma (measured on 1e6 draws, rounded).
_STD = {
    "income": 32_000.0,
    "age": 11.5,
    "credit_score": 80.0,
    "debt_ratio": 0.16,
    "num_accounts": 2.0,
    "loan_amount": 13_000.0,
    "employment_years": 6.0,
    "utilization": 0.2,
    "late_payments": 0.55,
    "tenure_months": 34.6,
}


@dataclass
class DriftSpec:
    kind: DriftKind = "none"
    features: tuple[str, ...] = ()
    size: float = 1.0
    start: int = 0


@dataclass
class Simulator:
    """Generates prediction events (and labels) for one model, deterministically by seed."""

    model: str = "credit-risk"
    model_version: str = "2026-11-01"
    seed: int = 7
    drift: DriftSpec = field(default_factory=DriftSpec)
    start_time: float | None = None
    events_per_second: float = 1000.0  # spacing of event timestamps

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._index = 0
        self._t0 = time.time() if self.start_time is None else self.start_time

    def columns(self, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The next ``n`` events as columns (features, score), drift applied by event index."""
        rng = self._rng
        cols: dict[str, Any] = {
            "income": rng.lognormal(10.8, 0.55, n),
            "age": np.clip(rng.normal(41, 12, n), 18, 90),
            "credit_score": np.clip(rng.normal(660, 80, n), 300, 850),
            "debt_ratio": rng.beta(2.0, 5.0, n),
            "num_accounts": rng.poisson(4, n).astype(np.float64),
            "loan_amount": rng.lognormal(9.6, 0.7, n),
            "employment_years": rng.exponential(6.0, n),
            "utilization": rng.beta(2.0, 3.0, n),
            "late_payments": rng.poisson(0.3, n).astype(np.float64),
            "tenure_months": rng.uniform(1, 120, n),
        }
        for name, (cats, probs) in CATEGORICAL.items():
            cols[name] = np.asarray(cats, dtype=object)[rng.choice(len(cats), n, p=probs)]
        missing_age = rng.random(n) < 0.02
        idx = self._index + np.arange(n)
        d = self.drift
        if d.kind != "none":
            on = idx >= d.start
            for f in d.features:
                if not on.any():
                    break
                if d.kind == "mean" and f in _STD:
                    cols[f] = np.where(on, cols[f] + d.size * _STD[f], cols[f])
                elif d.kind == "scale" and f in _STD:
                    mu = cols[f].mean()
                    cols[f] = np.where(on, mu + (cols[f] - mu) * (1 + d.size), cols[f])
                elif d.kind == "category" and f in CATEGORICAL:
                    cats, probs = CATEGORICAL[f]
                    p = np.array(probs) * np.r_[1 + d.size, np.ones(len(cats) - 1)]
                    drifted = np.asarray(cats, dtype=object)[
                        rng.choice(len(cats), n, p=p / p.sum())
                    ]
                    cols[f] = np.where(on, drifted, cols[f])
                elif d.kind == "missing":
                    cols[f] = np.where(on & (rng.random(n) < d.size), None, cols[f]).astype(object)
        z = (
            -1.0
            + 1.2 * (cols["debt_ratio"].astype(float) - 0.29) / 0.16
            - 0.9 * (cols["credit_score"].astype(float) - 660) / 80
            + 0.5 * cols["late_payments"].astype(float)
            + 0.4 * (cols["utilization"].astype(float) - 0.4) / 0.2
            - 0.3 * (np.log(np.maximum(cols["income"].astype(float), 1.0)) - 10.8) / 0.55
        )
        score = 1.0 / (1.0 + np.exp(-z))
        cols["age"] = np.where(missing_age, None, cols["age"]).astype(object)
        self._index += n
        return cols, score

    def events(self, n: int) -> Iterator[tuple[dict[str, Any], int]]:
        """``n`` prediction events (with the true label drawn as Bernoulli(score))."""
        cols, score = self.columns(n)
        labels = (self._rng.random(n) < score).astype(int)
        base = self._index - n
        names = list(cols)
        lists = {k: v.tolist() for k, v in cols.items()}
        scores = score.round(6).tolist()
        for i in range(n):
            ts = self._t0 + (base + i) / self.events_per_second
            yield (
                {
                    "event_id": str(
                        uuid.UUID(int=int(self._rng.integers(0, 2**63)) << 64 | (base + i))
                    ),
                    "model": self.model,
                    "model_version": self.model_version,
                    "timestamp": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
                    "features": {k: _round(lists[k][i]) for k in names},
                    "prediction": scores[i],
                },
                int(labels[i]),
            )


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def write_reference(path: str | Path, n: int, *, model: str = "credit-risk", seed: int = 1) -> Path:
    """Write ``n`` stationary events as JSONL: a reference file for the demo and tests."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sim = Simulator(model=model, seed=seed, start_time=time.time() - n / 1000.0)
    with p.open("wb") as fh:
        for event, _ in sim.events(n):
            fh.write(orjson.dumps(event) + b"\n")
    return p


async def publish(
    bootstrap_servers: str,
    *,
    topic: str = "predictions",
    labels_topic: str | None = None,
    model: str = "credit-risk",
    events: int = 20_000,
    rate: float = 0.0,
    drift: DriftSpec | None = None,
    seed: int = 7,
    chunk: int = 500,
    on_progress: Any = None,
    producer_kwargs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Publish a stream to Kafka, keyed by model. ``rate`` events/s (0 = as fast as possible).

    Returns the wall-clock time at which the first drifted event was sent.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from monitor.errors import SourceError

    # As fast as possible, the stream is stamped 1000 events a second ending now, not from
    # now on: published in seconds, 3.6 million events stamped from now would run more than
    # an hour ahead of the monitor's clock, which rejects them (limits.max_timestamp_ahead_seconds).
    sim = Simulator(
        model=model,
        seed=seed,
        drift=drift or DriftSpec(),
        events_per_second=rate or 1000.0,
        start_time=None if rate > 0 else time.time() - events / 1000.0,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, linger_ms=5, acks="all", **(producer_kwargs or {})
    )
    try:
        await producer.start()
    except KafkaError as exc:  # a broker that cannot be reached: one line, not a traceback
        await producer.stop()
        raise SourceError(f"cannot connect to Kafka at {bootstrap_servers}: {exc}") from exc
    sent = 0
    t0 = time.monotonic()
    info: dict[str, float] = {}
    key = model.encode()
    try:
        while sent < events:
            n = min(chunk, events - sent)
            futures = []
            for i, (event, label) in enumerate(sim.events(n)):
                if drift and drift.kind != "none" and sent + i == drift.start:
                    info["drift_sent_at"] = time.time()
                futures.append(await producer.send(topic, orjson.dumps(event), key=key))
                if labels_topic:
                    lab = {"event_id": event["event_id"], "model": model, "label": label}
                    futures.append(await producer.send(labels_topic, orjson.dumps(lab), key=key))
            await asyncio.gather(*futures)
            sent += n
            if on_progress:
                on_progress(sent)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        await producer.stop()
    info["sent"] = float(sent)
    info["seconds"] = time.monotonic() - t0
    return info
