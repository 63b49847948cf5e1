"""Drift detectors behind one protocol (see :mod:`monitor.detectors.base`)."""

from monitor.detectors.base import Detector, DetectorResult

__all__ = ["Detector", "DetectorResult"]
