"""The `monitor` command lines and options quoted in README.md and docs/ exist.

An operator copies them from the runbook at night: a subcommand or a flag that is not
there (renamed, or never added) costs minutes when they matter. Every quoted
``monitor <subcommand> ...`` must name a subcommand, with options that subcommand accepts,
and every option quoted alone (```--json```) must be an option of some subcommand. The
options come from each subcommand's usage line (what argparse accepts), not from prose.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from monitor.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUBCOMMANDS = ("run", "check-config", "simulate", "report", "reference build", "validate")


def _usage(argv: list[str]) -> str:
    """The usage block argparse prints for ``argv + ["--help"]``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue().split("\n\n", 1)[0]


def _options() -> dict[str, set[str]]:
    top = set(re.findall(r"--[a-z][a-z-]*", _usage([])))
    return {
        sub: top | set(re.findall(r"--[a-z][a-z-]*", _usage(sub.split()))) for sub in SUBCOMMANDS
    }


def _quoted() -> list[tuple[str, str]]:
    """(where, text) of every inline code span and every line of a fenced block."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        fenced = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                found.append((where, line.strip().removeprefix("$ ")))
            else:
                found.extend((where, span) for span in re.findall(r"`([^`]+)`", line))
    return found


def test_every_quoted_monitor_command_and_option_exists() -> None:
    options = _options()
    everything = set().union(*options.values())
    wrong: list[str] = []
    for where, text in _quoted():
        if text.startswith("monitor "):
            words = text.split()
            sub = " ".join(words[1:3]) if words[1:2] == ["reference"] else words[1]
            if sub not in options:
                if re.fullmatch(r"[a-z][a-z-]*", sub):
                    wrong.append(f"{where}: no subcommand `monitor {sub}`")
                continue
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text):
                if flag not in options[sub]:
                    wrong.append(f"{where}: `monitor {sub}` has no option {flag}")
        elif re.fullmatch(r"--[a-z][a-z-]*(?:[ =].*)?", text):
            flag = re.match(r"--[a-z][a-z-]*", text)
            assert flag is not None
            if flag.group(0) not in everything:
                wrong.append(f"{where}: no `monitor` subcommand has the option {flag.group(0)}")
    assert wrong == []


def test_the_check_sees_the_options() -> None:
    """The usage lines are read as intended (else the test above would pass on nothing)."""
    options = _options()
    assert {"--config", "--model", "--json"} <= options["validate"]
    assert "--schema-out" in options["reference build"] and "--bootstrap" in options["simulate"]
    assert "--log-level" in options["run"] and "--grace" not in options["run"]
