"""The compiled decoder's scanner against the serde_json decoder it replaced (issue 19).

``monitor_native.decode_predictions`` (a hand-written single-pass scanner, native/src/
scan.rs) must give exactly what ``decode_predictions_serde`` (the previous decoder, kept
in the crate as the reference) gives, for every input: the same fallback indices, and for
the messages decoded natively the same columns, bit for bit (floats compared by their
bits, ``-0.0`` and NaN included), with the same Python types. Messages are generated
(``tests/test_native.py``'s generators: valid events with random escapes, whitespace,
field order, unknown keys with nested values, and whole-message damage) and then damaged
byte by byte, and the hostile cases are also listed one by one.

Skipped when the extension is not built, unless MONITOR_REQUIRE_NATIVE=1.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_native import SCHEMAS, enc, make_batch, make_event

if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
    import monitor_native
else:
    monitor_native = pytest.importorskip("monitor_native")

new = monitor_native.decode_predictions
old = monitor_native.decode_predictions_serde

# Names the scanner compares in place (short, long, prefixes of each other) and names it
# must not (a quote, a backslash, a control character in them).
SCAN_SCHEMAS: dict[str, tuple[list[str], list[str]]] = {
    **SCHEMAS,
    "s": (["f0", "f00", "f000000", "f0000000", "a_much_longer_name", 'q"t', "b\\s"], ["c", "t\t"]),
}
# Bytes and snippets that damage or stress a message where they land.
HOSTILE_BYTES = [
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"0",
    b"9",
    b"-",
    b"+",
    b".",
    b"e",
    b"E",
    b" ",
    b"\t",
    b"\n",
    b"\r",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"n",
    b"t",
    b"f",
]


def float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_same(values: list[bytes], schemas: dict[str, Any], max_id: int) -> Any:
    """Scanner == serde_json decoder on this batch, exactly; returns the scanner's result."""
    got = new(values, schemas, max_id)
    compare(got, old(values, schemas, max_id))
    return got


def compare(got: Any, want: Any) -> None:
    """Two results of decode_predictions are the same, bit for bit and type for type."""
    assert type(got) is tuple and len(got) == 2
    assert got[0] == want[0], "fallback"
    assert len(got[1]) == len(want[1]), "groups"
    for g, w in zip(got[1], want[1], strict=True):
        assert len(g) == len(w) == 9
        assert g[0] == w[0] and type(g[0]) is str
        assert g[1] == w[1], "rows"
        for field in (2, 3, 7):  # event ids, versions, categorical columns
            assert g[field] == w[field]
        assert [type(x) for x in g[2]] == [type(x) for x in w[2]]
        assert [type(x) for x in g[3]] == [type(x) for x in w[3]]
        for col_g, col_w in zip(g[7], w[7], strict=True):
            assert [type(x) for x in col_g] == [type(x) for x in col_w]
        for field in (4, 6):  # timestamps, numeric columns
            a, b = g[field], w[field]
            assert type(a) is np.ndarray and a.dtype == b.dtype == np.float64
            assert a.shape == b.shape and a.flags.c_contiguous
            assert a.tobytes() == b.tobytes(), field
        assert [type(p) for p in g[5]] == [type(p) for p in w[5]], "prediction types"
        for p, q in zip(g[5], w[5], strict=True):
            assert float_bits(p) == float_bits(q) if type(p) is float else p == q
        assert g[8] == w[8], "unknown"


def mutate(rnd: random.Random, v: bytes) -> bytes:
    """One to three byte-level edits: insert, replace or delete, or truncate; or a digit
    inserted before a digit (leading zeros, longer numbers)."""
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randrange(len(v) + 1)
        op = rnd.randrange(5)
        digits = [i for i, c in enumerate(v) if 0x30 <= c <= 0x39]
        if op == 4 and digits:
            at = rnd.choice(digits)
            v = v[:at] + rnd.choice([b"0", b"9", b"00000000"]) + v[at:]
        elif op == 0:
            v = v[:at] + rnd.choice(HOSTILE_BYTES) + v[at:]
        elif op == 1:
            v = v[:at] + rnd.choice(HOSTILE_BYTES) + v[at + 1 :]
        elif op == 2:
            v = v[:at] + v[at + 1 :]
        else:
            v = v[:at]
    return v


