"""Streaming production monitoring for ML models: Kafka in, drift and performance out.

The public Python API (:class:`DriftCheck`, :class:`DriftResult`) is loaded on
first use, so that ``import monitor`` (and ``monitor --help``) stays cheap:
nothing heavy (numpy, pandas) is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.version import __version__

__all__ = ["DriftCheck", "DriftResult", "__version__"]

if TYPE_CHECKING:
    from monitor.drift_check import DriftCheck, DriftResult


def __getattr__(name: str) -> Any:
    if name in ("DriftCheck", "DriftResult"):
        from monitor import drift_check

        return getattr(drift_check, name)
    raise AttributeError(f"module 'monitor' has no attribute {name!r}")
