//! `monitor_native`: decodes a batch of JSON prediction events straight into columns.
//!
//! The entry point is [`decode_predictions`]; its doc comment is the contract (it is
//! also the Python docstring of the function and, prefixed, of the module).
//!
//! Two decoders decide and decode the same: `decode_predictions` runs the single-pass
//! scanner of `scan.rs` (issue 19; a quarter to a third less time per event); the serde_json
//! decoder below it replaced stays as `decode_predictions_serde`, the reference that
//! `tests/test_native_scan.py` holds the scanner to. `scan.rs` says why they agree.
//!
//! How the serde_json decoder stays exact (every "simple" event must decode to exactly what
//! `orjson.loads` + the caller's Python path would give):
//!
//! * The whole message is UTF-8-validated first (`std::str::from_utf8`, which also
//!   rejects encoded surrogates, as orjson does).
//! * serde_json parses the grammar. Keys and the string fields we keep are parsed by
//!   serde_json's validating string parser (escapes, lone surrogates refused). Every
//!   other value is taken as raw text (`&RawValue`): numbers are parsed from their
//!   text (so `-0` is the integer 0 and `-0.0` the float -0.0, integers and floats
//!   are told apart, big integers are seen), and ignored values are checked by
//!   [`check_raw`] for what serde_json's skipping does not check but orjson refuses:
//!   lone surrogate escapes, numbers that overflow to infinity, nesting deeper than
//!   1024.
//! * Floats: Clinger's exact fast path (at most 2^53 digits value, decimal exponent
//!   within ±22: one correctly rounded operation on exact doubles), otherwise Rust's
//!   correctly rounded `str::parse::<f64>`; both give the double orjson gives.
//! * A message that is not simple is handed back by index, alone; the caller's Python
//!   path decodes it and merges the result in message order.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

mod ks;
mod sort;
mod summary;

/// orjson refuses documents nesting arrays/objects deeper than this.
const MAX_DEPTH: usize = 1024;
/// Longest accepted model name, in code points.
const MAX_MODEL_CHARS: usize = 200;
/// The longest "model_version" taken (code points); longer ones go to the full path, which
/// rejects them (`MAX_VERSION_CHARS` in monitor/events.py).
const MAX_VERSION_CHARS: usize = 200;
/// Numeric timestamps below this are epoch seconds, from it on epoch milliseconds (1e11
/// seconds is the year 5138, 1e11 milliseconds 1973); `monitor.events.EPOCH_MILLIS_FROM`.
const MILLIS_FROM: i64 = 100_000_000_000;
/// Numeric timestamps from this on are out of range; `monitor.events.EPOCH_MILLIS_UNTIL`.
const MILLIS_UNTIL: i64 = 100_000_000_000_000;

type JsonError = serde_json::Error;

#[inline]
fn fail<E: de::Error>(why: &'static str) -> E {
    E::custom(why)
}

// =============================================================================== schemas

/// Column of a feature: numeric column j is slot j, categorical column j is slot nn + j.
struct ModelSchema {
    name: String,
    n_num: usize,
    /// Numeric names then categorical names (slot order).
    names: Vec<String>,
    /// Per name: its JSON string form is its own bytes (no `"`, `\` or control character),
    /// so the scanner can compare a key with it in place.
    plain: Vec<bool>,
    /// Per name: `scan::key_word` of it.
    key_words: Vec<(u64, u64)>,
    index: HashMap<String, usize>,
}

impl ModelSchema {
    /// Slot of `key`; tries the slot after the previous one first (producers usually
    /// write the features in schema order), then the hash map.
    #[inline]
    fn slot(&self, key: &str, expect: usize) -> Option<usize> {
        match self.names.get(expect) {
            Some(name) if name == key => Some(expect),
            _ => self.index.get(key).copied(),
        }
    }
}

struct Schemas {
    models: Vec<ModelSchema>,
    index: HashMap<String, usize>,
    max_id_chars: usize,
    /// Longest `names` over all models (scratch row size).
    width: usize,
}

impl Schemas {
    /// Index of model `name` (a linear scan when there are few models).
    #[inline]
    fn lookup(&self, name: &str) -> Option<usize> {
        if self.models.len() <= 8 {
            self.models.iter().position(|m| m.name == name)
        } else {
            self.index.get(name).copied()
        }
    }

