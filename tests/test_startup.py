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

# `monitor check-config` on a config with a reference; `monitor run` refused at start (its
# port is taken); PSI and KS built, fitted and evaluated: none needs river.drift.
SCRIPT = """
import json, socket, sys
import numpy as np
from monitor.cli import main
from monitor.config import DriftConfig
from monitor.detectors.factory import build_detector

code = main(["check-config", sys.argv[1]])
with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with open(sys.argv[2], "w") as fh:
        fh.write(
            "kafka: {{bootstrap_servers: '127.0.0.1:1'}}\\n"
            "http: {{port: %d}}\\nmodels:\\n  - name: m\\n" % taken.getsockname()[1]
        )
    refused = main(["run", sys.argv[2]])
rng = np.random.default_rng(3)
for name in ("psi", "ks"):
    d = build_detector(name, "numeric", DriftConfig(), 2000)
    d.fit(rng.normal(size=2000))
    d.evaluate(rng.normal(loc=1.0, size=500))
loaded = sorted(m for m in "{heavy}".split(",") if m in sys.modules)
print(json.dumps({{"code": code, "refused": refused, "loaded": loaded}}))
"""


def test_commands_without_a_stream_detector_do_not_load_river_drift(tmp_path: Path) -> None:
    """A command that builds no stream detector loads neither river.drift nor, through it,
    scikit-learn and pandas (the first ADWIN built loads it: every ADWIN test and doctest).
    About 3 s: a fresh interpreter importing the service is what is measured."""
    ref = tmp_path / "ref.jsonl"
    event = {"model": "m", "features": {"income": 1.0}, "prediction": 0.5}
    ref.write_text("".join(json.dumps(event) + "\n" for _ in range(50)))
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  - name: m\n    reference:\n      path: ref.jsonl\n")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT.format(heavy=",".join(RIVER_DRIFT_ONLY)),
            str(config),
            str(tmp_path / "run.yaml"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["code"] == 0 and out["refused"] == 2, run.stderr
    assert "address already in use" in run.stderr
    assert out["loaded"] == [], f"loaded without a stream detector: {out['loaded']}"
