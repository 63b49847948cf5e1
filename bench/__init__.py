"""Benchmarks, run outside the test suite; each writes its own marked section of BENCHMARKS.md.

Several engineers' benchmarks share ``BENCHMARKS.md``; each owns the text between
its ``<!-- name:start -->`` / ``<!-- name:end -->`` markers and
:func:`write_section` replaces only that text, in one read-modify-write.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine_info() -> str:
    """One line naming what the figures were measured on."""
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def command_line() -> str:
    """The exact command that produced the figures, as a user would type it."""
    module = Path(sys.argv[0]).stem
    return " ".join([".venv/bin/python -m", f"bench.{module}", *sys.argv[1:]])


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the text between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->``.

    Creates the file, or appends the marker pair, when missing; text outside the
    markers is kept byte for byte.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}", encoding="utf-8")