    /// The schemas, and the key objects of the caller's dict in model order (each group
    /// returns its model's own key object).
    fn from_py<'py>(
        schemas: &Bound<'py, PyDict>,
        max_id_chars: i64,
    ) -> PyResult<(Schemas, Vec<Bound<'py, PyString>>)> {
        let mut entries = Vec::with_capacity(schemas.len());
        let mut keys = Vec::with_capacity(schemas.len());
        for (k, v) in schemas.iter() {
            let key = k
                .cast_into::<PyString>()
                .map_err(|_| PyTypeError::new_err("schemas: model names must be str"))?;
            let name = key.to_str()?.to_owned();
            let (numeric, categorical): (Vec<String>, Vec<String>) = v.extract().map_err(|e| {
                PyTypeError::new_err(format!(
                    "schemas[{name:?}] must be (list[str], list[str]): {e}"
                ))
            })?;
            keys.push(key);
            entries.push((name, numeric, categorical));
        }
        let schemas = Schemas::new(entries, max_id_chars).map_err(PyValueError::new_err)?;
        Ok((schemas, keys))
    }

    /// From (model name, numeric names, categorical names) per model.
    fn new(
        entries: Vec<(String, Vec<String>, Vec<String>)>,
        max_id_chars: i64,
    ) -> Result<Schemas, String> {
        let mut models = Vec::with_capacity(entries.len());
        let mut index = HashMap::with_capacity(entries.len());
        let mut width = 0;
        for (name, numeric, categorical) in entries {
            let n_num = numeric.len();
            let names: Vec<String> = numeric.into_iter().chain(categorical).collect();
            let mut fidx = HashMap::with_capacity(names.len());
            for (slot, f) in names.iter().enumerate() {
                if fidx.insert(f.clone(), slot).is_some() {
                    return Err(format!(
                        "schemas[{name:?}]: feature {f:?} is listed more than once"
                    ));
                }
            }
            width = width.max(names.len());
            let plain = names
                .iter()
                .map(|f| !f.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\'))
                .collect();
            let key_words = names.iter().map(|f| scan::key_word(f)).collect();
            index.insert(name.clone(), models.len());
            models.push(ModelSchema {
                name,
                n_num,
                names,
                plain,
                key_words,
                index: fidx,
            });
        }
        Ok(Schemas {
            models,
            index,
            max_id_chars: max_id_chars.max(0) as usize,
            width,
        })
    }
}

// =============================================================================== raw values

enum Num {
    Int(i64),
    Float(f64),
    /// An integer literal outside int64 (finite as a double).
    BigInt,
}

/// Powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number's text (grammar already checked by serde_json) -> its value as orjson
/// sees it; None when orjson refuses it (a double that overflows to infinity).
///
/// Floats: Clinger's fast path when the digits fit 53 bits and the decimal exponent is
/// within ±22 (one correctly rounded multiplication or division of exact doubles),
/// otherwise Rust's correctly rounded `str::parse::<f64>`.
#[inline]
fn parse_number(text: &str) -> Option<Num> {
    let b = text.as_bytes();
    let neg = b.first() == Some(&b'-');
    let mut i = neg as usize;
    let mut m: u64 = 0;
    let mut exact = true; // m holds every digit
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        match m
            .checked_mul(10)
            .and_then(|x| x.checked_add((c - b'0') as u64))
        {
            Some(x) => m = x,
            None => exact = false,
        }
        i += 1;
    }
    if i == b.len() {
        // An integer literal ("-0" is the integer 0).
        if exact {
            if !neg && m <= i64::MAX as u64 {
                return Some(Num::Int(m as i64));
            }
            if neg && m <= 1u64 << 63 {
                return Some(Num::Int((m as i64).wrapping_neg()));
            }
            return Some(Num::BigInt);
        }
        // orjson turns integers beyond 64 bits into doubles; infinity is refused.
        let v: f64 = text.parse().ok()?;
        return v.is_finite().then_some(Num::BigInt);
    }
    let mut e: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            match m
                .checked_mul(10)
                .and_then(|x| x.checked_add((c - b'0') as u64))
            {
                Some(x) => {
                    m = x;
                    e -= 1;
                }
                None => exact = false,
            }
            i += 1;
        }
    }
    if i < b.len() {
        // exponent: [eE][+-]?digits
        i += 1;
        let eneg = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let mut x: i64 = 0;
        while let Some(&c) = b.get(i) {
            x = (x * 10 + (c - b'0') as i64).min(1 << 40);
            i += 1;
        }
        e += if eneg { -x } else { x };
    }
    let v = if exact && m <= 1u64 << 53 && (-22..=22).contains(&e) {
        let mf = m as f64;
        let v = if e < 0 {
            mf / POW10[(-e) as usize]
        } else {
            mf * POW10[e as usize]
        };
        if neg {
            -v
        } else {
            v
        }
    } else {
        text.parse().ok()?
    };
    v.is_finite().then_some(Num::Float(v))
}