# ============================================================================ generated


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    n=st.integers(1, 12),
    max_id=st.sampled_from([1, 5, 12, 256]),
    bad=st.sampled_from([0.0, 0.02, 0.08, 0.3]),
)
def test_generated_batches(seed: int, n: int, max_id: int, bad: float) -> None:
    assert_same(make_batch(random.Random(seed), n, max_id, bad), SCAN_SCHEMAS, max_id)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(1, 8))
def test_damaged_bytes(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    values = [make_event(rnd, 256, 0.0) for _ in range(n)]
    assert_same(values + [mutate(rnd, v) for v in values], SCAN_SCHEMAS, 256)


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.text(max_size=9), min_size=1, max_size=6, unique=True),
    keys=st.lists(st.text(max_size=9), max_size=8),
    values=st.lists(
        st.none() | st.floats() | st.integers(-(2**70), 2**70) | st.text(max_size=4), max_size=8
    ),
    seed=st.integers(0, 2**32),
)
def test_feature_names(names: list[str], keys: list[str], values: list[Any], seed: int) -> None:
    """Any feature names, keys written with or without escapes, any scalar values."""
    rnd = random.Random(seed)
    n_num = rnd.randint(0, len(names))
    schemas = {"m": (names[:n_num], names[n_num:])}
    keys = keys + [rnd.choice(names) for _ in range(rnd.randint(0, 4))]
    rnd.shuffle(keys)

    def lit(x: Any) -> str:
        if isinstance(x, float):
            return repr(x).replace("inf", "Infinity").replace("nan", "NaN")
        return "null" if x is None else enc(rnd, x) if isinstance(x, str) else str(x)

    feats = ",".join(
        f"{enc(rnd, k, rnd.choice([0.0, 0.5]))}:{lit(values[i % len(values)] if values else None)}"
        for i, k in enumerate(keys)
    )
    msg = f'{{"event_id":"e","model":"m","features":{{{feats}}},"prediction":1}}'
    assert_same([msg.encode("utf-8", "surrogatepass")], schemas, 8)


def test_benchmark_events_and_every_truncation() -> None:
    """The bench workload decodes natively and identically; so does every prefix of one
    of its events and every single-byte damage of it (the fast paths for numbers, keys
    and strings end at every possible place)."""
    from bench import throughput as t

    values = t.generate(t.SINGLE, 500, 1)
    schemas = {"m00": ([f"f{j:02d}" for j in range(20)], ["c0", "c1"])}
    fallback, groups = assert_same(values, schemas, 256)
    assert fallback == [] and len(groups[0][1]) == 500
    v = values[0]
    damaged = [v[:i] for i in range(len(v))]
    for i in range(len(v)):
        damaged.extend(
            v[:i] + b + v[i + 1 :] for b in (b'"', b"\\", b"\x00", b"\xff", b"e", b"0", b"1", b".")
        )
        damaged.append(v[:i] + b" " + v[i:])
    assert_same(damaged, schemas, 256)


# ============================================================================ listed


def msg(features: str = '{"f0": 1.5, "c0": "a"}', **top: str | None) -> bytes:
    """An m0 event with top-level values (raw JSON text) replaced; None drops the key."""
    fields: dict[str, str | None] = {
        "event_id": '"e1"',
        "model": '"m0"',
        "model_version": '"v1"',
        "timestamp": '"2026-11-01T00:00:00.123Z"',
        "features": features,
        "prediction": "0.25",
    }
    fields.update(top)
    body = ",".join(f'"{k}":{v}' for k, v in fields.items() if v is not None)
    return ("{" + body + "}").encode("utf-8", "surrogatepass")


