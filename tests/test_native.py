"""monitor_native.decode_predictions against a plain Python reference of its contract.

The reference (``reference_decode``) is built on ``orjson.loads`` (validity and every
value) and ``datetime.fromisoformat`` (timestamps); the ``json`` module is used only
for what orjson does not show: duplicate keys and whether a number was written as an
integer or a float. Every comparison is exact: floats bit for bit (NaN positions
compared separately), types of predictions included.

Skipped when the extension is not built, unless MONITOR_REQUIRE_NATIVE=1 (then a
missing module fails).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import struct
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
    try:
        import monitor_native
    except ImportError as exc:  # a skip would hide a broken build in CI
        pytest.fail(f"MONITOR_REQUIRE_NATIVE=1 but monitor_native is missing: {exc}", pytrace=False)
else:
    monitor_native = pytest.importorskip("monitor_native")

decode = monitor_native.decode_predictions

# ============================================================================ reference

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ISO_SUBSET = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](\d{2}):(\d{2}))", re.ASCII
)


class IntLit(str):
    """An integer literal, as written."""


class FloatLit(str):
    """A float literal, as written."""


class Pairs(list):
    """An object's (key, value) pairs, duplicates kept."""

    @property
    def dup(self) -> bool:
        return len({k for k, _ in self}) != len(self)