#[inline]
fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Checks a raw JSON value (grammar already checked by serde_json, which also refused
/// control characters and bad escapes) for what orjson refuses on top of the grammar:
/// lone or mismatched surrogate escapes, numbers that overflow to infinity, and
/// nesting deeper than [`MAX_DEPTH`]. `depth` is the number of containers enclosing
/// the value.
fn check_raw(raw: &str, depth: usize) -> bool {
    let b = raw.as_bytes();
    let n = b.len();
    let mut depth = depth;
    let mut i = 0;
    while i < n {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    while i < n && b[i] != b'"' && b[i] != b'\\' {
                        i += 1;
                    }
                    if i >= n {
                        return false;
                    }
                    if b[i] == b'"' {
                        i += 1;
                        break;
                    }
                    // backslash
                    if b.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    let Some(u) = b.get(i + 2..).and_then(hex4) else {
                        return false;
                    };
                    i += 6;
                    if (0xDC00..0xE000).contains(&u) {
                        return false; // low surrogate first
                    }
                    if (0xD800..0xDC00).contains(&u) {
                        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                            return false;
                        }
                        match b.get(i + 2..).and_then(hex4) {
                            Some(lo) if (0xDC00..0xE000).contains(&lo) => i += 6,
                            _ => return false,
                        }
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < n && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let text = &raw[start..i];
                let is_int = !text.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'));
                if !(is_int && text.len() <= 19) && parse_number(text).is_none() {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// A raw JSON string value -> its text, exactly unescaped (lone surrogates refused).
#[inline]
fn raw_str<E: de::Error>(raw: &str) -> Result<Cow<'_, str>, E> {
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner)); // serde_json already refused control characters
    }
    let mut d = serde_json::Deserializer::from_str(raw);
    d.deserialize_str(StrVisitor)
        .map_err(|_| fail("bad string"))
}

fn raw_value<'a, A: MapAccess<'a>>(map: &mut A) -> Result<&'a str, A::Error> {
    let raw: &'a RawValue = map.next_value()?;
    Ok(raw.get())
}

