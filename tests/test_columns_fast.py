"""The per-batch column conversions against frozen copies of what they replaced (issue 19).

``Columns._codes`` codes a column straight into an array when every value is a known
category, and ``_insert_column`` replaces ``np.insert`` for the numeric prediction: both
must give exactly what the previous code gave, including the vocabulary growth, the
overflow and invalid-value counts of the slow path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.columns import Columns, _insert_column
from monitor.config import LimitsConfig
from monitor.window import MISSING_CODE


def _frozen_codes(self: Columns, name: str, raw: list[Any]) -> list[int]:
    """``Columns._codes`` as it was before the array fast path (frozen copy)."""
    vocab = self.vocab[name]
    try:
        codes: list[int | None] = list(map(vocab.get, raw))
    except TypeError:
        codes = [vocab.get(v) if type(v) is str else None for v in raw]
    if None in codes:
        for i, code in enumerate(codes):
            if code is None:
                v = raw[i]
                if v is None:
                    codes[i] = MISSING_CODE
                else:
                    got = vocab.get(v) if type(v) is str else None
                    codes[i] = got if got is not None else self.code_of(name, v)
    return codes  # type: ignore[return-value]


def _columns(categories: list[str], max_categories: int) -> Columns:
    """A Columns holding one categorical column ``c`` (only what ``_codes`` reads)."""
    cols = Columns.__new__(Columns)
    cols.name = "m"
    cols.limits = LimitsConfig(max_categories_per_feature=max_categories)
    cols.invalid_values = {}
    cols.category_overflow = {}
    cols.categories = {"c": list(categories)}
    cols.vocab = {"c": {c: i for i, c in enumerate(categories)}}
    return cols


KNOWN = ["a", "b", "c", "d"]
VALUES = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN),  # mostly known categories, as in a real stream
    st.text(max_size=3),
    st.none(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=1), st.integers(), max_size=1),
)


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(VALUES, max_size=30), min_size=1, max_size=4),
    max_categories=st.integers(2, 8),
)
def test_codes_match_the_frozen_copy(batches: list[list[Any]], max_categories: int) -> None:
    new, old = _columns(KNOWN, max_categories), _columns(KNOWN, max_categories)
    for raw in batches:
        got = np.empty(len(raw), dtype=np.int32)
        want = np.empty(len(raw), dtype=np.int32)
        got[:] = new._codes("c", raw)
        want[:] = _frozen_codes(old, "c", raw)
        assert got.tolist() == want.tolist()
    assert new.categories == old.categories and new.vocab == old.vocab
    assert new.category_overflow == old.category_overflow
    assert new.invalid_values == old.invalid_values


def test_codes_of_known_categories_come_as_an_array() -> None:
    cols = _columns(KNOWN, 10)
    out = cols._codes("c", ["b", "a", "d", "b"])
    assert isinstance(out, np.ndarray) and out.dtype == np.int32
    assert out.tolist() == [1, 0, 3, 1]
    assert cols._codes("c", []).tolist() == []


@settings(max_examples=100, deadline=None)
@given(
    rows=st.integers(0, 6),
    k=st.integers(0, 5),
    at=st.integers(0, 5),
    fortran=st.booleans(),
    data=st.data(),
)
def test_insert_column_matches_np_insert(
    rows: int, k: int, at: int, fortran: bool, data: st.DataObject
) -> None:
    at = min(at, k)
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
    values = data.draw(st.lists(floats, min_size=rows * k, max_size=rows * k))
    column = np.array(data.draw(st.lists(floats, min_size=rows, max_size=rows)), dtype=float)
    matrix = np.array(values, dtype=np.float64).reshape(rows, k)
    if fortran:
        matrix = np.asfortranarray(matrix)
    got = _insert_column(matrix, at, column)
    want = np.insert(matrix, at, column, axis=1)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.tobytes(order="A") == want.tobytes(order="A")  # bit for bit, NaNs included
    assert got.flags.c_contiguous == want.flags.c_contiguous
    assert got.flags.f_contiguous == want.flags.f_contiguous
