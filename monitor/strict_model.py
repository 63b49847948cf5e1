"""The base of every configuration model: unknown keys refused, no boolean (nor NaN) taken
as a number.

A configuration is written by hand, in YAML, by someone woken at night. Two of its
mistakes are silent in plain pydantic: a misspelt key (``segmnets:``) would be ignored,
and YAML reads ``yes``/``no``/``on``/``off`` as booleans, which pydantic takes as 1 and 0
(``repeat_interval_seconds: yes`` would re-notify every second, ``top_k: on`` track one
value, ``psi_threshold: no`` page on everything). Every configuration model, in
:mod:`monitor.config`, :mod:`monitor.alerting.config`, :mod:`monitor.detectors.config` and
:mod:`monitor.performance.config`, derives from :class:`StrictModel`, so both are errors
naming the key.
"""

from __future__ import annotations

import contextlib
import math
import unicodedata
from collections.abc import Iterable
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator


def _is_number(annotation: Any) -> bool:
    """``int``, ``float`` or either of them optional (``float | None``)."""
    if annotation in (int, float):
        return True
    args = [a for a in get_args(annotation) if a is not type(None)]
    return bool(args) and all(a in (int, float) for a in args)


def refuse_boolean_number(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """``value`` unless it is a boolean, NaN or infinity given to a number option of ``model``.

    For the models that cannot derive from :class:`StrictModel` (pydantic allows no
    before-validator on a union's discriminator field), to call from a validator of their
    number fields.
    """
    name = info.field_name
    if not name or not _is_number(model.model_fields[name].annotation):
        return value
    if isinstance(value, bool):
        raise ValueError(f"a number, not the boolean {str(value).lower()} (yes/no/on/off)")
    # NaN (``.nan``, or "nan" from a ${VARIABLE}) passes every bound unchecked (each
    # comparison is false) and then never compares true: a threshold or a constraint that
    # can never fire, silently.
    if (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and value.strip().lower().lstrip("+-") == "nan"
    ):
        raise ValueError("a number, not NaN")
    # Infinity passes every lower bound: an interval that never elapses (no periodic
    # checkpoint, a stall check that never fails, a shutdown that waits forever on a hung
    # receiver), a threshold that never fires, a constraint that bounds nothing. An option
    # meant to be unbounded is left out or null where it takes null, never infinite.
    if isinstance(value, str):  # from a ${VARIABLE}: "inf", "-Infinity", "1e999", ...
        with contextlib.suppress(ValueError):
            value_as_float = float(value.strip())
            if math.isinf(value_as_float):
                value = value_as_float
    if isinstance(value, float) and math.isinf(value):
        raise ValueError("a finite number, not infinity (leave the option out for its default)")
    return value


def drop_empty_options(model: type[BaseModel], data: Any) -> Any:
    """``data`` without the keys written with no value (``alerting:`` with everything under
    it commented out) where the option has a default and takes no null: such a key means
    the same as the key left out, not an error ("Input should be a valid dictionary").
    An option that takes null (``labels_topic: null`` disables labels) keeps it.

    For the models that cannot derive from :class:`StrictModel`, to call from a
    ``mode="before"`` model validator.
    """
    if not isinstance(data, dict):
        return data
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    fields.update(model.model_fields)
    return {
        key: value
        for key, value in data.items()
        if not (
            value is None
            and (field := fields.get(key)) is not None
            and not field.is_required()
            and type(None) not in get_args(field.annotation)
        )
    }


def unprintable_problem(what: str, name: str) -> str | None:
    """Why ``name`` cannot be shown as an identifier, or None.

    Model, feature, segment-column, version and receiver names are identifiers on
    dashboards, metric labels, pages and logs: a control, format (bidi override, zero-width)
    or separator character would make one read as another name there (``inc<U+202E>emo``
    shows as ``incomed``). ``str.isprintable`` refuses all of them (and lone surrogates)
    and keeps letters, digits, punctuation, symbols and the plain space.
    """
    if name.isprintable():
        return None
    bad = next(c for c in name if not c.isprintable())
    return (
        f"{what} {ascii(name)[:80]} holds the unprintable character U+{ord(bad):04X}: use "
        "letters, digits and punctuation"
    )


def refuse_unprintable(what: str, names: Iterable[str]) -> None:
    """:class:`ValueError` (:func:`unprintable_problem`'s words) for the first of ``names``
    that cannot be shown as an identifier: for a validator over a mapping's keys."""
    for name in names:
        if why := unprintable_problem(what, name):
            raise ValueError(why)


def name_key(name: str) -> str:
    """What a name looks like on a page: its NFC form without surrounding whitespace.

    Two names with one key (``caf\u00e9`` and ``cafe\u0301``, ``fraud`` and ``fraud ``)
    render the same on a dashboard yet are matched as different names on the wire.
    """
    return unicodedata.normalize("NFC", name).strip()


def near_duplicate_problems(what: str, names: Iterable[tuple[str, str]]) -> list[str]:
    """One problem per pair of ``(where, name)`` whose names differ but look identical
    (:func:`name_key`), naming both where they are written and how they differ."""
    first: dict[str, tuple[str, str]] = {}
    out = []
    for where, name in names:
        key = name_key(name)
        if key in first and first[key][1] != name:
            other_where, other = first[key]
            out.append(
                f"{what} {other!a} ({other_where}) and {name!a} ({where}) differ only "
                "by Unicode normalisation (NFC/NFD) or leading/trailing whitespace: they would "
                "look identical on dashboards and pages; write one name once"
            )
        first.setdefault(key, (where, name))
    return out


class StrictModel(BaseModel):
    """Unknown keys are errors; a boolean given to a number option is an error; a key with
    no value is the key left out."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return drop_empty_options(cls, data)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_boolean_number(cls, value, info)


__all__ = [
    "StrictModel",
    "drop_empty_options",
    "name_key",
    "near_duplicate_problems",
    "refuse_boolean_number",
    "refuse_unprintable",
    "unprintable_problem",
]