// =============================================================================== timestamps

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `datetime.fromisoformat(s).timestamp()` for `s` of the form
/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)` (offset hours 00..23, minutes 00..59);
/// None for anything else, including every string fromisoformat refuses.
fn parse_iso_timestamp(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, mi, se) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1 || !(1..=12).contains(&mo) || d < 1 || d > mdays[(mo - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut pos = 19;
    let mut micros = 0i64;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let nd = pos - start;
        if !(1..=6).contains(&nd) {
            return None;
        }
        micros = digits(b, start, nd)? * 10i64.pow(6 - nd as u32);
    }
    let offset = match *b.get(pos)? {
        b'Z' if b.len() == pos + 1 => 0,
        c @ (b'+' | b'-') if b.len() == pos + 6 && b[pos + 3] == b':' => {
            let (oh, om) = (digits(b, pos + 1, 2)?, digits(b, pos + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if c == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    // timedelta.total_seconds(): the exact count of microseconds / 10**6, correctly
    // rounded (Python's int / int).
    let total = secs * 1_000_000 + micros;
    if total.unsigned_abs() < (1u64 << 53) {
        Some(total as f64 / 1e6) // both exact: one correctly rounded division
    } else {
        format!("{total}e-6").parse().ok() // correctly rounded decimal -> double
    }
}

// =============================================================================== small seeds

/// A JSON string (borrowed when it has no escapes).
struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

impl<'de> DeserializeSeed<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

/// str | null
struct OptStrSeed;

impl<'de> Visitor<'de> for OptStrSeed {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
}

impl<'de> DeserializeSeed<'de> for OptStrSeed {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Keys of one object, for duplicate detection (a short list, a hash set when long).
struct KeySet<'a> {
    few: Vec<Cow<'a, str>>,
    many: HashSet<Cow<'a, str>>,
}

impl<'a> KeySet<'a> {
    fn new() -> Self {
        KeySet {
            few: Vec::new(),
            many: HashSet::new(),
        }
    }
    fn clear(&mut self) {
        self.few.clear();
        self.many.clear();
    }
    /// False if `k` was already there.
    #[inline]
    fn insert(&mut self, k: Cow<'a, str>) -> bool {
        if !self.many.is_empty() {
            return self.many.insert(k);
        }
        if self.few.contains(&k) {
            return false;
        }
        self.few.push(k);
        if self.few.len() > 16 {
            self.many.extend(self.few.drain(..));
        }
        true
    }
}

// =============================================================================== events

enum Pred<'a> {
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
}

/// The scalar fields of a simple event (features are in the scratch rows).
struct Row<'a> {
    event_id: Cow<'a, str>,
    version: Option<Cow<'a, str>>,
    ts: f64,
    pred: Pred<'a>,
    unknown: bool,
}

enum Parsed<'a> {
    /// Simple event of model `.0`; its features are in `Scratch::num` / `Scratch::cat`.
    Simple(usize, Row<'a>),
    /// An object whose only "model" key names no model of `schemas`.
    OtherModel,
}

/// Per-batch scratch space, reused from message to message.
struct Scratch<'a> {
    num: Vec<f64>,
    cat: Vec<Option<Cow<'a, str>>>,
    seen: Vec<u32>,
    stamp: u32,
    top_keys: KeySet<'a>,
    feature_keys: KeySet<'a>,
}

impl<'a> Scratch<'a> {
    fn new(width: usize) -> Self {
        Scratch {
            num: vec![f64::NAN; width],
            cat: (0..width).map(|_| None).collect(),
            seen: vec![0; width],
            stamp: 0,
            top_keys: KeySet::new(),
            feature_keys: KeySet::new(),
        }
    }

    /// Clears what one event's features left (values to missing, keys seen) and returns
    /// the stamp that marks a feature seen in the next one: both decoders start there.
    fn begin_features(&mut self, schema: &ModelSchema) -> u32 {
        let nn = schema.n_num;
        let width = schema.names.len();
        self.num[..nn].fill(f64::NAN);
        self.cat[..width - nn].iter_mut().for_each(|c| *c = None);
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.fill(0);
            self.stamp = 1;
        }
        self.feature_keys.clear();
        self.stamp
    }
}

/// The "features" object of a simple event of `schema`; returns whether it had an
/// unknown key. Errors for anything not simple.
struct FeatureSeed<'c, 's, 'a> {
    schema: &'s ModelSchema,
    scratch: &'c mut Scratch<'a>,
}

impl<'c, 's, 'a> DeserializeSeed<'a> for FeatureSeed<'c, 's, 'a> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'c, 's, 'a> Visitor<'a> for FeatureSeed<'c, 's, 'a> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a features object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<bool, A::Error> {
        let FeatureSeed { schema, scratch } = self;
        let stamp = scratch.begin_features(schema);
        let nn = schema.n_num;
        let mut unknown = false;
        let mut expect = 0;
        while let Some(key) = map.next_key_seed(StrVisitor)? {
            let Some(slot) = schema.slot(&key, expect) else {
                if !scratch.feature_keys.insert(key) {
                    return Err(fail("duplicate feature"));
                }
                unknown = true;
                let raw: &'a RawValue =
                    map.next_value().map_err(|_| fail::<A::Error>("bad json"))?;
                if !check_raw(raw.get(), 2) {
                    return Err(fail("refused by orjson"));
                }
                continue;
            };
            if scratch.seen[slot] == stamp {
                return Err(fail("duplicate feature"));
            }
            scratch.seen[slot] = stamp;
            expect = slot + 1;
            if slot < nn {
                let raw: &'a RawValue = map.next_value()?;
                let raw = raw.get();
                scratch.num[slot] = match raw.as_bytes()[0] {
                    b'n' => f64::NAN,
                    b'-' | b'0'..=b'9' => match parse_number(raw) {
                        Some(Num::Int(i)) => i as f64, // as float(int): round half to even
                        Some(Num::Float(v)) => v,
                        _ => return Err(fail("not an int64 or finite float")),
                    },
                    _ => return Err(fail("numeric feature not a number")),
                };
            } else {
                scratch.cat[slot - nn] = map.next_value_seed(OptStrSeed)?;
            }
        }
        Ok(unknown)
    }
}

/// Tier 1: the whole event, simple or error.
struct EventVisitor<'c, 's, 'a> {
    schemas: &'s Schemas,
    scratch: &'c mut Scratch<'a>,
}

const K_EVENT_ID: u8 = 1;
const K_MODEL: u8 = 2;
const K_VERSION: u8 = 4;
const K_TIMESTAMP: u8 = 8;
const K_PREDICTION: u8 = 16;
const K_FEATURES: u8 = 32;

/// A numeric timestamp (see [`MILLIS_FROM`]) -> epoch seconds; None when out of range.
#[inline]
fn timestamp_number(n: Option<Num>) -> Option<f64> {
    match n {
        // Both exact doubles (below 2^53): one correctly rounded division, as Python's
        // int / int and float / float.
        Some(Num::Int(i)) if (0..MILLIS_FROM).contains(&i) => Some(i as f64),
        Some(Num::Int(i)) if (MILLIS_FROM..MILLIS_UNTIL).contains(&i) => Some(i as f64 / 1000.0),
        Some(Num::Float(v)) if (0.0..MILLIS_FROM as f64).contains(&v) => Some(v),
        Some(Num::Float(v)) if (MILLIS_FROM as f64..MILLIS_UNTIL as f64).contains(&v) => {
            Some(v / 1000.0)
        }
        _ => None,
    }
}

fn timestamp_value<E: de::Error>(raw: &str) -> Result<f64, E> {
    match raw.as_bytes()[0] {
        b'n' => Ok(f64::NAN),
        b'-' | b'0'..=b'9' => {
            timestamp_number(parse_number(raw)).ok_or_else(|| fail("timestamp out of range"))
        }
        b'"' => parse_iso_timestamp(&raw_str(raw)?).ok_or_else(|| fail("timestamp format")),
        _ => Err(fail("timestamp type")),
    }
}

fn prediction_value<E: de::Error>(raw: &str) -> Result<Pred<'_>, E> {
    match raw.as_bytes()[0] {
        b'-' | b'0'..=b'9' => match parse_number(raw) {
            Some(Num::Int(i)) => Ok(Pred::Int(i)),
            Some(Num::Float(v)) => Ok(Pred::Float(v)),
            _ => Err(fail("prediction out of range")),
        },
        b'"' => Ok(Pred::Str(raw_str(raw)?)),
        b't' => Ok(Pred::Bool(true)),
        b'f' => Ok(Pred::Bool(false)),
        _ => Err(fail("prediction type")),
    }
}

enum Features<'a> {
    Absent,
    Done(bool),
    /// Met before "model": parsed once the model is known.
    Deferred(&'a str),
}

impl<'c, 's, 'a> Visitor<'a> for EventVisitor<'c, 's, 'a> {
    type Value = Parsed<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Parsed<'a>, A::Error> {
        let EventVisitor { schemas, scratch } = self;
        let mut seen = 0u8;
        let mut event_id = None;
        let mut model: Option<(Cow<'a, str>, Option<usize>)> = None;
        let mut version = None;
        let mut ts = f64::NAN;
        let mut pred = None;
        let mut features = Features::Absent;
        scratch.top_keys.clear();
        while let Some(key) = map.next_key_seed(StrVisitor)? {
            let k = match &*key {
                "event_id" => K_EVENT_ID,
                "model" => K_MODEL,
                "model_version" => K_VERSION,
                "timestamp" => K_TIMESTAMP,
                "prediction" => K_PREDICTION,
                "features" => K_FEATURES,
                _ => 0,
            };
            if k == 0 {
                if !scratch.top_keys.insert(key) {
                    return Err(fail("duplicate key"));
                }
                if !check_raw(raw_value(&mut map)?, 1) {
                    return Err(fail("refused by orjson"));
                }
                continue;
            }
            if seen & k != 0 {
                return Err(fail("duplicate key"));
            }
            seen |= k;
            match k {
                K_EVENT_ID => event_id = Some(map.next_value_seed(StrVisitor)?),
                K_MODEL => {
                    let m = map.next_value_seed(StrVisitor)?;
                    let idx = schemas.lookup(&m);
                    model = Some((m, idx));
                }
                K_VERSION => version = map.next_value_seed(OptStrSeed)?,
                K_TIMESTAMP => ts = timestamp_value(raw_value(&mut map)?)?,
                K_PREDICTION => pred = Some(prediction_value(raw_value(&mut map)?)?),
                _ => {
                    features = match &model {
                        Some((_, Some(idx))) => {
                            Features::Done(map.next_value_seed(FeatureSeed {
                                schema: &schemas.models[*idx],
                                scratch: &mut *scratch,
                            })?)
                        }
                        _ => Features::Deferred(raw_value(&mut map)?),
                    }
                }
            }
        }
        let Some((model, idx)) = model else {
            return Err(fail("no model"));
        };
        let Some(idx) = idx else {
            // Not ours, valid or not: it goes to Python and names no model of `schemas`
            // (a second "model" key would have been refused as a duplicate above).
            return Ok(Parsed::OtherModel);
        };
        let unknown = match features {
            Features::Absent => return Err(fail("no features")),
            Features::Done(u) => u,
            Features::Deferred(raw) => {
                let mut d = serde_json::Deserializer::from_str(raw);
                FeatureSeed {
                    schema: &schemas.models[idx],
                    scratch: &mut *scratch,
                }
                .deserialize(&mut d)
                .map_err(|_| fail("features"))?
            }
        };
        let event_id = event_id.ok_or_else(|| fail("no event_id"))?;
        let nid = event_id.chars().count();
        if nid == 0 || nid > schemas.max_id_chars {
            return Err(fail("event_id length"));
        }
        let nm = model.chars().count();
        if nm == 0 || nm > MAX_MODEL_CHARS {
            return Err(fail("model length"));
        }
        if let Some(v) = &version {
            if v.chars().count() > MAX_VERSION_CHARS {
                return Err(fail("model_version length"));
            }
        }
        let pred = pred.ok_or_else(|| fail("no prediction"))?;
        Ok(Parsed::Simple(
            idx,
            Row {
                event_id,
                version,
                ts,
                pred,
                unknown,
            },
        ))
    }
}

fn parse_simple<'a>(
    text: &'a str,
    schemas: &Schemas,
    scratch: &mut Scratch<'a>,
) -> Result<Parsed<'a>, JsonError> {
    let mut d = serde_json::Deserializer::from_str(text);
    let parsed = d.deserialize_map(EventVisitor { schemas, scratch })?;
    d.end()?;
    Ok(parsed)
}

/// The simple event of model `.0`, or None: the message goes to Python. The reference
/// decoder (serde_json); `scan::decode_message` decides and decodes the same, faster.
fn decode_message_serde<'a>(
    bytes: &'a [u8],
    schemas: &Schemas,
    scratch: &mut Scratch<'a>,
) -> Option<(usize, Row<'a>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    match parse_simple(text, schemas, scratch) {
        Ok(Parsed::Simple(idx, row)) => Some((idx, row)),
        Ok(Parsed::OtherModel) | Err(_) => None,
    }
}

// =============================================================================== batch

/// Columns of one model's simple events.
struct Group<'a> {
    first: usize,
    rows: Vec<usize>,
    ids: Vec<Cow<'a, str>>,
    versions: Vec<Option<Cow<'a, str>>>,
    ts: Vec<f64>,
    preds: Vec<Pred<'a>>,
    /// Row-major (n, numeric).
    num: Vec<f64>,
    /// One column per categorical name.
    cats: Vec<Vec<Option<Cow<'a, str>>>>,
    unknown: usize,
}

impl<'a> Group<'a> {
    /// A group with room for `rows` events (growing past that as needed).
    fn new(first: usize, n_num: usize, n_cat: usize, rows: usize) -> Self {
        Group {
            first,
            rows: Vec::with_capacity(rows),
            ids: Vec::with_capacity(rows),
            versions: Vec::with_capacity(rows),
            ts: Vec::with_capacity(rows),
            preds: Vec::with_capacity(rows),
            num: take_num(rows * n_num),
            cats: (0..n_cat).map(|_| Vec::with_capacity(rows)).collect(),
            unknown: 0,
        }
    }
}

thread_local! {
    /// Numeric buffers of earlier batches, for the next ones. A batch's numeric block is
    /// large (5,000 events x 20 features: 800 kB), and a fresh one comes from the OS page
    /// by page: the page faults cost about a tenth of the decode per event (perf).
    static NUM_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// At most this many buffers, of at most this many values each (8 MB), are kept: at most
/// 32 MB per decoding thread, 0.8 MB for the usual batch of one model.
const NUM_POOL_BUFFERS: usize = 4;
const NUM_POOL_VALUES: usize = 1 << 20;

/// An empty buffer with room for `n` values, from the pool when it has one.
fn take_num(n: usize) -> Vec<f64> {
    let mut v = NUM_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.reserve(n);
    v
}

/// Keeps `v` for a later batch (within the pool's bounds).
fn give_num(v: Vec<f64>) {
    if v.capacity() <= NUM_POOL_VALUES {
        NUM_POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < NUM_POOL_BUFFERS {
                p.push(v);
            }
        });
    }
}

/// One message's decoder: `scan::decode_message` or `decode_message_serde`.
type DecodeMessage = for<'a> fn(&'a [u8], &Schemas, &mut Scratch<'a>) -> Option<(usize, Row<'a>)>;

/// (fallback indices, (model index, group) in order of first message).
fn decode_batch<'a>(
    values: &[&'a [u8]],
    schemas: &Schemas,
    decode_message: DecodeMessage,
) -> (Vec<usize>, Vec<(usize, Group<'a>)>) {
    let mut scratch = Scratch::new(schemas.width);
    let mut groups: Vec<Option<Group<'a>>> = (0..schemas.models.len()).map(|_| None).collect();
    let mut fallback = Vec::new();
    for (i, bytes) in values.iter().enumerate() {
        match decode_message(bytes, schemas, &mut scratch) {
            Some((idx, row)) => {
                let schema = &schemas.models[idx];
                let nn = schema.n_num;
                let g = groups[idx].get_or_insert_with(|| {
                    // Room for the rest of the batch when it is one model's (the usual
                    // case); an equal share of it otherwise.
                    let rows = (values.len() - i) / schemas.models.len();
                    Group::new(i, nn, schema.names.len() - nn, rows)
                });
                g.rows.push(i);
                g.ids.push(row.event_id);
                g.versions.push(row.version);
                g.ts.push(row.ts);
                g.preds.push(row.pred);
                g.num.extend_from_slice(&scratch.num[..nn]);
                for (col, c) in g.cats.iter_mut().zip(scratch.cat.iter_mut()) {
                    col.push(c.take());
                }
                g.unknown += row.unknown as usize;
            }
            None => fallback.push(i),
        }
    }
    let mut out: Vec<(usize, Group<'a>)> = groups
        .into_iter()
        .enumerate()
        .filter_map(|(idx, g)| g.map(|g| (idx, g)))
        .collect();
    out.sort_by_key(|(_, g)| g.first);
    (fallback, out)
}

// =============================================================================== Python

/// A string's length and two windows of its bytes that together cover all of them when
/// it is at most 16 bytes long: then equal tags mean equal strings.
type Tag = (usize, u64, u64);

#[inline]
fn tag(s: &str) -> Tag {
    let b = s.as_bytes();
    let n = b.len();
    let (x, y) = if n >= 8 {
        let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
        x.copy_from_slice(&b[..8]);
        y.copy_from_slice(&b[n - 8..]);
        (u64::from_le_bytes(x), u64::from_le_bytes(y))
    } else if n >= 4 {
        let (mut x, mut y) = ([0u8; 4], [0u8; 4]);
        x.copy_from_slice(&b[..4]);
        y.copy_from_slice(&b[n - 4..]);
        (u32::from_le_bytes(x) as u64, u32::from_le_bytes(y) as u64)
    } else if n > 0 {
        (
            b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16,
            0,
        )
    } else {
        (0, 0)
    };
    (n, x, y)
}

/// Python strings for repeated values (versions, categories, string predictions):
/// one object per distinct value. The first few values are found by a linear scan
/// (columns usually have few) of their tags ([`tag`]: no call to compare bytes when
/// they are short), the rest through a hash map.
struct Interner<'py, 'x> {
    py: Python<'py>,
    few: Vec<(Tag, &'x str, Bound<'py, PyAny>)>,
    map: HashMap<&'x str, Bound<'py, PyAny>>,
}

impl<'py, 'x> Interner<'py, 'x> {
    const FEW: usize = 8;

    fn new(py: Python<'py>) -> Self {
        Interner {
            py,
            few: Vec::with_capacity(Self::FEW),
            map: HashMap::new(),
        }
    }
    #[inline]
    fn get(&mut self, s: &'x str) -> Bound<'py, PyAny> {
        let t = tag(s);
        let long = s.len() > 16;
        if let Some((_, _, o)) = self
            .few
            .iter()
            .find(|(kt, k, _)| *kt == t && (!long || *k == s))
        {
            return o.clone();
        }
        if self.few.len() < Self::FEW {
            let o = PyString::new(self.py, s).into_any();
            self.few.push((t, s, o.clone()));
            return o;
        }
        if let Some(o) = self.map.get(s) {
            return o.clone();
        }
        let o = PyString::new(self.py, s).into_any();
        self.map.insert(s, o.clone());
        o
    }
    fn opt(&mut self, s: &'x Option<Cow<'_, str>>) -> Bound<'py, PyAny> {
        match s {
            Some(s) => self.get(s),
            None => self.py.None().into_bound(self.py),
        }
    }
}

static NUMPY_EMPTY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A new float64 numpy array of `shape` holding `data` (C order).
fn float_array<'py>(
    py: Python<'py>,
    shape: Bound<'py, PyTuple>,
    data: &[f64],
) -> PyResult<Bound<'py, PyAny>> {
    let empty = NUMPY_EMPTY.get_or_try_init(py, || {
        py.import("numpy")?.getattr("empty").map(Bound::unbind)
    })?;
    let arr = empty.bind(py).call1((shape,))?;
    PyBuffer::<f64>::get(&arr)?.copy_from_slice(py, data)?;
    Ok(arr)
}

fn group_to_py<'py>(
    py: Python<'py>,
    g: &Group<'_>,
    schema: &ModelSchema,
    key: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyTuple>> {
    let n = g.rows.len();
    let nn = schema.n_num;
    let mut versions = Interner::new(py);
    let mut labels = Interner::new(py);
    let preds: Vec<Bound<'py, PyAny>> = g
        .preds
        .iter()
        .map(|p| match p {
            Pred::Int(i) => Ok(i.into_pyobject(py)?.into_any()),
            Pred::Float(v) => Ok(PyFloat::new(py, *v).into_any()),
            Pred::Str(s) => Ok(labels.get(s)),
            Pred::Bool(b) => Ok(PyBool::new(py, *b).to_owned().into_any()),
        })
        .collect::<PyResult<_>>()?;
    let cats = g
        .cats
        .iter()
        .map(|col| {
            let mut int = Interner::new(py);
            PyList::new(py, col.iter().map(|c| int.opt(c)))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let items: Vec<Bound<'py, PyAny>> = vec![
        key.clone().into_any(),
        PyList::new(py, &g.rows)?.into_any(),
        PyList::new(py, g.ids.iter().map(|s| PyString::new(py, s)))?.into_any(),
        PyList::new(py, g.versions.iter().map(|v| versions.opt(v)))?.into_any(),
        float_array(py, PyTuple::new(py, [n])?, &g.ts)?,
        PyList::new(py, preds)?.into_any(),
        float_array(py, PyTuple::new(py, [n, nn])?, &g.num)?,
        PyList::new(py, cats)?.into_any(),
        g.unknown.into_pyobject(py)?.into_any(),
    ];
    PyTuple::new(py, items)
}

/// Decode a batch of JSON prediction events straight into per-model columns.
///
/// ``decode_predictions(values: list[bytes], schemas: dict[str, tuple[list[str], list[str]]],
/// max_event_id_chars: int) -> tuple[list[int], list[tuple]]``
///
/// * ``values``: the message values, all ``bytes``.
/// * ``schemas``: model name -> (numeric feature names, categorical feature names).
///   Only models in it are decoded natively. A feature name listed twice for one
///   model raises ValueError.
///
/// Returns ``(fallback, groups)``:
///
/// * ``fallback``: ascending indices of the messages the caller must decode with its
///   Python path.
/// * ``groups``: one tuple per model decoded natively, in the order of the model's
///   first message in the batch: ``(model: str, rows: list[int] (ascending message
///   indices), event_ids: list[str], versions: list[str | None], timestamps:
///   float64 ndarray (n,), predictions: list, numeric: float64 ndarray (n,
///   len(numeric names)) C-contiguous, categorical: list of lists (one per
///   categorical name, n values str | None each), unknown: int)``.
///
/// A message is decoded natively ("simple") only if ALL of these hold:
///
/// 1. Valid UTF-8 and valid JSON exactly as ``orjson.loads`` accepts it (whitespace
///    around the value allowed; no NaN/Infinity; no trailing data; lone surrogate
///    escapes, numbers overflowing a double and nesting deeper than 1024 refused),
///    whose top level is an object, with no duplicate keys (after unescaping) at the
///    top level or inside "features" (duplicates deeper inside ignored values are
///    allowed, as orjson allows them).
/// 2. "event_id": a string of 1..=max_event_id_chars code points (after unescaping).
/// 3. "model": a string of 1..=200 code points that is a key of ``schemas``.
/// 4. "model_version": absent, null (-> None) or a string of at most 200 code points.
/// 5. "timestamp": absent or null -> NaN (the caller substitutes the record time);
///    a JSON number v (integer or float) with 0 <= v < 1e11 (epoch seconds) ->
///    float(v), with 1e11 <= v < 1e14 (epoch milliseconds) -> v / 1000; or a
///    string of the form ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)`` (offset
///    hours 00..23, minutes 00..59) that ``datetime.fromisoformat`` accepts ->
///    ``datetime.fromisoformat(s).timestamp()``, bit for bit. Any other string (even
///    one fromisoformat accepts) makes the message not simple.
/// 6. "features": an object. Numeric names: a JSON integer within int64 (->
///    float(int); "-0" -> +0.0), a float (-> the double orjson gives; "-0.0" ->
///    -0.0) or null (-> NaN); integers outside int64 are not simple. Categorical
///    names: a string or null (-> None). Any other type for a known name is not
///    simple. A key in neither list is unknown: any valid JSON, ignored, and the
///    event counts once in ``unknown``. Absent names -> NaN / None.
/// 7. "prediction": required; an integer within int64 -> int; a float -> float; a
///    string -> str; true/false -> bool. Null, arrays, objects, other integers are
///    not simple.
/// 8. Any other top-level key is ignored (any valid JSON value).
///
/// A message that is not simple goes to ``fallback`` alone: the other messages of its
/// model keep their group (one bad message costs the compiled path one message). The
/// caller merges what its Python path makes of the fallback messages, in message order.
///
/// Parsing runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (values, schemas, max_event_id_chars, /))]
fn decode_predictions<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    schemas: &Bound<'py, PyDict>,
    max_event_id_chars: i64,
) -> PyResult<Bound<'py, PyTuple>> {
    decode_with(
        py,
        values,
        schemas,
        max_event_id_chars,
        scan::decode_message,
    )
}

/// decode_predictions_serde(values, schemas, max_event_id_chars, /)
/// --
///
/// :func:`decode_predictions` by the serde_json decoder it replaced (the reference of
/// the scanner in ``tests/test_native_scan.py`` and in ``bench.decode_path``): the same
/// contract, the same result for every input, slower.
#[pyfunction]
#[pyo3(signature = (values, schemas, max_event_id_chars, /))]
fn decode_predictions_serde<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    schemas: &Bound<'py, PyDict>,
    max_event_id_chars: i64,
) -> PyResult<Bound<'py, PyTuple>> {
    decode_with(
        py,
        values,
        schemas,
        max_event_id_chars,
        decode_message_serde,
    )
}

// The single-pass scanner behind `decode_predictions`.
mod scan;

fn decode_with<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    schemas: &Bound<'py, PyDict>,
    max_event_id_chars: i64,
    decode_message: DecodeMessage,
) -> PyResult<Bound<'py, PyTuple>> {
    let (schemas, keys) = Schemas::from_py(schemas, max_event_id_chars)?;
    // The list keeps every bytes object alive while we hold it; bytes are immutable.
    let items: Vec<Bound<'py, PyBytes>> = values
        .iter()
        .map(|v| {
            v.cast_into::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("values must all be bytes"))
        })
        .collect::<PyResult<_>>()?;
    let slices: Vec<&[u8]> = items.iter().map(|b| b.as_bytes()).collect();

    let (fallback, groups) = py.detach(|| decode_batch(&slices, &schemas, decode_message));

    let groups_py = groups
        .iter()
        .map(|(idx, g)| group_to_py(py, g, &schemas.models[*idx], &keys[*idx]))
        .collect::<PyResult<Vec<_>>>()?;
    for (_, g) in groups {
        give_num(g.num);
    }
    PyTuple::new(
        py,
        [
            PyList::new(py, fallback)?.into_any(),
            PyList::new(py, groups_py)?.into_any(),
        ],
    )
}

#[pymodule]
fn monitor_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_predictions_serde, m)?)?;
    m.add_function(wrap_pyfunction!(decode_predictions, m)?)?;
    ks::register(m)?;
    summary::register(m)?;
    sort::register(m)?;
    let doc: String = m
        .getattr("decode_predictions")?
        .getattr("__doc__")?
        .extract()?;
    m.setattr(
        "__doc__",
        format!(
            "Native (Rust) batch decoder of JSON prediction events, and the KS kernel\n\
             (ks_statistic_sorted, ks_statistics_sorted), the window's summaries and PSI\n\
             (summarize_sorted, psi_sorted_many) and its column sort (sort_columns);\n\
             see their docstrings.\n\n\
             The decoder, decode_predictions, and its contract:\n\n{doc}"
        ),
    )?;
    Ok(())
}
