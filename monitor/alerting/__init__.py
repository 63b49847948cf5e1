"""Alerting: rules, grouping, dedup, silences, receivers, durable delivery.

This package re-exports nothing: import each name from the module that defines
it, so that importing the pure policy loads no I/O library (a contract in
``pyproject.toml`` checks it).

* the pure core: :mod:`~monitor.alerting.policy` (plus ``rules``, ``routing``,
  ``silences``, ``retrain_policy``, ``backoff``, ``config``, ``notification``);
  the signals it reads are :mod:`monitor.signals`;
* the I/O edges: :mod:`~monitor.alerting.engine` (:class:`AlertService`, the
  facade the pipeline calls), ``outbox``, ``silence_store``, ``dispatcher``,
  ``alert_metrics`` and the receivers (``webhook``, ``slack``, ``pagerduty``,
  ``retrain`` over ``http``, built by ``receivers``). The silences HTTP API is
  at the HTTP edge: :mod:`monitor.silences_api`.
"""
