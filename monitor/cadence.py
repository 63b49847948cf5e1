"""When a model evaluates: its event clock, and the evaluation points of count and time windows.

A :class:`Cadence` splits each batch (by event time) into steps that end exactly at
evaluation points, so the same events produce the same evaluations whatever the
batching: with a count window, a point every ``window.step`` events; with a time
window, one at every ``window.step_seconds`` boundary of event time (a gap without
events skips its boundaries in one step). It also keeps the model's event clock,
which gives the window the times of events without their own, and, with a time window,
holds an event time far off that clock until a step of events confirms it
(:meth:`Cadence._judge`): one producer's bad clock does not move the cadence. Pure: no I/O.

>>> import numpy as np
>>> from monitor.config import WindowConfig
>>> c = Cadence(WindowConfig(size=4, step=2))
>>> [tuple(s) for s in c.steps(np.zeros(3))], c.since_eval
([(0, 2, True, None, None), (2, 3, False, None, None)], 1)
>>> [tuple(s) for s in c.steps(np.zeros(2))]
[(0, 1, True, None, None), (1, 2, False, None, None)]
>>> t = Cadence(WindowConfig(type="time", seconds=60, step_seconds=10))
>>> [tuple(s) for s in t.steps(np.array([0.0, 5.0, 12.0, 47.0]))], t.next_eval_time
([(0, 2, True, -50.0, 10.0), (2, 3, True, -40.0, 20.0), (3, 4, False, None, None)], 50.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from monitor.config import WindowConfig
from monitor.events import ModelEvents


class Step(NamedTuple):
    """Rows ``start:end`` of a batch, and whether an evaluation point follows them.

    ``since``, ``until``: for a time window, the event times from which and before which
    the window's rows count at that point (None with a count window: the whole window
    counts). ``until`` is the boundary itself: every row appended before it is earlier,
    except after a jump back (:meth:`Cadence.steps`), when the rows of before the jump
    are later and must not count.
    """

    start: int
    end: int
    point: bool
    since: float | None
    until: float | None = None


class HeldRun(NamedTuple):
    """A run of consecutive events whose own times are more than a window off the event
    clock, all on one side of it (``ahead``): held until they span a step (see
    :meth:`Cadence.event_times`). ``lo``/``hi``: the run's oldest and newest own time."""

    ahead: bool
    events: int
    lo: float
    hi: float


#: Vectorised stretches per batch before the rest of it is judged event by event: each
#: stretch scans the rest of the batch, so a producer whose every few events are off
#: (one host's clock among several) would make the scan quadratic.
_MAX_STRETCHES = 8


