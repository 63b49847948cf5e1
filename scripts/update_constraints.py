"""Write constraints.txt: the installed versions of the runtime dependencies' closure.

Run with the interpreter of the environment the tests passed in (``.venv/bin/python
scripts/update_constraints.py``); the Docker image installs with ``pip install -c
constraints.txt`` so that it runs the versions the suite ran. Extras and test tools are left
out; environment markers are evaluated for this interpreter (the image's Python is the same
minor version, see the Dockerfile).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> dict[str, str]:
    """name -> installed version, for the requirements and everything they require."""
    out: dict[str, str] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonical(req.name)
        if name in out:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"{req.name} is required but not installed")
        out[name] = dist.version
        todo.extend(Requirement(r) for r in dist.requires or [])
    return out


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = closure(project["dependencies"])
    lines = [
        "# Runtime dependencies of kafka-model-monitor and everything they require, pinned to the",
        "# versions the test suite ran with. The Docker image installs with `pip install -c` this",
        "# file. Regenerate: .venv/bin/python scripts/update_constraints.py",
        *(f"{name}=={version}" for name, version in sorted(pins.items())),
    ]
    (ROOT / "constraints.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
