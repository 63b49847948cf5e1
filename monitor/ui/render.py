"""The template environment the pages and the file report share (jinja2, autoescape on)."""

from __future__ import annotations

import math
import re
from typing import Any

#: What draws nothing or reorders the text after it: C0 and C1 controls, the soft hyphen,
#: the Arabic letter mark, the Mongolian vowel separator, zero-width characters and the
#: bidirectional marks, embeddings, overrides and isolates (U+200B-U+200F, U+202A-U+202E,
#: U+2066-U+2069), the line and paragraph separators, word joiners and invisible operators
#: (U+2060-U+206F), the byte-order mark, interlinear annotations and tag characters; and
#: lone surrogates, which no UTF-8 page can hold (a str from the Python API may carry one).
_INVISIBLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ud800-\udfff\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)


def visible(text: str) -> str:
    r"""``text`` with every invisible or reordering character shown as its escape.

    Model, feature and category names come from the wire: a right-to-left override made
    ``"bidi\u202eevil"`` read ``bidilive`` on every page, and ``"m\u2028x"`` read ``mx``,
    beside a real model of that name. Escaping markup is not enough for names an operator
    must tell apart, so the pages show them as they are.

    >>> visible("bidi\u202eevil"), visible("m\u2028x"), visible("ok · é"), visible("\U000e0041")
    ('bidi\\u202eevil', 'm\\u2028x', 'ok · é', '\\U000e0041')
    >>> visible("x\ud800"), visible("\U0001f600")
    ('x\\ud800', '\U0001f600')
    """
    return _INVISIBLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _finalize(value: Any) -> Any:
    """Every plain string a template prints (markup it made itself, ``Markup``, is not)."""
    return visible(value) if type(value) is str else value


def environment() -> Any:
    """A jinja2 environment over ``monitor/ui/templates`` that escapes every value and
    shows invisible and bidirectional control characters as escapes (:func:`visible`)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
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
