"""Drift detectors behind one protocol (see :mod:`monitor.detectors.base`).

One module per concern, imported from where it is defined (this package
re-exports nothing, so importing one detector loads no other):

* :mod:`~monitor.detectors.base`: the protocol, :class:`DetectorResult`, grading;
* :mod:`~monitor.detectors.config`: the ``drift:`` section of the configuration;
* :mod:`~monitor.detectors.factory`: the default panel per column and why
  (numbers in its docstring), detectors by config name;
* :mod:`~monitor.detectors.calibration`: ``threshold: auto``;
* :mod:`~monitor.detectors.fitting`: build, calibrate and fit one column's panel;
* the detectors: :mod:`~monitor.detectors.psi`, :mod:`~monitor.detectors.ks`,
  :mod:`~monitor.detectors.chi_square`, :mod:`~monitor.detectors.jensen_shannon`,
  :mod:`~monitor.detectors.wasserstein`, :mod:`~monitor.detectors.streaming`
  (ADWIN, Page-Hinkley over river).
"""
