"""Rule matching: which configured rule governs a signal (pure).

Severities are ordered ``ok < warning < critical``; globs are case-sensitive
shell patterns (:func:`fnmatch.fnmatchcase`) so ``fraud-*`` never matches
``Fraud-eu`` by accident of the platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from monitor.alerting.config import AlertRule
from monitor.signals import Signal, severity_rank


def max_severity(severities: Sequence[str]) -> str:
    """The highest of ``severities`` (``"ok"`` when empty)."""
    best = "ok"
    for s in severities:
        if severity_rank(s) > severity_rank(best):
            best = s
    return best


def glob_match(pattern: str, value: str | None) -> bool:
    """Case-sensitive glob; ``None`` values only match ``*``."""
    if value is None:
        return pattern == "*"
    return fnmatchcase(value, pattern)


def segment_match(pattern: str, segment: str | None) -> bool:
    """Whether a ``segment`` matcher accepts a signal's segment (:mod:`monitor.segments`).

    ``*`` (the default) accepts every signal, of the whole traffic or of a segment; ``""``
    only the whole traffic's; any other glob only segment signals whose label it matches
    (``region=north``, ``region=*``). A label escapes ``=``, ``,`` and ``\\`` inside values,
    not glob characters: match a literal ``*`` in a value as ``[*]``.

    >>> segment_match("*", None), segment_match("", None), segment_match("", "region=north")
    (True, True, False)
    >>> segment_match("region=n*", "region=north"), segment_match("region=north", None)
    (True, False)
    """
    if segment is None:
        return pattern in ("*", "")
    return bool(pattern) and fnmatchcase(segment, pattern)


def rule_for(rules: Sequence[AlertRule], signal: Signal) -> AlertRule | None:
    """The first rule matching ``signal``'s kind, model, subject and segment, or ``None``.

    >>> from monitor.alerting.config import AlertRule
    >>> s = Signal("m", "drift", "income", "warning", 0.3, 0.2)
    >>> rule_for([AlertRule(kinds=["performance"]), AlertRule(name="d")], s).name
    'd'
    """
    for rule in rules:
        if (
            signal.kind in rule.kinds
            and glob_match(rule.model, signal.model)
            and glob_match(rule.subject, signal.subject)
            and segment_match(rule.segment, signal.segment)
        ):
            return rule
    return None


def is_active(rule: AlertRule, signal: Signal) -> bool:
    """Whether ``signal`` counts as active under ``rule`` (at or above its minimum severity)."""
    return severity_rank(signal.severity) >= max(1, severity_rank(rule.min_severity))


__all__ = [
    "glob_match",
    "is_active",
    "max_severity",
    "rule_for",
    "segment_match",
    "severity_rank",
]
