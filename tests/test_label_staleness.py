"""Label staleness: the age of the newest joined label, and the ``labels_stale`` signal.

When a labelling pipeline breaks, the realised metrics freeze at their last value; on
main nothing said so. The age is measured in event time (the newest prediction's time
minus the newest joined label's), so these tests need no clock and no sleep: the times
are in the events. The end-to-end test through the broker and the alert path is in
tests/test_label_staleness_kafka.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.performance.config import PerformanceConfig
from monitor.performance.tracker import PerformanceTracker
from monitor.signals import Signal
from tests.checkpoint import through_format

HOUR = 3600.0


def _tracker(**kw: object) -> PerformanceTracker:
    args: dict[str, object] = {"task": "binary", "window_size": 10, "min_window_labels": 1}
    args.update(kw)
    return PerformanceTracker(PerformanceConfig(**args))  # type: ignore[arg-type]


def _predict(t: PerformanceTracker, ids: list[str], times: list[float], now: float) -> None:
    t.add_predictions(ids, [0.9] * len(ids), times, now=now)


def _stale(t: PerformanceTracker) -> list[Signal]:
    return [s for s in t.evaluate("m").signals if s.subject == "labels_stale"]


def test_age_grows_while_predictions_go_on_without_labels_and_resets_when_one_joins() -> None:
    t = _tracker()
    _predict(t, ["a", "b"], [1000.0, 1010.0], now=0.0)
    t.add_labels(["a"], [1], [1020.0], now=0.0)
    assert t.snapshot()["label_age_seconds"] == 0.0  # the label is newer than any prediction
    assert t.snapshot()["label_last_timestamp_seconds"] == 1020.0
    _predict(t, ["c"], [1020.0 + 2 * HOUR], now=0.0)
    assert t.snapshot()["label_age_seconds"] == 2 * HOUR
    t.add_labels(["c"], [1], [1030.0 + 2 * HOUR], now=0.0)
    assert t.snapshot()["label_age_seconds"] == 0.0


def test_before_any_label_the_age_counts_from_the_first_prediction() -> None:
    t = _tracker()
    assert "label_age_seconds" not in t.snapshot()  # nothing seen: unknown, not 0
    _predict(t, ["a"], [5000.0], now=0.0)
    _predict(t, ["b"], [5000.0 + HOUR], now=0.0)
    snap = t.snapshot()
    assert snap["label_age_seconds"] == HOUR
    assert "label_last_timestamp_seconds" not in snap


def test_an_old_straggler_in_the_first_batch_does_not_claim_a_year_without_labels() -> None:
    t = _tracker()
    _predict(t, ["old", "a"], [5000.0 - 365 * 24 * HOUR, 5000.0], now=0.0)
    _predict(t, ["b"], [5000.0 + 60.0], now=0.0)
    assert t.snapshot()["label_age_seconds"] == 60.0


def test_signal_warns_over_the_bound_and_is_ok_again_when_labels_flow() -> None:
    t = _tracker(labels_stale_after_seconds=HOUR)
    _predict(t, ["a"], [0.0 + 10], now=0.0)
    t.add_labels(["a"], [1], [20.0], now=0.0)
    [sig] = _stale(t)
    assert (sig.severity, sig.value, sig.threshold) == ("ok", 0.0, HOUR)
    _predict(t, ["b"], [20.0 + HOUR], now=0.0)  # exactly at the bound: not over it
    assert _stale(t)[0].severity == "ok"
    _predict(t, ["c"], [21.0 + HOUR], now=0.0)
    [sig] = _stale(t)
    assert (sig.severity, sig.value) == ("warning", HOUR + 1.0)
    assert sig.kind == "performance" and sig.details["label_last_timestamp_seconds"] == 20.0
    t.add_labels(["b", "c"], [1, 0], [22.0 + HOUR, 22.0 + HOUR], now=0.0)
    assert _stale(t)[0].severity == "ok"


def test_off_by_default_and_no_signal_before_the_age_is_known() -> None:
    t = _tracker()
    _predict(t, ["a"], [0.0], now=0.0)
    _predict(t, ["b"], [100 * 24 * HOUR], now=0.0)
    assert _stale(t) == []  # off: the age is exported, nothing pages
    t = _tracker(labels_stale_after_seconds=60.0)
    assert _stale(t) == []  # no prediction yet: no data, which must not resolve anything


def test_a_backlog_read_late_does_not_age_the_labels() -> None:
    """Hours of downtime, then a catch-up: predictions and labels of three hours ago are
    read now. Their event times are as close as they were live, so nothing pages (by the
    monitor's clock every label would be three hours old)."""
    t = _tracker(labels_stale_after_seconds=600.0)
    start = 1_700_000_000.0
    for k in range(18):  # ten minutes of traffic per batch, labelled a minute later
        at = start + k * 600.0
        ids = [f"e{k}-{i}" for i in range(5)]
        _predict(t, ids, [at + i for i in range(5)], now=start + 3 * HOUR)
        t.add_labels(ids, [1] * 5, [at + 60.0] * 5, now=start + 3 * HOUR + k)
        assert _stale(t)[0].severity == "ok"


def test_the_age_survives_a_checkpoint() -> None:
    t = _tracker(labels_stale_after_seconds=HOUR)
    _predict(t, ["a", "b"], [100.0, 200.0], now=0.0)
    t.add_labels(["a"], [1], [150.0], now=0.0)
    saved = through_format(performance=t.export_state()).performance
    assert saved is not None
    back = _tracker(labels_stale_after_seconds=HOUR)
    assert back.restore_state(saved) == []
    _predict(back, ["c"], [150.0 + 2 * HOUR], now=0.0)
    assert back.snapshot()["label_age_seconds"] == 2 * HOUR
    assert _stale(back)[0].severity == "warning"


def test_labels_without_a_time_leave_the_age_unchanged() -> None:
    t = _tracker()
    _predict(t, ["a"], [100.0], now=0.0)
    _predict(t, ["b"], [200.0], now=0.0)
    t.add_labels(["a", "b"], [1, 0], [np.nan, np.nan], now=0.0)
    assert t.snapshot()["label_age_seconds"] == 100.0  # as if no label: from the first


def test_a_label_stamped_before_its_prediction_is_as_new_as_the_prediction() -> None:
    """Labels that join, stamped with a time far before their predictions (a labelling job
    writing the case's opening date, a default date): the age was the prediction's time minus
    that stamp, years, and ``labels_stale`` paged while every label joined. A label is no
    older than the prediction it labels."""
    t = _tracker(labels_stale_after_seconds=HOUR)
    start = 1_790_000_000.0
    _predict(t, ["a", "b"], [start, start + 60.0], now=0.0)
    t.add_labels(["a", "b"], [1, 0], [start - 10 * 365 * 24 * HOUR] * 2, now=0.0)
    assert t.snapshot()["label_age_seconds"] == 0.0
    assert t.snapshot()["label_last_timestamp_seconds"] == start + 60.0
    assert _stale(t)[0].severity == "ok"


def test_config_refuses_a_stale_bound_when_labels_are_off() -> None:
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "labels_topic": None},
        "models": [
            {
                "name": "m",
                "reference": {"learn_first": 100},
                "performance": {"task": "binary", "labels_stale_after_seconds": 600},
            }
        ],
    }
    with pytest.raises(ConfigError, match="labels are off"):
        parse_config(raw)
    raw["kafka"]["labels_topic"] = "labels"  # type: ignore[index]
    assert parse_config(raw).model("m") is not None


