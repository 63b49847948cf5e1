"""The detection-quality benchmark runs on a tiny input and reports what it should."""

from __future__ import annotations

from pathlib import Path

from bench import write_section
from bench.detection_quality import run


def _rows(table: str) -> dict[str, list[str]]:
    out = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells
    return out


def test_quick_run_has_every_stream_and_detects_the_injected_changes() -> None:
    table, _ = run(quick=True, repeats=1)
    rows = _rows(table)
    assert set(rows) == {"stationary", "mean +0.5 sigma", "category share x2", "RBF abrupt"}
    assert rows["stationary"][3] == "n/a" and rows["stationary"][4] == "0 (0.00)"
    for name in ("mean +0.5 sigma", "category share x2", "RBF abrupt"):
        delay_median, _ = rows[name][2].split(" / ")
        assert rows[name][3] == "0", name  # nothing missed
        assert 0 < int(delay_median.replace(",", "")) <= 5_000, name
        assert rows[name][4].startswith("0 "), name  # no false alarm
        assert rows[name][5] != "- / -", name  # ADWIN alone ran and detected too


def test_write_section_replaces_only_its_own_markers(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# B\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n"
        "<!-- mine:start -->\nold\n<!-- mine:end -->\ntail\n"
    )
    write_section("mine", "new table", path)
    text = path.read_text()
    assert "keep me" in text and "tail" in text and "new table" in text and "old" not in text
    write_section("fresh", "appended", path)
    assert path.read_text().endswith("<!-- fresh:start -->\nappended\n<!-- fresh:end -->\n")


def test_a_shift_in_the_tenth_of_traffic_segment_is_named_within_two_evaluations() -> None:
    from bench.detection_quality import N_REF, run_segment_stream, segment_stream

    ref = segment_stream(N_REF, None, 0.0, 10_001)
    stream = segment_stream(9_000, 6_000, 2.0, 1)
    delay, named_first, false_alarms, _ = run_segment_stream(stream, ref.x, ref.cats)
    assert delay is not None and delay <= 2_000
    assert named_first and false_alarms == 0
