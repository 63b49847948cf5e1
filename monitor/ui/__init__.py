"""The built-in web UI: pages and their JSON API (:mod:`monitor.ui.web`), the pure
views they share with ``monitor report`` (:mod:`monitor.ui.views`) and the bounded
drift-score history (:mod:`monitor.ui.history`). Imports nothing itself: the
service imports the parts it mounts."""
