"""Model performance from delayed labels, and estimated performance before labels arrive.

* :mod:`~monitor.performance.config`: the ``performance:`` section of a model;
* :mod:`~monitor.performance.normalize`: raw prediction/label values to task values;
* :mod:`~monitor.performance.label_join`: bounded join of labels to predictions;
* :mod:`~monitor.performance.realised`: realised metrics (scikit-learn definitions);
* :mod:`~monitor.performance.cbpe`: estimated metrics from calibrated scores;
* :mod:`~monitor.performance.tracker`: the per-model object the pipeline drives.

This package re-exports nothing: import each name from the module that defines it.
"""
