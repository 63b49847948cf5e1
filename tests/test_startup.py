"""What a start of the ``monitor`` command costs: ``river.drift`` (which loads
``river.drift.datasets``, scikit-learn and pandas: about 1.5 s and 150 MB) is imported
only where a river detector is built, or by ``monitor run``'s start, off the loop
(:func:`monitor.detectors.streaming.load_river`).

One fresh interpreter per test: only a new process shows what an import loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Loaded only by river.drift (river.drift.datasets): what no command may pay for nothing.
RIVER_DRIFT_ONLY = ("sklearn", "pandas", "river.drift")

# Everything `monitor run` imports before it reads the config, then `monitor check-config` on a
# config with a reference, then PSI and KS built, fitted and evaluated: none needs river.drift.
SCRIPT = """
import json, sys
import numpy as np
import monitor.service
from monitor.cli import main
from monitor.config import DriftConfig
from monitor.detectors.factory import build_detector

code = main(["check-config", sys.argv[1]])
rng = np.random.default_rng(3)
for name in ("psi", "ks"):
    d = build_detector(name, "numeric", DriftConfig(), 2000)
    d.fit(rng.normal(size=2000))
    d.evaluate(rng.normal(loc=1.0, size=500))
loaded = sorted(m for m in "{heavy}".split(",") if m in sys.modules)
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def test_check_config_and_window_detectors_do_not_load_river_drift(tmp_path: Path) -> None:
    """A command that builds no stream detector loads neither river.drift nor, through it,
    scikit-learn and pandas (the first ADWIN built loads it: every ADWIN test and doctest).
    About 3 s: a fresh interpreter importing the service is what is measured."""
    ref = tmp_path / "ref.jsonl"
    event = {"model": "m", "features": {"income": 1.0}, "prediction": 0.5}
    ref.write_text("".join(json.dumps(event) + "\n" for _ in range(50)))
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  - name: m\n    reference:\n      path: ref.jsonl\n")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=",".join(RIVER_DRIFT_ONLY)), str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["code"] == 0, run.stderr
    assert out["loaded"] == [], f"loaded without a stream detector: {out['loaded']}"
