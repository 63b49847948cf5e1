"""Static files of the UI: our own script and style, and the vendored chart library.

The chart library (uPlot, MIT) is not committed: ``scripts/fetch_ui_assets.sh``
(called by ``scripts/setup.sh`` and the Dockerfile) fetches it from the npm
registry into ``monitor/ui/vendor/`` (git-ignored), or into the folder named by
``MONITOR_UI_VENDOR``. Without it the service still starts; the pages show
their tables and say that charts are unavailable.
"""

from __future__ import annotations

import os
from pathlib import Path

UPLOT_VERSION = "1.6.32"
_HERE = Path(__file__).parent
_OWN = {
    "app.js": "text/javascript",
    "app.css": "text/css",
}
_VENDOR = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
}


def vendor_dir() -> Path:
    return Path(os.environ.get("MONITOR_UI_VENDOR") or _HERE / "vendor")


def available() -> bool:
    """Whether the chart library is installed (both of its files)."""
    d = vendor_dir()
    return all((d / name).is_file() for name in _VENDOR)


def find(name: str) -> tuple[Path, str] | None:
    """The file behind ``/ui/static/<name>`` and its content type; only listed names."""
    if name in _OWN:
        return _HERE / "static" / name, _OWN[name]
    if name in _VENDOR:
        path = vendor_dir() / name
        return (path, _VENDOR[name]) if path.is_file() else None
    return None


def read(name: str) -> str:
    """A static file's text (for the self-contained report); '' when absent."""
    found = find(name)
    if found is None:
        return ""
    return found[0].read_text(encoding="utf-8")
