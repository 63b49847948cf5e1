"""river's private ADWIN internals are used in one adapter, on checked releases only.

If the first test fails, river was upgraded past the releases
:mod:`monitor.detectors.river_private` was checked against: run the second test with
the new release (it forces both paths), and if it passes add the release to
``CHECKED`` and move the bound in ``pyproject.toml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import river
from packaging.requirements import Requirement
from river import drift as river_drift

from monitor.detectors import river_private


def test_installed_river_is_a_checked_release() -> None:
    assert river_private.RIVER_RELEASE in river_private.CHECKED, (
        f"river {river.__version__} is not a release monitor.detectors.river_private was checked "
        f"against ({sorted(river_private.CHECKED)}): ADWIN runs on river's public API, more "
        "slowly. Check the private path with test_fast_and_public_paths_agree and update CHECKED."
    )
    assert river_private.fast()


def test_the_dependency_is_bounded_to_the_checked_releases() -> None:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    (spec,) = [
        Requirement(r).specifier
        for r in pyproject["project"]["dependencies"]
        if Requirement(r).name == "river"
    ]
    newest = max(river_private.CHECKED)
    assert f"{newest[0]}.{newest[1]}.9" in spec
    assert f"{newest[0]}.{newest[1] + 1}.0" not in spec  # no unchecked release installs


@pytest.mark.parametrize("seed", range(3))
def test_fast_and_public_paths_agree(seed: int) -> None:
    # The same stream (it moves up, then back, then by a smaller step), in calls of
    # uneven sizes, through both paths: the same changes, seen with the same kept window.
    rng = np.random.default_rng(seed)
    stream = rng.normal(size=12_000)
    stream[3_000:6_000] += 2.0
    stream[9_000:] += 0.7
    cuts = np.sort(rng.choice(np.arange(1, stream.size), size=40, replace=False))
    seen = {}
    for fast in (True, False):
        det = river_drift.ADWIN(delta=0.002, clock=8)
        found, pos = [], 0
        for piece in np.split(stream, cuts):
            for i in river_private.changes(det, piece.tolist(), fast=fast):
                found.append((pos + i, det.width, det.estimation))
            pos += piece.size
        seen[fast] = (found, det.width, det.estimation, det.drift_detected)
    assert len(seen[True][0]) >= 3
    assert seen[True] == seen[False]


def test_the_public_path_is_rivers_own_update() -> None:
    stream = np.random.default_rng(9).normal(size=3_000)
    stream[1_500:] += 1.5
    oracle = river_drift.ADWIN()
    expected = []
    for i, value in enumerate(stream.tolist()):
        oracle.update(value)
        if oracle.drift_detected:
            expected.append(i)
    assert expected
    assert list(river_private.changes(river_drift.ADWIN(), stream.tolist(), fast=True)) == expected


def test_no_other_module_uses_rivers_private_names() -> None:
    package = Path(river_private.__file__).parent.parent
    # river's names on a river object; our own classes may have a ``self._reset()``.
    private = re.compile(r"(?<!self)\.(_helper|_drift_detected|_reset\(|_x_mean|_sum_increase)")
    users = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if private.search(path.read_text(encoding="utf-8"))
    )
    assert users == ["detectors/river_private.py"]