def literal_structure(v: bytes) -> Pairs:
    """The document as the json module sees it: pairs and literal kinds (call only
    on documents orjson accepted; they nest at most 1024 deep)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        return json.loads(
            v.decode(), object_pairs_hook=Pairs, parse_int=IntLit, parse_float=FloatLit
        )
    finally:
        sys.setrecursionlimit(old)


def iso_timestamp(s: str) -> float | None:
    """The documented subset: YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM), offset HH<=23,
    MM<=59, accepted by fromisoformat."""
    m = ISO_SUBSET.fullmatch(s)
    if m is None or (m.group(1) is not None and (int(m.group(1)) > 23 or int(m.group(2)) > 59)):
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    assert dt.utcoffset() is not None
    return dt.timestamp()


class NotSimple(Exception):
    pass


def reference_row(v: bytes, doc: dict, schemas: dict, max_id: int) -> dict:
    """The decoded row of a simple message; NotSimple otherwise (doc = orjson's)."""
    top = literal_structure(v)
    if top.dup:
        raise NotSimple("duplicate key")
    kinds = dict(top)

    def number(key: str, lit, value):
        if isinstance(lit, IntLit):
            i = int(lit)
            if not INT64_MIN <= i <= INT64_MAX:
                raise NotSimple(f"{key}: int outside int64")
            return i
        if isinstance(lit, FloatLit):
            assert type(value) is float
            return value
        raise NotSimple(f"{key}: not a number")

    eid = doc.get("event_id")
    if type(eid) is not str or not 1 <= len(eid) <= max_id:
        raise NotSimple("event_id")
    model = doc.get("model")
    if type(model) is not str or not 1 <= len(model) <= 200 or model not in schemas:
        raise NotSimple("model")
    version = doc.get("model_version")
    if version is not None and type(version) is not str:
        raise NotSimple("model_version")
    ts = doc.get("timestamp")
    if ts is None:
        ts = math.nan
    elif type(ts) is str:
        ts = iso_timestamp(ts)
        if ts is None:
            raise NotSimple("timestamp string")
    else:
        ts = number("timestamp", kinds["timestamp"], ts)
        if 0 <= ts < 1e11:  # epoch seconds
            ts = float(ts)
        elif 1e11 <= ts < 1e14:  # epoch milliseconds
            ts = ts / 1000
        else:
            raise NotSimple("timestamp range")
    if "prediction" not in doc:
        raise NotSimple("no prediction")
    pred = doc["prediction"]
    if type(pred) not in (str, bool):
        pred = number("prediction", kinds["prediction"], pred)
    feats = doc.get("features")
    if type(feats) is not dict:
        raise NotSimple("features")
    if kinds["features"].dup:
        raise NotSimple("duplicate feature")
    fkinds = dict(kinds["features"])
    numeric, categorical = schemas[model]
    num = [math.nan] * len(numeric)
    cat: list[str | None] = [None] * len(categorical)
    unknown = False
    for k, val in feats.items():
        if k in numeric:
            num[numeric.index(k)] = math.nan if val is None else float(number(k, fkinds[k], val))
        elif k in categorical:
            if val is not None and type(val) is not str:
                raise NotSimple("categorical type")
            cat[categorical.index(k)] = val
        else:
            unknown = True
    return dict(
        model=model,
        event_id=eid,
        version=version,
        ts=ts,
        pred=pred,
        num=num,
        cat=cat,
        unknown=unknown,
    )


def reference_decode(values: list[bytes], schemas: dict, max_id: int):
    """(fallback, {model: [(index, row), ...]} in order of first message)."""
    parsed = []
    for v in values:
        try:
            doc = orjson.loads(v)
        except orjson.JSONDecodeError:
            parsed.append((None, None))
            continue
        if type(doc) is not dict:
            parsed.append((None, None))
            continue
        model = doc.get("model") if type(doc.get("model")) is str else None
        try:
            parsed.append((reference_row(v, doc, schemas, max_id), model))
        except NotSimple:
            parsed.append((None, model))
    fallback, groups = [], {}
    for i, (row, m) in enumerate(parsed):
        if row is None:  # handed back alone: the model's other messages stay native
            fallback.append(i)
        else:
            groups.setdefault(m, []).append((i, row))
    return fallback, groups


# ============================================================================ comparison


def bits(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(a), np.uint64(0x7FF8000000000000), a.view(np.uint64))


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def check(values: list[bytes], schemas: dict, max_id: int = 256):
    """decode_predictions == reference on this batch; returns the native result."""
    got = decode(values, schemas, max_id)
    ref_fallback, ref_groups = reference_decode(values, schemas, max_id)
    assert type(got) is tuple and len(got) == 2
    fallback, groups = got
    assert fallback == ref_fallback
    assert [g[0] for g in groups] == list(ref_groups)
    for g in groups:
        assert type(g) is tuple and len(g) == 9
        model, rows, ids, versions, ts, preds, num, cats, unknown = g
        ref = ref_groups[model]
        n = len(ref)
        numeric, categorical = schemas[model]
        assert rows == [i for i, _ in ref]
        assert ids == [r["event_id"] for _, r in ref]
        assert all(type(x) is str for x in ids)
        assert versions == [r["version"] for _, r in ref]
        assert isinstance(ts, np.ndarray) and ts.dtype == np.float64 and ts.shape == (n,)
        assert np.array_equal(bits(ts), bits([r["ts"] for _, r in ref]))
        assert len(preds) == n
        for p, (_, r) in zip(preds, ref, strict=True):
            assert type(p) is type(r["pred"])
            assert same_float(p, r["pred"]) if type(p) is float else p == r["pred"]
        assert isinstance(num, np.ndarray) and num.dtype == np.float64
        assert num.shape == (n, len(numeric)) and num.flags.c_contiguous
        expect = np.array([r["num"] for _, r in ref], dtype=np.float64).reshape(n, len(numeric))
        assert np.array_equal(bits(num), bits(expect))
        assert cats == [[r["cat"][j] for _, r in ref] for j in range(len(categorical))]
        assert unknown == sum(r["unknown"] for _, r in ref)
    return got


# ============================================================================ generators

SCHEMAS = {
    "m0": (["f0", "f1", "f2"], ["c0", "c1"]),
    "m1": ([], ["c0"]),
    "mé😀": (["é", "x中", "f0"], []),
    "m3": (["a"], ["b"]),
    "L" * 201: (["f0"], []),  # longer than 200: never simple
}
OTHER_MODELS = ["zz", "m9", "M0"]
ISO_OUTSIDE_SUBSET = [  # fromisoformat accepts these, the native subset does not
    "2026-01-01t00:00:00Z",
    "2026-01-01T00:00:00+00:60",
    "2026-01-01T00:00:00.1234567Z",
    "20260101T000000Z",
    "2026-01-01T00:00Z",
    "2026-01-01T00:00:00+0500",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00,5Z",
    "2026-01-01T00:00:00.000001+05:30:15",
    "2026-W01-1T00:00:00Z",
    "2026-01-01T00:00:00 Z",
    "2026-01-01T00:00:00+05",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T12Z",
    "2026-01-01T00:00:00.123456+05:30:00.5",
]
ISO_REFUSED = [  # fromisoformat refuses, or gives a naive datetime
    "2026-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:60:00Z",
    "2026-01-01T00:00:60Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00",
    "2026-13-01T00:00:00Z",
    "2026-01-01T00:00:00z",
    "\uff12\uff10\uff12\uff16-01-01T00:00:00Z",
    "2026-01-01T00:00:00.1234567",
    "",
    "yesterday",
    "2026-01-01T00:00:00Z ",
]
TEXT_CHARS = "abcxyz019 _-/\\\"'é中😀\x00\x01\x1f\x7f\u2028\ufffe"


def rand_float(rnd: random.Random) -> float:
    while True:
        x = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            return x


def ws(rnd: random.Random) -> str:
    return rnd.choice(["", "", "", "", " ", "\n", "\t", " \r\n "])


def enc(rnd: random.Random, s: str, p_escape: float = 0.1) -> str:
    """s as a JSON string literal, with random (valid) escapes."""
    out = ['"']
    short = {
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "/": "\\/",
    }
    for ch in s:
        o = ord(ch)
        if ch in '"\\' or o < 0x20 or rnd.random() < p_escape:
            if ch in short and rnd.random() < 0.5:
                out.append(short[ch])
            elif o > 0xFFFF:
                hi, lo = 0xD800 + ((o - 0x10000) >> 10), 0xDC00 + ((o - 0x10000) & 0x3FF)
                esc = f"\\u{hi:04x}\\u{lo:04x}"
                out.append(esc.upper().replace("\\U", "\\u") if rnd.random() < 0.5 else esc)
            else:
                out.append(f"\\u{o:04X}" if rnd.random() < 0.5 else f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def rand_text(rnd: random.Random, lo: int = 0, hi: int = 8) -> str:
    return "".join(rnd.choice(TEXT_CHARS) for _ in range(rnd.randint(lo, hi)))


def int_lit(rnd: random.Random) -> str:
    return (
        str(
            rnd.choice(
                [
                    0,
                    1,
                    -1,
                    7,
                    42,
                    -123456,
                    2**53 + 1,
                    -(2**53) - 1,
                    INT64_MAX,
                    INT64_MIN,
                    rnd.randint(-(10**6), 10**6),
                    rnd.randint(INT64_MIN, INT64_MAX),
                ]
            )
        )
        if rnd.random() < 0.95
        else "-0"
    )


def big_int_lit(rnd: random.Random) -> str:
    return str(rnd.choice([INT64_MAX + 1, INT64_MIN - 1, 2**64 - 1, 2**64, 10**30, -(10**40)]))


def float_lit(rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.3:
        x = rand_float(rnd)
        return rnd.choice([repr(x), f"{x:.17g}", f"{x:.25e}", f"{x:.3e}".upper()])
    if r < 0.6:
        return repr(round(rnd.gauss(50, 30), rnd.randint(0, 8)))
    if r < 0.8:
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 40)))
        return f"{rnd.choice(['', '-'])}{rnd.randint(0, 999)}.{digits}e{rnd.randint(-330, 310)}"
    return rnd.choice(
        [
            "-0.0",
            "0.0",
            "0e0",
            "-0e-5",
            "1e-400",
            "-1e-400",
            "1E+2",
            "2.5e-324",
            "4.9406564584124654e-324",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "9007199254740993.0",
            "0.1e1",
            "123456789012345678901234.5",
        ]
    )


