"""The report benchmark's harness on tiny files (our side only; no timing assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ is not an installed package (and pytest ignores it): import it from the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import report_speed


def test_report_speed_harness_on_tiny_files(tmp_path: Path) -> None:
    ref, cur = report_speed.write_files(tmp_path, 2000, 500, 2, 1)
    assert ref.read_text().splitlines()[0] == "f00,f01,c0,prediction"
    res = report_speed.run_one(sys.executable, report_speed._OURS, ref, cur, tmp_path / "r.html")
    assert res["drifting"] == ["c0", "f00"] and res["html_bytes"] > 0
    result = {
        "workload": {
            "reference_rows": 300,
            "current_rows": 100,
            "numeric_features": 2,
            "categorical_features": 1,
            "reference_csv_bytes": 1,
            "current_csv_bytes": 1,
        },
        "ours": report_speed.summarize([res]),
        "evidently": {"skipped": "not here"},
        "machine": report_speed.machine(),
        "command": "x",
        "date": "d",
    }
    assert "skipped: not here" in report_speed.table(result)