@pytest.mark.parametrize("bad", [0, -1.0, "nan"])
def test_config_refuses_a_bound_that_is_not_positive(bad: object) -> None:
    with pytest.raises(Exception, match="labels_stale_after_seconds"):
        parse_config(
            {
                "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
                "models": [
                    {
                        "name": "m",
                        "reference": {"learn_first": 100},
                        "performance": {"task": "binary", "labels_stale_after_seconds": bad},
                    }
                ],
            }
        )


def test_a_checkpoint_from_before_the_new_settings_restores_without_a_change_note() -> None:
    """The committed v1 fixture has no labels_stale_after_seconds or mape_min_abs_label in
    its recorded settings: at their defaults they are no change (on the first version of
    this branch every restored model logged "performance: settings changed"); set, they are."""
    from tests import state_fixture as fx
    from tests.test_state_format import FIXTURE, _restore

    blob = FIXTURE.read_bytes()
    _, notes = _restore(fx.RAW_CONFIG, blob)
    assert not [n for n in notes if n.startswith("performance: settings")], notes
    model = {**fx.RAW_CONFIG["models"][0]}
    model["performance"] = {**model["performance"], "labels_stale_after_seconds": 60}
    _, notes = _restore({**fx.RAW_CONFIG, "models": [model]}, blob)
    assert [n for n in notes if n.startswith("performance: settings")], notes