def invalid_number(rnd: random.Random) -> str:
    """Numbers orjson refuses (overflow to infinity) or that are not JSON."""
    return rnd.choice(
        [
            "1e400",
            "-1e400",
            "1.7976931348623159e308",
            "1" + "0" * 309,
            "NaN",
            "Infinity",
            "-Infinity",
            "01",
            "1.",
            ".5",
            "+1",
            "0x10",
        ]
    )


def json_value(rnd: random.Random, depth: int = 0) -> str:
    """Any valid JSON value (as orjson accepts), nested a little."""
    r = rnd.random()
    if r < 0.15:
        return rnd.choice(["null", "true", "false"])
    if r < 0.35:
        return int_lit(rnd) if rnd.random() < 0.5 else float_lit(rnd)
    if r < 0.4:
        return big_int_lit(rnd)
    if r < 0.65 or depth >= 3:
        return enc(rnd, rand_text(rnd))
    n = rnd.randint(0, 3)
    if r < 0.8:
        return "[" + ws(rnd) + ",".join(json_value(rnd, depth + 1) for _ in range(n)) + "]"
    keys = [rand_text(rnd, 0, 3) for _ in range(n)]
    if keys and rnd.random() < 0.2:
        keys.append(keys[0])  # duplicates are fine inside ignored values
    return (
        "{"
        + ",".join(f"{enc(rnd, k)}{ws(rnd)}:{ws(rnd)}{json_value(rnd, depth + 1)}" for k in keys)
        + "}"
    )


def iso_string(rnd: random.Random) -> str:
    if rnd.random() < 0.7:
        secs = rnd.uniform(1.7e9, 1.9e9)
    else:
        secs = rnd.uniform(-62135596800 + 86400, 253402300799 - 86400)
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
    nd = rnd.randint(0, 6)
    frac = "" if nd == 0 else "." + f"{dt.microsecond:06d}"[:nd]
    if rnd.random() < 0.3:
        off = "Z"
    else:
        h, m = rnd.randint(0, 23), rnd.randint(0, 59)
        off = f"{rnd.choice('+-')}{h:02d}:{m:02d}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + frac + off