HOSTILE: list[bytes] = [
    msg(),
    b"\xef\xbb\xbf" + msg(),  # BOM
    msg()[:-1] + b"\xff}",  # invalid UTF-8
    msg(event_id='"a\ud800b"'),  # an encoded surrogate: not UTF-8
    msg(event_id='"\\ud800"'),
    msg(event_id='"\\udc00x"'),
    msg(event_id='"\\ud800\\u0041"'),
    msg(event_id='"\\ud83d\\ude00"'),
    msg(event_id='"\\ud800\\n"'),
    msg(event_id='"\\u00e9\\u4e2d"'),
    msg(event_id='"' + "x" * 257 + '"'),
    msg(event_id='"' + "é" * 256 + '"'),
    msg(event_id='"' + "\\u00e9" * 256 + '"'),
    msg(event_id='"' + "\\u00e9" * 257 + '"'),
    msg(prediction="1e400"),
    msg(prediction="-1e400"),
    msg(prediction="1e-400"),
    msg(prediction="-0"),
    msg(prediction="-0.0"),
    msg(prediction="NaN"),
    msg(prediction="Infinity"),
    msg(prediction="-Infinity"),
    msg(prediction="9223372036854775808"),
    msg(prediction="-9223372036854775808"),
    msg(prediction="1" + "0" * 400),
    msg(prediction="0." + "0" * 400 + "1"),
    msg(prediction="123456789.123456789"),
    msg(prediction="12345678.12345678"),
    msg(prediction="1.5e3"),
    msg(prediction="01"),
    msg(prediction="01", extra='"padding after the number"'),
    msg('{"f0": 01.5, "f1": 1, "c0": "a"}'),
    msg('{"f0": -01, "f1": 1, "c0": "a"}'),
    msg('{"f0": 00, "f1": 1, "c0": "a"}'),
    msg('{"f0": 0.5, "f1": 1, "c0": "a"}'),
    msg('{"f0": 12345678.87654321, "f1": 123456789.5, "f2": 1.123456789, "c0": "a"}'),
    msg('{"f0": 99999999.99999999, "f1": -0.00000001, "f2": 1.5e1, "c0": "a"}'),
    msg('{"f0": 1.5E1, "f1": 1.e1, "f2": 1.5.5, "c0": "a"}'),
    msg('{"f0": 1.5E1, "f1": 2., "c0": "a"}'),
    msg('{"f0": 1.5E1, "f1": 2.-1, "c0": "a"}'),
    msg(prediction="1."),
    msg(prediction="true"),
    msg(prediction="tru"),
    msg(prediction="null"),
    msg(prediction='"\\ud800"'),
    msg('{"f0": -0, "f1": -0.0, "f2": 1e308, "c0": null}'),
    msg('{"f0": 1e400}'),
    msg('{"f0": 9223372036854775808}'),
    msg('{"f0": 9223372036854775807, "f1": -9223372036854775808}'),
    msg('{"f0": 0.1, "f0": 0.2}'),
    msg('{"f0": 0.1, "f\\u0030": 0.2}'),
    msg('{"x": 1, "x": 2}'),
    msg('{"x": {"a": 1, "a": 2}}'),
    msg('{"x": [1, "\\ud800"]}'),
    msg('{"x": [1, 1e400]}'),
    msg('{"x": ' + "[" * 1022 + "]" * 1022 + "}"),
    msg('{"x": ' + "[" * 1023 + "]" * 1023 + "}"),
    msg('{"x": ' + "[" * 1024 + "]" * 1024 + "}"),
    msg(extra="[" * 1023 + "]" * 1023),
    msg(extra="[" * 1024 + "]" * 1024),
    msg(extra='{"a": {"b": [1, 2, {"c": null}]}, "d": "\\ud83d\\ude00"}'),
    msg(extra="NaN"),
    msg(extra="1e400"),
    msg(extra='"\\udc00"'),
    msg(features=None),
    msg(model=None),
    msg(model='"zz"'),
    msg(model='"m\\u0030"'),
    msg(timestamp="1790000000"),
    msg(timestamp="1790000000123"),
    msg(timestamp="-0"),
    msg(timestamp="1e14"),
    msg(timestamp='"2026-11-01T00:00:00.123\\u005a"'),
    msg(timestamp='"2026-11-01T00:00:00+05:30"'),
    msg(timestamp="true"),
    msg(model_version="null"),
    msg(model_version="1"),
    b'{"features": {"f0": 2, "x": [[]]}, "event_id": "e", "model": "m0", "prediction": 1}',
    b'{"features": {"f0": 2, "x": [1e400]}, "event_id": "e", "model": "m0", "prediction": 1}',
    b'{"features": 5, "event_id": "e", "model": "m0", "prediction": 1}',
    b' \t\r\n{ "event_id" : "e" , "model" : "m0" , "features" : { "f0" : 1 , "c0" : "z" } ,'
    b' "prediction" : 1 } \n',
    msg() + b" x",
    msg() + b"\x00",
    msg() + b"{}",
    msg()[:-1],
    msg()[:-1] + b",}",
    b"[" + msg() + b"]",
    b"{}",
    b"",
    b"null",
    b'{"event_id": "e", "model": "m0", "features": {}, "prediction": 1, "event_id": "f"}',
    b'{"event_id": "e", "model": "m0", "features": {}, "prediction": 1, "ev\\u0065nt_id": "f"}',
    b'{"event_id": "e", "model": "m0", "features": {}, "prediction": 1, "a": 1, "a": 2}',
    b'{"event_id": "e", "model": "m0", "features": {}, "prediction": 1, "a": 1, "\\u0061": 2}',
    b'{"event_id": "e", "model": "m0", "features": {}, "prediction": 1,}',
    b'{"event_id": "e" "model": "m0", "features": {}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"f0": 1,}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"f0" 1}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"f0": 1 "c0": "a"}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"c0": "a\x01"}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"c0": "a\\x"}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"c0": 1}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"f0": "1"}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"f0": true}, "prediction": 1}',
    b'{"event_id": "e", "model": "m0", "features": {"f0": nul}, "prediction": 1}',
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_listed(value: bytes) -> None:
    good = msg()
    assert_same([value], SCAN_SCHEMAS, 256)
    assert_same([good, value, good], SCAN_SCHEMAS, 256)


def test_listed_cases_take_both_ways() -> None:
    """The list exercises both outcomes, so its agreement means something."""
    fallback, _ = new(HOSTILE, SCAN_SCHEMAS, 256)
    assert 20 < len(fallback) < len(HOSTILE) - 15


def test_the_comparison_sees_a_difference() -> None:
    """compare fails on results that differ only in a float's sign or bits, or a type."""
    result = new([msg()], SCAN_SCHEMAS, 256)
    compare(result, result)
    model, rows, ids, versions, ts, preds, num, cats, unknown = result[1][0]
    for bad in (
        (model, rows, ids, versions, ts, [-p for p in preds], num, cats, unknown),
        (model, rows, ids, versions, ts, [int(preds[0])], num, cats, unknown),
        (model, rows, ids, versions, np.nextafter(ts, 0), preds, num, cats, unknown),
        (model, rows, ids, versions, ts, preds, num * 1.0000000000000002, cats, unknown),
        (model, rows, ids, versions, ts, preds, num, cats, unknown + 1),
        (model, rows, [i + "x" for i in ids], versions, ts, preds, num, cats, unknown),
    ):
        with pytest.raises(AssertionError):
            compare((result[0], [bad]), result)
    with pytest.raises(AssertionError):
        compare(([0], []), result)
