"""A time-window model's cadence does not follow one event stamped off the others.

A time window evaluates when event time crosses its next step boundary. One event stamped an
hour ahead (a producer whose clock runs fast: up to ``limits.max_timestamp_ahead_seconds``
is accepted) moved the event clock and the boundary an hour on, and the model did not
evaluate for an hour. Now an own time more than a window off the clock is held: its event
takes the clock's time and is counted (``Cadence.outliers``), until a run of held events
spanning a step confirms that the stream moved on (a pause, a clock reset): then the cadence
follows. Pure: the model's core, without a broker.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from monitor import cadence
from monitor.config import parse_config
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.state_format import ModelState, decode, encode

T0 = 1_790_000_000.0
WINDOW = {"type": "time", "seconds": 60, "step_seconds": 10, "size": 5000}
HOUR = 3600.0


def _monitor() -> ModelMonitor:
    cfg = parse_config({"models": [{"name": "m", "window": WINDOW}]})
    rng = np.random.default_rng(0)
    ref = build_profile("m", [({"x": float(v)}, 0.5) for v in rng.normal(size=500)])
    return ModelMonitor(cfg.model("m"), cfg.limits, ref)  # type: ignore[arg-type]


def _events(times: list[float], lo: int = 0, untimed: frozenset[int] = frozenset()) -> ModelEvents:
    """Events ``lo:lo + len(times)`` of one stream (``untimed``: those without own time)."""
    rng = np.random.default_rng(7)
    xs = rng.normal(size=lo + len(times))[lo:]
    n = len(times)
    return ModelEvents(
        "m",
        [f"e{lo + i}" for i in range(n)],
        list(times),
        [None] * n,
        [{"x": float(x)} for x in xs],
        [0.5] * n,
        record_time_rows=[i for i in range(n) if lo + i in untimed],
    )


def _run(times: list[float], sizes: list[int], untimed: frozenset[int] = frozenset()) -> tuple:
    mm = _monitor()
    out, pos = [], 0
    for n in sizes:
        out.extend(mm.ingest(_events(times[pos : pos + n], pos, untimed)))
        pos += n
    assert pos == len(times)
    return mm, out


def _when(evs: list) -> list[tuple[float, int, int]]:
    return [(e.context.evaluated_at, e.context.window_events, e.context.events_total) for e in evs]


def test_one_event_stamped_an_hour_ahead_does_not_stop_the_evaluations() -> None:
    steady = [T0 + i for i in range(1200)]
    times = list(steady)
    times[150] = T0 + 150 + HOUR
    mm, got = _run(times, [100] * 12)
    _, expect = _run(steady, [100] * 12)
    # Every step evaluated, as without the bad time; the event counted in the window at the
    # clock's time (T0 + 149, so in the step before T0 + 150), not an hour on.
    assert len(got) == len(expect) == 119
    assert [e.context.evaluated_at for e in got] == [e.context.evaluated_at for e in expect]
    assert got[14].context.window_events == expect[14].context.window_events + 1
    assert got[14].context.evaluated_at == T0 + 150 - 1
    assert _when(got[21:]) == _when(expect[21:])  # once it left the window
    assert mm.cadence.outliers == {"ahead": 1, "behind": 0}
    assert mm.cadence.event_clock == T0 + 1199 and mm.cadence.held is None
    assert mm.export_state().event_time_outliers == {"ahead": 1}


def test_one_event_stamped_an_hour_back_is_counted_in_its_window() -> None:
    steady = [T0 + i for i in range(1200)]
    times = list(steady)
    times[150] = T0 + 150 - HOUR  # before: left out of every window, silently
    mm, got = _run(times, [100] * 12)
    _, expect = _run(steady, [100] * 12)
    assert [e.context.evaluated_at for e in got] == [e.context.evaluated_at for e in expect]
    # In the window at the clock's time (T0 + 149), as an event without a time would be.
    assert got[14].context.window_events == expect[14].context.window_events + 1
    assert _when(got[21:]) == _when(expect[21:])
    assert mm.cadence.outliers == {"ahead": 0, "behind": 1}


def _jump() -> list[float]:
    """A stream of one event a second that pauses an hour after 600 events, with one event
    stamped an hour ahead before the pause and one an hour back after it."""
    times = [T0 + i for i in range(600)] + [T0 + HOUR + i for i in range(600, 1200)]
    times[100] += HOUR
    times[900] -= HOUR
    return times


def test_a_real_jump_is_followed_once_a_step_of_events_confirms_it() -> None:
    mm, got = _run(_jump(), [1200])
    after = [e for e in got if e.context.evaluated_at >= T0 + HOUR]
    # The 10 events of the first step after the pause are held (the clock's time, in the
    # step before it) until their times span a step; the next (T0 + HOUR + 610) adopts the
    # jump, and every step evaluates again from the boundary after it.
    assert [e.context.evaluated_at for e in after] == [T0 + HOUR + 619 + 10 * k for k in range(58)]
    assert got[len(got) - len(after) - 1].context.window_events == 60 + 10
    # Full windows of 60; the event stamped back counts at the clock's time (T0 + HOUR +
    # 899, not 900): one more in the window that ends there, one less in the one after.
    sizes = [e.context.window_events for e in after[5:]]
    assert sizes.count(61) == sizes.count(59) == 1 and sizes.count(60) == len(sizes) - 2
    assert mm.cadence.outliers == {"ahead": 1 + 10, "behind": 1}


def test_every_producer_stamping_later_is_followed() -> None:
    """No pause: from one event on, every event carries a time two hours later."""
    times = [T0 + i for i in range(600)] + [T0 + 2 * HOUR + i for i in range(600, 1200)]
    mm, got = _run(times, [1200])
    assert got[-1].context.evaluated_at == T0 + 2 * HOUR + 1189
    assert sum(e.context.evaluated_at > T0 + 2 * HOUR for e in got) == 58
    assert mm.cadence.outliers == {"ahead": 10, "behind": 0}


def test_a_jump_back_is_followed_and_the_window_holds_only_the_new_times() -> None:
    """A producer reset (or a replay of older data into a running model): every event from
    one on carries a time an hour earlier. The boundary restarts after it; the window's
    rows of before the jump (later times) are not in the new windows."""
    times = [T0 + i for i in range(600)] + [T0 - HOUR + i for i in range(600, 1200)]
    mm, got = _run(times, [1200])
    back = [e for e in got if e.context.evaluated_at < T0]
    assert len(back) == 58
    assert all(e.context.window_start >= T0 - HOUR + 600 for e in back)
    assert all(e.context.window_end < T0 for e in back)
    assert mm.cadence.behind() is None
    assert mm.cadence.outliers == {"ahead": 0, "behind": 10}


def test_the_evaluations_do_not_depend_on_batching() -> None:
    times = _jump()
    untimed = frozenset(range(95, 1200, 50))  # some events without a time of their own
    one = _when(_run(times, [1200], untimed)[1])
    assert len(one) > 100
    for sizes in ([1] * 200 + [1000], [101, 1, 499, 7, 3, 589], [605, 2, 3, 590]):
        mm, evs = _run(times, sizes, untimed)
        assert _when(evs) == one, sizes
        assert mm.cadence.outliers == {"ahead": 11, "behind": 1}


def test_a_restart_in_the_middle_of_a_held_jump_decides_as_the_first_pass() -> None:
    times = _jump()
    _, expect = _run(times, [1200])
    mm = _monitor()
    first = mm.ingest(_events(times[:605], 0))
    state = decode(encode(mm.export_state()))
    restored, notes = ModelMonitor.restore(mm.settings, mm.limits, state, mm._base_reference)
    assert notes == []
    rest = restored.ingest(_events(times[605:], 605))
    assert _when(first + rest) == _when(expect)
    assert mm.cadence.held is not None and mm.cadence.held.events == 5  # 600..604 held
    assert state.held_jump is not None and state.held_jump.events == 5
    assert restored.cadence.outliers == {"ahead": 11, "behind": 1}


def test_a_state_without_the_held_run_restores_and_an_older_release_reads_a_new_one() -> None:
    """The held run and counters are optional fields (format version unchanged): a state
    written before them restores with none held and none counted; a release before them
    (its ``ModelState`` without the fields) decodes a state with them, the rest intact."""
    mm = _monitor()
    mm.ingest(_events(_jump()[:605], 0))
    new = mm.export_state()
    assert new.held_jump is not None and new.event_time_outliers == {"ahead": 6}

    def field(f: msgspec.structs.FieldInfo) -> tuple:
        if f.default is not msgspec.NODEFAULT:
            return (f.name, f.type, f.default)
        if f.default_factory is not msgspec.NODEFAULT:
            return (f.name, f.type, msgspec.field(default_factory=f.default_factory))
        return (f.name, f.type)

    added = {"held_jump", "event_time_outliers"}
    before = msgspec.defstruct(
        "ModelState",
        [field(f) for f in msgspec.structs.fields(ModelState) if f.name not in added],
        kw_only=True,
    )
    old = msgspec.msgpack.decode(msgspec.msgpack.encode(new), type=before)
    assert (old.events_total, old.event_clock, old.next_eval_time) == (
        new.events_total,
        new.event_clock,
        new.next_eval_time,
    )
    # That release's checkpoint, read by this one: nothing held, nothing counted.
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=ModelState)
    assert state.held_jump is None and state.event_time_outliers == {}
    restored, notes = ModelMonitor.restore(mm.settings, mm.limits, state, mm._base_reference)
    assert notes == []
    assert restored.cadence.held is None
    assert restored.cadence.outliers == {"ahead": 0, "behind": 0}
    assert restored.cadence.event_clock == mm.cadence.event_clock


def test_the_vectorised_judgement_is_the_event_by_event_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random streams (jitter, lone outliers both ways, bursts, jumps both ways, events
    without a time), cut into random batches: the same evaluations and counts as one batch,
    and as the rule taken event by event (no vectorised stretch)."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 1500
        times = T0 + np.arange(n) + rng.uniform(-3, 3, n)
        for at in rng.choice(n, 3, replace=False):  # jumps: the rest of the stream moves
            times[at:] += rng.choice([-1, 1]) * rng.uniform(100, 2 * HOUR)
        lone = rng.choice(n, 25, replace=False)
        times[lone] += rng.choice([-1, 1], 25) * rng.uniform(20, HOUR, 25)
        burst = int(rng.integers(0, n - 20))
        times[burst : burst + 20] = times[burst] + HOUR + np.arange(20) * 0.01
        untimed = frozenset(int(i) for i in rng.choice(n, 40, replace=False))
        stream = [float(t) for t in times]
        mm, evs = _run(stream, [n], untimed)
        expect = (_when(evs), dict(mm.cadence.outliers))
        cuts = np.sort(rng.choice(np.arange(1, n), 12, replace=False))
        sizes = [int(s) for s in np.diff(np.concatenate([[0], cuts, [n]]))]
        mm, evs = _run(stream, sizes, untimed)
        assert (_when(evs), mm.cadence.outliers) == expect
        with monkeypatch.context() as m:
            m.setattr(cadence, "_MAX_STRETCHES", 0)
            mm, evs = _run(stream, sizes, untimed)
        assert (_when(evs), mm.cadence.outliers) == expect
        assert sum(expect[1].values()) >= 20 and len(expect[0]) > 50