def make_event(rnd: random.Random, max_id: int, bad: float) -> bytes:
    """One event as JSON bytes: mostly simple, each part wrong with probability ~bad."""
    model = rnd.choice(list(SCHEMAS)[:4] * 3 + [*OTHER_MODELS, "L" * 201])
    fields: list[tuple[str, str]] = []

    def add(key: str, value: str) -> None:
        fields.append((enc(rnd, key, 0.05), value))

    def wrong() -> bool:
        return rnd.random() < bad

    # event_id
    if not wrong():
        add("event_id", enc(rnd, rand_text(rnd, 1, max_id) or "x"))
    else:
        choice = rnd.randrange(4)
        if choice == 0:
            add("event_id", enc(rnd, "x" * (max_id + 1)))
        elif choice == 1:
            add("event_id", enc(rnd, ""))
        elif choice == 2:
            add("event_id", json_value(rnd))
        # 3: absent
    # model
    if not wrong():
        add("model", enc(rnd, model))
    elif rnd.random() < 0.5:
        add("model", rnd.choice(["null", "0", "[]", enc(rnd, "")]))
    # model_version
    r = rnd.random()
    if r < 0.5:
        add("model_version", enc(rnd, rand_text(rnd)))
    elif r < 0.7:
        add("model_version", "null")
    elif wrong():
        add("model_version", rnd.choice(["1", "true", "[]", "{}"]))
    # timestamp
    r = rnd.random()
    if wrong():
        add(
            "timestamp",
            rnd.choice(
                [
                    enc(rnd, rnd.choice(ISO_OUTSIDE_SUBSET + ISO_REFUSED)),
                    "-1",
                    "100000000000000",
                    "1e11000",
                    "-0.5",
                    "99999999999999.99",
                    "1e14",
                    "true",
                    "[]",
                    big_int_lit(rnd),
                ]
            ),
        )
    elif r < 0.55:
        add("timestamp", enc(rnd, iso_string(rnd), 0.02))
    elif r < 0.7:
        add(
            "timestamp",
            rnd.choice(
                [
                    str(rnd.randint(0, 10**11)),
                    repr(rnd.uniform(0, 1e11)),
                    "0",
                    "-0",
                    "-0.0",
                    "100000000000",
                    "1e11",
                    "1790000000.123",
                    "99999999999.99999",
                    str(rnd.randint(10**11, 10**14 - 1)),
                    repr(rnd.uniform(1e11, 1e14)),
                    "100000000001",
                    "100000000000.00002",
                    "1790000000123",
                    "99999999999999",
                ]
            ),
        )
    elif r < 0.8:
        add("timestamp", "null")
    # else: absent
    # prediction
    if wrong():
        if rnd.random() < 0.8:
            add("prediction", rnd.choice(["null", "[]", "{}", "[1, 2]", big_int_lit(rnd)]))
    else:
        add(
            "prediction",
            rnd.choice(
                [
                    int_lit(rnd),
                    float_lit(rnd),
                    float_lit(rnd),
                    enc(rnd, rand_text(rnd)),
                    "true",
                    "false",
                ]
            ),
        )
    # features
    numeric, categorical = SCHEMAS.get(model, (["f0", "q"], ["c0"]))
    if wrong():
        if rnd.random() < 0.7:
            add("features", rnd.choice(["null", "[]", "1", '"f"']))
    else:
        items: list[tuple[str, str]] = []
        for name in numeric:
            if rnd.random() < 0.85:
                v = (
                    (int_lit(rnd) if rnd.random() < 0.3 else float_lit(rnd))
                    if rnd.random() < 0.9
                    else "null"
                )
                if wrong():
                    v = rnd.choice(["true", enc(rnd, "1.5"), "[1]", "{}", big_int_lit(rnd)])
                items.append((name, v))
        for name in categorical:
            if rnd.random() < 0.85:
                v = enc(rnd, rand_text(rnd)) if rnd.random() < 0.85 else "null"
                if wrong():
                    v = rnd.choice(["1", "false", "[]", '{"a": 1}'])
                items.append((name, v))
        if rnd.random() < 0.15:
            items.append((rnd.choice(["extra", "F0", "f0 ", "zz"]), json_value(rnd)))
        if items and wrong():
            k, _ = rnd.choice(items)
            items.append((k, "null"))  # duplicate feature
        rnd.shuffle(items) if rnd.random() < 0.2 else None
        add(
            "features",
            "{"
            + ws(rnd)
            + ",".join(f"{enc(rnd, k, 0.05)}{ws(rnd)}:{ws(rnd)}{v}" for k, v in items)
            + ws(rnd)
            + "}",
        )
    # other top-level keys
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):
        add(rnd.choice(["extra", "meta", "label", "features2", "ts"]), json_value(rnd))
    if fields and wrong():
        k, _ = rnd.choice(fields)
        fields.append((k, json_value(rnd)))  # duplicate top-level key
    if rnd.random() < 0.2:
        rnd.shuffle(fields)  # e.g. features before model
    text = (
        ws(rnd)
        + "{"
        + ws(rnd)
        + ",".join(f"{k}{ws(rnd)}:{ws(rnd)}{v}" for k, v in fields)
        + ws(rnd)
        + "}"
        + ws(rnd)
    )
    if wrong():
        text = corrupt(rnd, text)
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text


