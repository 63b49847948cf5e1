"""The template environment the pages and the file report share (jinja2, autoescape on)."""

from __future__ import annotations

import math
from typing import Any


def environment() -> Any:
    """A jinja2 environment over ``monitor/ui/templates`` that escapes every value."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ``—`` for missing, ``digits`` significant digits otherwise.

    >>> fmt(None), fmt(3), fmt(0.123456), fmt(True)
    ('—', '3', '0.1235', 'yes')
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits}g}"
    return str(value)