class Cadence:
    """Evaluation points and event clock of one model."""

    def __init__(self, window: WindowConfig) -> None:
        self.window = window
        self.since_eval = 0  # events since the last count-window point
        self.next_eval_time: float | None = None  # the next time-window boundary
        # The model's event clock: the newest credible event time seen, from events that
        # carry one (None until one does). See event_times.
        self.event_clock: float | None = None
        # Time windows: the run of events held off the clock (a jump not yet confirmed),
        # and the events held so far by side ("ahead", "behind"). See event_times.
        self.held: HeldRun | None = None
        self.outliers: dict[str, int] = {"ahead": 0, "behind": 0}
        # Time windows: positions of the last batch where a jump back was confirmed (the
        # next boundary restarts there; not saved: steps() takes them at once).
        self._restarts: list[int] = []
        # Time windows: how many events in a row, up to the newest, carry one same time
        # (``frozen_at``). See frozen_time.
        self.same_time_events = 0
        self.frozen_at: float | None = None
        # Time windows: the newest event time of the last batch (not saved). See behind.
        self.newest_seen: float | None = None

    def restore(
        self,
        since_eval: int,
        next_eval_time: float | None,
        event_clock: float | None,
        held: HeldRun | None = None,
        outliers: dict[str, int] | None = None,
    ) -> None:
        """Adopt saved counters; those of another window type or step are brought in range."""
        self.since_eval = max(0, min(since_eval, self.window.step - 1))
        self.next_eval_time = next_eval_time if self.window.type == "time" else None
        self.event_clock = event_clock
        timed = self.window.type == "time" and event_clock is not None
        self.held = held if timed and held is not None and held.events > 0 else None
        self.outliers = {k: max(0, int((outliers or {}).get(k, 0))) for k in ("ahead", "behind")}

    def forget_future(self, latest: float) -> bool:
        """Drop an event clock or time-window boundary beyond ``latest``; True if one was.

        Why: before event times were held to the monitor's clock
        (:class:`monitor.events.FutureBound`), one event stamped far ahead moved both
        there, and a checkpoint kept them: no later event crossed the boundary, so the
        model never evaluated again. Dropped, the next batch restarts both as a new
        model's would (the boundary one step after its first event). A boundary counts
        as beyond when the step it closes starts beyond ``latest``.
        """
        step = self.window.step_seconds or 0.0
        stuck = (self.event_clock is not None and self.event_clock > latest) or (
            self.next_eval_time is not None and self.next_eval_time - step > latest
        )
        if stuck:
            self.event_clock = None
            self.next_eval_time = None
            self.held = None  # held against that clock
        return stuck

    def reset(self) -> None:
        """Start counting afresh (a new reference: a new window); the event clock stays."""
        self.since_eval = 0
        self.next_eval_time = None

    def event_times(self, events: ModelEvents) -> np.ndarray:
        """The batch's event times for the window, advancing the model's event clock.

        The window's newest time is every evaluation's ``evaluated_at`` and
        ``window_end``, so the alert policy's ``now``. An event without a timestamp
        has its Kafka record time (``events.record_time_rows``), which is wall-clock
        time: mixed with events in their own time (a replay, a backfill, a
        producer's clock), it moved the window's end to the wall clock for as long
        as it stayed in the window, where a repeat interval "elapsed" and an
        incident started in the wrong epoch. So such an event takes the model's
        event clock instead, the newest time of an event that *carries* one, as of
        its position in the stream (so the result does not depend on batching), and
        never moves that clock. Before the model's first event time, such an event
        takes the first event time of its batch; in a batch without any, while the
        model has never seen one, the record time stands in: there is no other clock.

        With a time window, an own time more than a window (``window.seconds``) off the
        clock, ahead or behind, is *held* (:meth:`_judge`): it moves neither the clock nor
        the evaluation boundary, and its event takes the clock's time, as one without a
        time does (counted in the window, and in ``outliers``).
        """
        ts = np.asarray(events.timestamps, dtype=np.float64)
        rows = events.record_time_rows
        self._restarts = []
        timed = self.window.type == "time"
        if not rows:
            if timed:
                return self._judge(ts)[0]
            newest = float(ts.max())
            if self.event_clock is None or newest > self.event_clock:
                self.event_clock = newest
            return ts
        own = np.ones(ts.size, dtype=bool)
        own[rows] = False
        if not own.any() and self.event_clock is None:
            return ts
        at = np.flatnonzero(own)
        before = self.event_clock if self.event_clock is not None else float(ts[at[0]])
        if timed and at.size:
            times, after = self._judge(ts[at])
            self._restarts = [int(at[i]) for i in self._restarts]
        else:
            times = ts[at]
            after = np.maximum.accumulate(np.maximum(times, before)) if at.size else times
            if at.size:
                self.event_clock = float(after[-1])
        # Each event without a time takes the clock after the last own time before it.
        last = np.maximum.accumulate(np.where(own, np.arange(ts.size), -1))
        clock = np.full(ts.size, before)
        clock[own] = after
        clock = np.where(last >= 0, clock[np.maximum(last, 0)], before)
        out = clock
        out[own] = times
        return out

    def _judge(self, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The window's times of events carrying ``own`` times, and the clock after each.

        Why: one event stamped ahead (a producer whose clock runs an hour fast; up to
        ``limits.max_timestamp_ahead_seconds`` is accepted) moved the clock and the next
        boundary an hour on: the model did not evaluate until event time caught up. The
        rule, per event in stream order (so batching changes nothing):

        * within a window (``window.seconds``) of the clock: credible; the clock is the
          newest credible time. Within a window, a time moved the boundary as before:
          the next evaluation's window still holds every event since the last one.
        * further off, ahead or behind: *held*. Its event takes the clock's time (in the
          window and its totals, as an event without a time) and is counted in
          ``outliers``; clock and boundary stay.
        * a run of held events on one side of the clock, with no credible event between
          them, whose own times span a step (``window.step_seconds``), is a jump: the
          stream moved on (a pause, a producer clock reset, a replay). It is adopted
          at the event that completes the span: the clock becomes the run's newest time,
          and that event keeps its own (ahead: it crosses the boundary, gaps are
          skipped; behind: the next boundary restarts one step after it, see
          :meth:`steps`). A step of held events at most goes with the time before the
          jump, and no evaluation is missed; a burst from one producer with a wrong
          clock (its records come in batches spanning milliseconds) never spans a step,
          unless it alone sends for a whole step: then it is the stream.

        Vectorised in stretches of credible events; event by event only from an odd one
        until its run ends (at most :data:`_MAX_STRETCHES` stretches, then the rest).
        """
        tol = self.window.seconds or 0.0
        span = self.window.step_seconds or 0.0
        m = own.size
        times = own  # copied before the first held event changes it
        after = np.empty(m)
        pos, stretches = 0, 0
        while pos < m:
            if self.held is None and stretches < _MAX_STRETCHES:
                stretches += 1
                rest = own[pos:]
                start = float(rest[0]) if self.event_clock is None else self.event_clock
                clock = np.maximum.accumulate(np.maximum(rest, start))
                # Each time against the clock before it (the start, then the clock after
                # the previous one).
                off = np.abs(rest[1:] - clock[:-1]) > tol
                if abs(float(rest[0]) - start) > tol:
                    end = pos
                else:
                    odd = np.flatnonzero(off)
                    end = pos + (int(odd[0]) + 1 if odd.size else rest.size)
                if end > pos:
                    after[pos:end] = clock[: end - pos]
                    self.event_clock = float(clock[end - pos - 1])
                pos = end
                if pos >= m:
                    break
            t, c = float(own[pos]), self.event_clock
            if c is None or abs(t - c) <= tol:
                self.event_clock = t if c is None else max(c, t)
                self.held = None
            else:
                ahead = t > c
                h = self.held
                if h is None or h.ahead != ahead:
                    h = HeldRun(ahead, 1, t, t)
                else:
                    h = HeldRun(ahead, h.events + 1, min(h.lo, t), max(h.hi, t))
                if h.hi - h.lo >= span:  # a jump, confirmed
                    self.event_clock = h.hi
                    self.held = None
                    if not ahead:
                        self._restarts.append(pos)
                else:
                    self.held = h
                    self.outliers["ahead" if ahead else "behind"] += 1
                    if times is own:
                        times = own.copy()
                    times[pos] = c
            after[pos] = self.event_clock
            pos += 1
        return times, after

    def _count_same_time(self, ts: np.ndarray) -> None:
        """Advance the run of events at one same time, ending at the batch's last event."""
        if not len(ts):
            return
        last = float(ts[-1])
        differ = np.flatnonzero(ts != last)
        run = len(ts) - 1 - int(differ[-1]) if differ.size else len(ts)
        if not differ.size and self.frozen_at == last:
            self.same_time_events += run
        else:
            self.same_time_events = run
        self.frozen_at = last

    def frozen_time(self) -> float | None:
        """The one time a time window's last ``window.size`` events or more all carry, or None.

        Why: a time window evaluates when event time crosses its next step boundary. A
        producer that stamps every event with one time (a constant, a build time, a clock
        that is never set: epoch 0 is refused at decode, other constants are not) never
        crosses one, so the model never evaluated and nothing said why. A full window of
        events at one instant is no stream of times: said (a WARNING, the status's
        ``event_time_frozen``), the events still counted as before.
        """
        if self.window.type != "time" or self.same_time_events < max(2, self.window.size):
            return None
        return self.frozen_at

    def behind(self) -> float | None:
        """The next step boundary of a time window whose newest events are more than a
        window (``window.seconds``) before the step it closes, or None.

        Why: the boundary moves with event time, and skips a gap in one step. One event
        stamped ahead (a producer's clock; up to ``limits.max_timestamp_ahead_seconds``
        is accepted) moved it there: the events that follow are counted but the model
        does not evaluate until event time reaches the boundary, up to an hour, and
        nothing said why. Own times that far off are held now (:meth:`_judge`); record
        times (events without a timestamp, in a model that never had one) are not, nor
        a held run adopted on a wrong time. Said (a WARNING, the status's
        ``event_time_behind``); the evaluations are as they are, so a replay still
        decides as the first pass did.
        """
        w = self.window
        if w.type != "time" or self.next_eval_time is None or self.newest_seen is None:
            return None
        assert w.step_seconds is not None and w.seconds is not None
        if self.newest_seen < self.next_eval_time - w.step_seconds - w.seconds:
            return self.next_eval_time
        return None

    def steps(self, ts: np.ndarray, offset: int = 0) -> Iterator[Step]:
        """The batch (its event times ``ts``) cut at its evaluation points, in order.

        ``ts`` is the batch of :meth:`event_times` from its row ``offset`` on (the rows
        before went to build the reference). Consume each step before the next: the
        cadence advances as they are taken.
        """
        w = self.window
        pos, n = 0, len(ts)
        if w.type == "count":
            step = w.step
            while pos < n:
                take = min(n - pos, step - self.since_eval)
                self.since_eval += take
                point = self.since_eval >= step
                if point:
                    self.since_eval = 0
                yield Step(pos, pos + take, point, None)
                pos += take
            return
        assert w.step_seconds is not None
        self._count_same_time(ts)
        if len(ts):
            self.newest_seen = float(ts.max())
        # A confirmed jump back (see _judge): the next boundary restarts one step after it.
        restarts = [p - offset for p in self._restarts if offset <= p < offset + n]
        self._restarts = []
        if self.next_eval_time is None and n:
            self.next_eval_time = float(ts[0]) + w.step_seconds
        for end in (*restarts, n):
            if end > pos:
                yield from self._cut(ts, pos, end)
            pos = end
            if end < n:
                self.next_eval_time = float(ts[end]) + w.step_seconds

    def _cut(self, ts: np.ndarray, pos: int, n: int) -> Iterator[Step]:
        """Rows ``pos:n`` of a time window's batch cut at the boundaries they cross."""
        w = self.window
        assert w.step_seconds is not None and self.next_eval_time is not None
        while pos < n:
            # Events up to the next boundary (event time); producers are roughly ordered.
            crossed = np.nonzero(ts[pos:n] >= self.next_eval_time)[0]
            end = pos + int(crossed[0]) if crossed.size else n
            if not crossed.size:
                yield Step(pos, end, False, None)
                return
            b = self.next_eval_time
            yield Step(pos, end, True, b - (w.seconds or 0.0), b)
            pos = end
            # Skip boundaries with no events (a gap in the stream) in one step.
            gap = max(0.0, float(ts[pos]) - self.next_eval_time) if pos < n else 0.0
            self.next_eval_time += w.step_seconds * (1 + math.floor(gap / w.step_seconds))