def corrupt(rnd: random.Random, text: str) -> str | bytes:
    """Whole-message damage: invalid JSON, or valid JSON orjson still refuses, or not
    an object; sometimes harmless."""
    body = text.rstrip()
    assert body.endswith("}")
    extra = ',"x":'
    choice = rnd.randrange(12)
    if choice == 0:
        return text + rnd.choice(["x", "{}", "\x00", "]", ","])  # trailing garbage
    if choice == 1:
        return body[:-1] + extra + enc(rnd, "a") + "}\n \t"  # fine: trailing whitespace
    if choice == 2:
        return "\ufeff" + text  # BOM
    if choice == 3:
        return (body[:-1] + extra + '"a\xffb"}').encode("utf-8").replace(b"\xc3\xbf", b"\xff")
    if choice == 4:
        return (
            body[:-1]
            + extra
            + rnd.choice(
                [
                    '"\\ud800"',
                    '"\\udc00x"',
                    '"\\ud800\\u0041"',
                    '"\\ud83d\\ude00"',
                    '"\\uD83D\\uDE00"',
                ]
            )
            + "}"
        )
    if choice == 5:
        return body[:-1] + extra + invalid_number(rnd) + "}"
    if choice == 6:
        d = rnd.choice([1022, 1023, 1024])  # total depth 1023..1025 with the top level
        return body[:-1] + extra + "[" * d + "]" * d + "}"
    if choice == 7:
        return body[: rnd.randrange(1, len(body))]  # truncated
    if choice == 8:
        return "[" + text + "]"
    if choice == 9:
        return body[:-1] + extra + '"a\x01b"}'  # raw control character
    if choice == 10:
        return body[:-1] + extra + '"\\x41"}'  # bad escape
    return body[:-1] + ",}"  # trailing comma


def make_batch(rnd: random.Random, n: int, max_id: int, bad: float) -> list[bytes]:
    return [make_event(rnd, max_id, bad) for _ in range(n)]


# ============================================================================ tests


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    n=st.integers(1, 12),
    max_id=st.sampled_from([1, 5, 12, 256]),
    bad=st.sampled_from([0.0, 0.02, 0.08, 0.3]),
)
def test_random_batches_match_reference(seed, n, max_id, bad):
    check(make_batch(random.Random(seed), n, max_id, bad), SCHEMAS, max_id)


@settings(max_examples=300, deadline=None)
@given(
    event_id=st.text(max_size=6),
    label=st.none() | st.text(max_size=6),
    key=st.sampled_from(["f0", "f1", "c0", "c1", "f00", "x"]) | st.text(max_size=3),
    x=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70),
    fmt=st.sampled_from(["{!r}", "{:.17g}", "{:.25e}", "{:.6E}", "{:.0f}"]),
    pred=st.none() | st.booleans() | st.text(max_size=4) | st.integers() | st.floats(),
    escape=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**32),
)
def test_single_values_match_reference(event_id, label, key, x, fmt, pred, escape, seed):
    rnd = random.Random(seed)
    num = fmt.format(x) if isinstance(x, float) else str(x)
    if isinstance(pred, str):
        p = enc(rnd, pred, escape)
    elif isinstance(pred, float):
        p = repr(pred).replace("inf", "Infinity").replace("nan", "NaN")
    else:
        p = json.dumps(pred)
    cat = "null" if label is None else enc(rnd, label, escape)
    feats = f"{{{enc(rnd, key, escape)}:{num},{enc(rnd, 'c0', escape)}:{cat}}}"
    eid = enc(rnd, event_id, escape)
    msg = f'{{"event_id":{eid},"model":"m0","features":{feats},"prediction":{p}}}'
    check([msg.encode()], SCHEMAS, 4)


