"""``monitor report``: a drift report from two files, as one self-contained HTML file.

The numbers come from :class:`monitor.drift_check.DriftCheck` (the service's
engine); the views are the web UI's (:mod:`monitor.ui.views`, the same templates
and script). The file opens offline: the chart library, our script and the
styles are inlined, and a Content-Security-Policy ``<meta>`` allows exactly those
inline blocks by their SHA-256 hashes (and no network at all), so a hostile
column or category name can still run nothing.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from monitor.errors import MonitorError
from monitor.ui import assets
from monitor.ui.render import environment, fmt
from monitor.version import __version__


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(data: dict[str, Any], *, title: str | None = None) -> str:
    """The report for :meth:`monitor.drift_check.DriftResult.to_dict` data."""
    charts = assets.available()
    css = assets.read("app.css") + ("\n" + assets.read("uPlot.min.css") if charts else "")
    scripts = ([assets.read("uPlot.iife.min.js")] if charts else []) + [assets.read("app.js")]
    csp = (
        "default-src 'none'; img-src data:; "
        f"style-src {_hash(css)}; script-src {' '.join(_hash(s) for s in scripts)}; "
        "base-uri 'none'; form-action 'none'"
    )
    for text in (css, *scripts):
        # Inlined as is (the hashes are of the exact text): it must not end its own element.
        if "</script" in text.lower() or "</style" in text.lower():
            raise MonitorError("a UI asset contains a closing tag; it cannot be inlined")
    index_of = {v["feature"]: i for i, v in enumerate(data["features"]) if v}
    return (
        environment()
        .get_template("report.html")
        .render(
            title=title or f"Drift report: {data['model']}",
            data=data,
            ui={"charts": charts},
            fmt=fmt,
            standalone=True,
            csp=csp,
            inline_css=css,
            inline_js=scripts,
            index_of=index_of,
            version=__version__,
        )
    )
