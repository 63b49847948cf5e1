"""When a model evaluates: its event clock, and the evaluation points of count and time windows.

A :class:`Cadence` splits each batch (by event time) into steps that end exactly at
evaluation points, so the same events produce the same evaluations whatever the
batching: with a count window, a point every ``window.step`` events; with a time
window, one at every ``window.step_seconds`` boundary of event time (a gap without
events skips its boundaries in one step). It also keeps the model's event clock,
which gives the window the times of events without their own. Pure: no I/O.

>>> import numpy as np
>>> from monitor.config import WindowConfig
>>> c = Cadence(WindowConfig(size=4, step=2))
>>> [tuple(s) for s in c.steps(np.zeros(3))], c.since_eval
([(0, 2, True, None), (2, 3, False, None)], 1)
>>> [tuple(s) for s in c.steps(np.zeros(2))]
[(0, 1, True, None), (1, 2, False, None)]
>>> t = Cadence(WindowConfig(type="time", seconds=60, step_seconds=10))
>>> [tuple(s) for s in t.steps(np.array([0.0, 5.0, 12.0, 47.0]))], t.next_eval_time
([(0, 2, True, -50.0), (2, 3, True, -40.0), (3, 4, False, None)], 50.0)
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

    ``since``: for a time window, the event time from which the window's rows count
    at that point (None with a count window: the whole window counts).
    """

    start: int
    end: int
    point: bool
    since: float | None


class Cadence:
    """Evaluation points and event clock of one model."""

    def __init__(self, window: WindowConfig) -> None:
        self.window = window
        self.since_eval = 0  # events since the last count-window point
        self.next_eval_time: float | None = None  # the next time-window boundary
        # The model's event clock: the newest event time seen, from events that carry one
        # (None until one does). See event_times.
        self.event_clock: float | None = None
        # Time windows: how many events in a row, up to the newest, carry one same time
        # (``frozen_at``). See frozen_time.
        self.same_time_events = 0
        self.frozen_at: float | None = None
        # Time windows: the newest event time of the last batch (not saved). See behind.
        self.newest_seen: float | None = None

    def restore(
        self, since_eval: int, next_eval_time: float | None, event_clock: float | None
    ) -> None:
        """Adopt saved counters; those of another window type or step are brought in range."""
        self.since_eval = max(0, min(since_eval, self.window.step - 1))
        self.next_eval_time = next_eval_time if self.window.type == "time" else None
        self.event_clock = event_clock

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
        """
        ts = np.asarray(events.timestamps, dtype=np.float64)
        rows = events.record_time_rows
        if not rows:
            newest = float(ts.max())
            if self.event_clock is None or newest > self.event_clock:
                self.event_clock = newest
            return ts
        own = np.ones(ts.size, dtype=bool)
        own[rows] = False
        if not own.any() and self.event_clock is None:
            return ts
        clock = np.where(own, ts, -math.inf)
        if self.event_clock is not None:
            clock[0] = max(clock[0], self.event_clock)
        elif own.any():  # before the model's first event time, the batch's is the nearest
            clock[0] = max(clock[0], ts[int(np.argmax(own))])
        clock = np.maximum.accumulate(clock)
        ts = np.where(own | (clock == -math.inf), ts, clock)
        if clock[-1] > -math.inf:
            self.event_clock = float(clock[-1])
        return ts

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
        is accepted) moved it there, as event time going back does (a producer reset):
        the events that follow are counted but the model does not evaluate until event
        time reaches the boundary, up to an hour, and nothing said why. Said (a WARNING,
        the status's ``event_time_behind``); the evaluations are as before, so a replay
        still decides as the first pass did.
        """
        w = self.window
        if w.type != "time" or self.next_eval_time is None or self.newest_seen is None:
            return None
        assert w.step_seconds is not None and w.seconds is not None
        if self.newest_seen < self.next_eval_time - w.step_seconds - w.seconds:
            return self.next_eval_time
        return None

    def steps(self, ts: np.ndarray) -> Iterator[Step]:
        """The batch (its event times ``ts``) cut at its evaluation points, in order.

        Consume each step before the next: the cadence advances as they are taken.
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
        if self.next_eval_time is None:
            self.next_eval_time = float(ts[0]) + w.step_seconds
        while pos < n:
            # Events up to the next boundary (event time); producers are roughly ordered.
            crossed = np.nonzero(ts[pos:] >= self.next_eval_time)[0]
            end = pos + int(crossed[0]) if crossed.size else n
            if not crossed.size:
                yield Step(pos, end, False, None)
                return
            yield Step(pos, end, True, self.next_eval_time - (w.seconds or 0.0))
            pos = end
            # Skip boundaries with no events (a gap in the stream) in one step.
            gap = max(0.0, float(ts[pos]) - self.next_eval_time) if pos < n else 0.0
            self.next_eval_time += w.step_seconds * (1 + math.floor(gap / w.step_seconds))