def test_seeded_fuzz_matches_reference():
    """Many more batches than hypothesis runs, cheaply; checks the mix stays useful."""
    rnd = random.Random(20261126)
    native_rows = fallback_rows = 0
    for _ in range(1500):
        max_id = rnd.choice([4, 256])
        values = make_batch(rnd, rnd.randint(1, 10), max_id, rnd.choice([0.01, 0.05]))
        fallback, groups = check(values, SCHEMAS, max_id)
        fallback_rows += len(fallback)
        native_rows += sum(len(g[1]) for g in groups)
    assert native_rows > 3000 and fallback_rows > 3000, (native_rows, fallback_rows)


def test_benchmark_events():
    from bench import throughput as t

    values = t.generate(t.SINGLE, 2_000, 1)
    numeric = [f"f{j:02d}" for j in range(t.SINGLE.numeric)]
    categorical = [f"c{j}" for j in range(t.SINGLE.categorical)]
    schemas = {t.SINGLE.names[0]: (numeric, categorical)}
    fallback, groups = check(values, schemas, 256)
    assert fallback == [] and len(groups) == 1
    model, rows, ids, versions, ts, preds, num, cats, unknown = groups[0]
    docs = [orjson.loads(v) for v in values]
    assert model == t.SINGLE.names[0] and rows == list(range(len(values))) and unknown == 0
    assert ids == [d["event_id"] for d in docs]
    assert versions == [d["model_version"] for d in docs]
    assert np.array_equal(
        bits(ts), bits([datetime.fromisoformat(d["timestamp"]).timestamp() for d in docs])
    )
    assert preds == [d["prediction"] for d in docs]
    assert np.array_equal(bits(num), bits([[d["features"][k] for k in numeric] for d in docs]))
    assert cats == [[d["features"][k] for d in docs] for k in categorical]


def event(features: str = '{"f0": 1.5, "c0": "a"}', **top: str) -> bytes:
    """A simple m0 event with some top-level values (raw JSON text) replaced; a value
    of None drops the key."""
    fields = {
        "event_id": '"e1"',
        "model": '"m0"',
        "model_version": '"v1"',
        "timestamp": '"2026-11-01T00:00:00.123Z"',
        "features": features,
        "prediction": "0.25",
    }
    fields.update(top)
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items() if v is not None) + "}").encode()


@pytest.mark.parametrize(
    ("name", "message", "simple"),
    [
        ("base", event(), True),
        ("-0 is int 0", event('{"f0": -0, "f1": -0.0, "f2": -0e0}', prediction="-0"), True),
        ("null feature, absent features", event('{"f0": null, "c0": null}'), True),
        ("empty features", event("{}"), True),
        ("escaped keys", event('{"f\\u0030": 2, "\\u0063\\u0030": "\\u00e9\\ud83d\\ude00"}'), True),
        (
            "escaped model key",
            b'{"event_id":"e","mod\\u0065l":"m\\u0030","features":{},"prediction":1}',
            True,
        ),
        ("int64 bounds", event('{"f0": -9223372036854775808, "f1": 9223372036854775807}'), True),
        ("int above int64", event('{"f0": 9223372036854775808}'), False),
        ("int below int64", event('{"f0": -9223372036854775809}'), False),
        ("int beyond 64 bits", event('{"f0": 18446744073709551616}'), False),
        ("prediction int beyond int64", event(prediction="9223372036854775808"), False),
        ("prediction big int in exponent form", event(prediction="1e19"), True),
        ("prediction str", event(prediction='"cat\\n"'), True),
        ("prediction bool", event(prediction="false"), True),
        ("prediction null", event(prediction="null"), False),
        ("prediction absent", event(prediction=None), False),
        ("prediction array", event(prediction="[0.5]"), False),
        ("features absent", event(features=None), False),
        ("features array", event(features="[]"), False),
        ("bool feature", event('{"f0": true}'), False),
        ("string numeric", event('{"f0": "1.5"}'), False),
        ("number categorical", event('{"c0": 3}'), False),
        ("nested numeric", event('{"f0": [1.0]}'), False),
        ("unknown feature", event('{"f0": 1, "zz": {"a": [1, {"b": null}]}}'), True),
        ("duplicate feature", event('{"f0": 1, "f\\u0030": 2}'), False),
        ("duplicate unknown feature", event('{"zz": 1, "zz": 1}'), False),
        ("duplicate inside ignored value", event(extra='{"a": 1, "a": 2}'), True),
        ("duplicate top-level key", event().replace(b'"e1",', b'"e1","event_id":"e2",'), False),
        (
            "duplicate model key",
            b'{"event_id":"e","model":"m0","model":"m1","features":{},"prediction":1}',
            False,
        ),
        (
            "duplicate other top-level key",
            b'{"x":1,"event_id":"e","model":"m0","x":2,"features":{},"prediction":1}',
            False,
        ),
        (
            "features before model",
            b'{"features":{"f0":-0,"c1":"z","u":1},"event_id":"e","model":"m0","prediction":2}',
            True,
        ),
        (
            "features before model, bad",
            b'{"features":{"f0":true},"event_id":"e","model":"m0","prediction":2}',
            False,
        ),
        ("version null", event(model_version="null"), True),
        ("version absent", event(model_version=None), True),
        ("version number", event(model_version="1"), False),
        ("timestamp absent", event(timestamp=None), True),
        ("timestamp null", event(timestamp="null"), True),
        ("timestamp int", event(timestamp="1790000000"), True),
        ("timestamp -0", event(timestamp="-0"), True),
        ("timestamp -0.0", event(timestamp="-0.0"), True),
        ("timestamp 1e11", event(timestamp="100000000000"), True),
        ("timestamp above 1e11: milliseconds", event(timestamp="100000000001"), True),
        ("timestamp milliseconds", event(timestamp="1790000000123"), True),
        ("timestamp float milliseconds", event(timestamp="1790000000123.5"), True),
        ("timestamp below 1e14", event(timestamp="99999999999999"), True),
        ("timestamp 1e14", event(timestamp="100000000000000"), False),
        ("timestamp 1e14 float", event(timestamp="1e14"), False),
        ("timestamp negative", event(timestamp="-1"), False),
        ("timestamp bool", event(timestamp="true"), False),
        ("timestamp offset", event(timestamp='"2026-11-01T05:30:00.000001+05:30"'), True),
        ("timestamp escaped", event(timestamp='"2026-11-01T00:00:00\\u005a"'), True),
        ("timestamp naive", event(timestamp='"2026-11-01T00:00:00"'), False),
        ("event_id empty", event(event_id='""'), False),
        ("event_id 256 chars", event(event_id='"' + "é" * 256 + '"'), True),
        ("event_id 257 chars", event(event_id='"' + "x" * 257 + '"'), False),
        ("event_id astral escapes", event(event_id='"' + "\\ud83d\\ude00" * 256 + '"'), True),
        ("event_id number", event(event_id="1"), False),
        ("model 200 chars", None, True),
        ("trailing whitespace", event() + b" \n\t\r", True),
        ("leading whitespace", b" \n" + event(), True),
        ("trailing garbage", event() + b"x", False),
        ("BOM", b"\xef\xbb\xbf" + event(), False),
        ("invalid UTF-8 in ignored value", event(extra='"x"').replace(b'"x"', b'"\xff"'), False),
        ("encoded surrogate", event(extra='"x"').replace(b'"x"', b'"\xed\xa0\x80"'), False),
        ("lone surrogate in ignored value", event(extra='"\\ud800"'), False),
        ("lone low surrogate in unknown feature", event('{"zz": "\\udc00"}'), False),
        ("surrogate pair in ignored value", event(extra='["\\ud83d\\ude00"]'), True),
        ("mismatched surrogates", event(extra='"\\ud800\\ud800"'), False),
        ("NaN in ignored value", event(extra="NaN"), False),
        ("1e400 in ignored value", event(extra="[1e400]"), False),
        ("1e-400 in ignored value", event(extra="[1e-400]"), True),
        ("huge int in ignored value", event(extra="1" + "0" * 308), True),
        ("overflowing int in ignored value", event(extra="1" + "0" * 309), False),
        ("int rounding to DBL_MAX", event(extra=str(2**1024 - 2**970 - 1)), True),
        ("int rounding to infinity", event(extra=str(2**1024 - 2**970)), False),
        (
            "float just below the overflow",
            event(extra="1.79769313486231580793728971405303e308"),
            True,
        ),
        ("depth 1024", event(extra="[" * 1023 + "]" * 1023), True),
        ("depth 1025", event(extra="[" * 1024 + "]" * 1024), False),
        ("depth 1024 in unknown feature", event('{"zz":' + "[" * 1022 + "]" * 1022 + "}"), True),
        ("depth 1025 in unknown feature", event('{"zz":' + "[" * 1023 + "]" * 1023 + "}"), False),
        ("control character", event(extra='"a\x01"'), False),
        ("top-level array", b"[1, 2]", False),
        ("empty", b"", False),
    ],
)
def test_cases(name, message, simple):
    if message is None:  # model name of exactly 200 characters
        schemas = {"m" * 200: (["f0"], []), **SCHEMAS}
        message = event(model='"' + "m" * 200 + '"')
    else:
        schemas = SCHEMAS
    fallback, _ = check([message], schemas, 256)
    assert (fallback == []) is simple, (name, fallback)


def test_floats_bit_exact():
    """Random bit patterns in several notations, ints across int64, hard cases."""
    rnd = random.Random(7)
    texts = []
    for _ in range(6000):
        x = rand_float(rnd)
        texts += [repr(x), f"{x:.17g}", f"{x:.25e}"]
    for _ in range(3000):
        texts.append(float_lit(rnd))
        texts.append(str(rnd.randint(INT64_MIN, INT64_MAX)))
        texts.append(str(rnd.randint(-(2**60), 2**60) | 1))  # odd: rounding of float(int)
    texts += [
        "9007199254740993",
        "-9007199254740993",
        "9223372036854775807",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1.7976931348623158e308",
        "-2.47032822920623272088e-324",
        "1.7976931348623158079372897140530341e308",
        "0." + "0" * 400 + "1",
        "1" + "0" * 300 + ".0",
        "0.1" + "0" * 800 + "1",
    ]
    texts = [s for s in texts if math.isfinite(float(s))]  # orjson refuses infinities
    values = [
        b'{"event_id":"e","model":"m3","features":{"a":%s},"prediction":%s}'
        % (s.encode(), s.encode())
        for s in texts
    ]
    fallback, groups = check(values, SCHEMAS)
    assert fallback == []
    ref = [orjson.loads(v)["features"]["a"] for v in values]
    assert np.array_equal(bits(groups[0][6][:, 0]), bits([float(r) for r in ref]))


def test_timestamps_bit_exact():
    rnd = random.Random(11)
    stamps = [iso_string(rnd) for _ in range(20_000)]
    stamps += [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999-23:59",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00.000001Z",
        "2000-02-29T12:00:00.5-00:00",
        "2255-06-05T23:47:34.740992Z",
        "2255-06-05T23:47:34.740993Z",
    ]
    values = [
        b'{"event_id":"e","model":"m3","timestamp":"%s","features":{},"prediction":1}' % s.encode()
        for s in stamps
    ]
    fallback, groups = check(values, SCHEMAS)
    assert fallback == []
    expect = [datetime.fromisoformat(s).timestamp() for s in stamps]
    assert np.array_equal(bits(groups[0][4]), bits(expect))


@pytest.mark.parametrize("stamp", ISO_OUTSIDE_SUBSET + ISO_REFUSED)
def test_timestamps_outside_subset_fall_back(stamp):
    good = (
        b'{"event_id":"e","model":"m3","timestamp":"2026-01-01T00:00:00Z","features":{},'
        b'"prediction":1}'
    )
    bad = good.replace(b'"2026-01-01T00:00:00Z"', json.dumps(stamp).encode())
    other = good.replace(b'"m3"', b'"m1"')
    fallback, groups = check([good, bad, other], SCHEMAS)
    assert fallback == [1] and [g[0] for g in groups] == ["m3", "m1"]


def test_a_message_that_is_not_simple_is_handed_back_alone():
    """One bad message costs the compiled path that message, not its model's batch."""
    m0 = [event(event_id=f'"a{i}"') for i in range(3)]
    m1 = b'{"event_id":"b","model":"m1","features":{"c0":"x"},"prediction":true}'
    other = event(model='"zz"')
    bad_m0 = event('{"f0": true}')
    invalid_m0 = event() + b"x"  # orjson refuses it: it names no model
    dup_names_m1 = b'{"event_id":"c","model":"m0","model":"m1","features":{},"prediction":1}'
    fallback, groups = check([m1, *m0, other, invalid_m0], SCHEMAS)
    assert fallback == [4, 5] and [g[0] for g in groups] == ["m1", "m0"]
    assert groups[1][1] == [1, 2, 3]
    fallback, groups = check([m0[0], bad_m0, m0[1], m1, invalid_m0, m0[2], other], SCHEMAS)
    assert fallback == [1, 4, 6] and [g[0] for g in groups] == ["m0", "m1"]
    assert groups[0][1] == [0, 2, 5] and groups[1][1] == [3]
    fallback, groups = check([*m0, m1, dup_names_m1], SCHEMAS)
    assert fallback == [4] and [g[0] for g in groups] == ["m0", "m1"]


def test_api_details():
    assert decode([], SCHEMAS, 256) == ([], [])
    fallback, groups = decode([event()] * 3, {"m0": ((), ())}, 256)  # tuples work too
    assert fallback == [] and groups[0][6].shape == (3, 0) and groups[0][7] == []
    assert groups[0][8] == 3  # f0 and c0 are unknown here
    with pytest.raises(ValueError):
        decode([event()], {"m0": (["f0"], ["f0"])}, 256)
    with pytest.raises(TypeError):
        decode([event(), "text"], SCHEMAS, 256)
    fallback, groups = decode([event()], SCHEMAS, 0)
    assert fallback == [0] and groups == []
    assert "decode_predictions" in monitor_native.__doc__
    assert "fallback" in decode.__doc__
