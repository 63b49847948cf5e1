//! The single-pass scanner behind `decode_predictions` (issue 19).
//!
//! It decides exactly what the serde_json decoder (`decode_message_serde` in lib.rs, kept
//! as the reference: `decode_predictions_serde`) decides, message for message, and yields
//! the same values; it only gets there in one walk over the bytes, without serde's
//! visitors, `RawValue` re-reads or a second pass per ignored value.
//!
//! Why "the same" holds. Every way the reference refuses a message ends in the same
//! place (the message is handed back, with no reason attached), so only the predicate
//! "simple" and the values of simple messages matter. The reference accepts a message
//! exactly when:
//!
//! * the whole message is UTF-8 (checked first, here too, with the same
//!   `std::str::from_utf8`);
//! * the JSON grammar holds as serde_json reads it, which is RFC 8259's: whitespace is
//!   space, tab, CR, LF; numbers `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`;
//!   strings without raw control characters, with the escapes `\" \\ \/ \b \f \n \r \t
//!   \uXXXX`; literals `true`, `false`, `null`; nothing after the top-level value;
//! * every string is free of lone surrogate escapes (serde_json's validating string
//!   parser for the strings it keeps, `check_raw` for the ignored ones; both refuse a low
//!   surrogate first, and a high one not followed by `\u` and a low one);
//! * every number is finite as a double (`parse_number` is Some), and no point is more
//!   than 1024 containers deep (`check_raw`; serde_json's own skipping has no limit);
//! * no duplicate key (after unescaping) at the top level or in "features";
//! * the field rules of `decode_predictions`'s contract.
//!
//! The scanner checks the same things, strictly, everywhere (the reference checks
//! ignored and kept values by different routes, but to the same rules), and computes the
//! kept values with the same functions: `parse_number` (or, for numbers of at most 19
//! digits, the same arithmetic fused into the scan, falling back to `parse_number`
//! wherever its Clinger path does not apply), `parse_iso_timestamp`,
//! `timestamp_number`. `tests/test_native_scan.py` holds the two decoders to each
//! other on generated and hostile messages, and so does the `tests` module below (listed
//! hostile messages, every prefix and single-byte damage of valid ones), which also holds
//! the fused number scan to `parse_number`.

use std::borrow::Cow;

use crate::{
    hex4, parse_iso_timestamp, parse_number, timestamp_number, ModelSchema, Num, Pred, Row,
    Schemas, Scratch, MAX_DEPTH, MAX_MODEL_CHARS, MAX_VERSION_CHARS, POW10,
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A high bit in each byte of `w` that is `"`, `\` or a control character; the lowest set
/// bit always marks the first such byte (the borrow of the subtraction only reaches bytes
/// above a true match).
#[inline(always)]
fn specials(w: u64) -> u64 {
    let q = w ^ (ONES * b'"' as u64);
    let s = w ^ (ONES * b'\\' as u64);
    ((q.wrapping_sub(ONES) & !q) | (s.wrapping_sub(ONES) & !s) | (w.wrapping_sub(ONES * 0x20) & !w))
        & HIGHS
}

/// A string's content as it sits in the message (between the quotes).
#[derive(Clone, Copy)]
struct RawStr<'a> {
    text: &'a str,
    escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The string's value, unescaped.
    #[inline]
    fn value(self) -> Option<Cow<'a, str>> {
        if self.escaped {
            unescape(self.text).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(self.text))
        }
    }
}

/// `raw` (a string's content whose escapes [`Cursor::string`] has checked) unescaped.
fn unescape(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let Some(j) = raw[i..].find('\\').map(|j| i + j) else {
            out.push_str(&raw[i..]);
            break;
        };
        out.push_str(&raw[i..j]);
        let c = *b.get(j + 1)?;
        i = j + 2;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\x08',
            b'f' => '\x0c',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let u = hex4(b.get(i..)?)?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&u) {
                    let lo = hex4(b.get(i + 2..)?)?;
                    i += 6;
                    0x10000 + (((u - 0xD800) << 10) | (lo - 0xDC00))
                } else {
                    u
                };
                char::from_u32(cp)?
            }
            _ => return None,
        };
        out.push(ch);
    }
    Some(out)
}

/// Code points of a string value.
#[inline]
fn chars(value: &str) -> usize {
    if value.is_ascii() {
        value.len()
    } else {
        value.chars().count()
    }
}

struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// The byte at the cursor, 0 at the end (a 0 byte is never valid where a value or a
    /// delimiter is expected).
    #[inline(always)]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    /// Skips whitespace; the next byte (not consumed).
    #[inline(always)]
    fn ws(&mut self) -> u8 {
        loop {
            let c = self.peek();
            if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return c;
            }
            self.i += 1;
        }
    }

    /// Consumes `c` after optional whitespace.
    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.ws() == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// The string whose opening quote is at the cursor, checked (control characters,
    /// escapes, surrogate pairs); the cursor moves past its closing quote.
    #[inline]
    fn string(&mut self) -> Option<RawStr<'a>> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            if let Some(chunk) = b.get(i..i + 8) {
                let m = specials(u64::from_le_bytes(chunk.try_into().ok()?));
                if m == 0 {
                    i += 8;
                    continue;
                }
                i += (m.trailing_zeros() / 8) as usize;
            } else {
                while matches!(b.get(i), Some(&c) if c >= 0x20 && c != b'"' && c != b'\\') {
                    i += 1;
                }
            }
            match *b.get(i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i = escape_end(b, i + 1)?;
                }
                _ => return None, // a control character
            }
        }
        self.i = i + 1;
        Some(RawStr {
            text: self.text.get(start..i)?,
            escaped,
        })
    }

    /// The number at the cursor, as `parse_number` gives it (None: bad grammar, or a
    /// double that overflows).
    #[inline(always)]
    fn number(&mut self) -> Option<Num> {
        let b = self.b;
        let start = self.i;
        let neg = b.get(start) == Some(&b'-');
        let int_start = start + neg as usize;
        if let Some(v) = self.short_number(int_start, neg) {
            return v;
        }
        // Digits are taken up to 8 at a time (no branch per digit: producers' numbers
        // vary in length, and a mispredicted loop exit per part cost more than the rest).
        let (mut m, mut i) = digits(b, int_start, 0);
        match i - int_start {
            0 => return None,
            1 => {}
            _ if b[int_start] == b'0' => return None, // a leading zero
            _ => {}
        }
        let mut ndig = i - int_start;
        let mut float = false;
        let mut e: i64 = 0;
        if b.get(i) == Some(&b'.') {
            float = true;
            let frac_start = i + 1;
            (m, i) = digits(b, frac_start, m);
            if i == frac_start {
                return None;
            }
            ndig += i - frac_start;
            e = -((i - frac_start) as i64);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            float = true;
            i += 1;
            let eneg = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'-' | b'+')) {
                i += 1;
            }
            let exp_start = i;
            let mut x: i64 = 0;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                x = (x * 10 + (c - b'0') as i64).min(1 << 40);
                i += 1;
            }
            if i == exp_start {
                return None;
            }
            e += if eneg { -x } else { x };
        }
        self.i = i;
        // At most 19 digits: no overflow above, so `m` and `e` are parse_number's.
        if ndig <= 19 {
            if !float {
                if !neg && m <= i64::MAX as u64 {
                    return Some(Num::Int(m as i64));
                }
                if neg && m <= 1u64 << 63 {
                    return Some(Num::Int((m as i64).wrapping_neg()));
                }
                return Some(Num::BigInt);
            }
            if m <= 1u64 << 53 && (-22..=22).contains(&e) {
                let mf = m as f64;
                let v = if e < 0 {
                    mf / POW10[(-e) as usize]
                } else {
                    mf * POW10[e as usize]
                };
                return Some(Num::Float(if neg { -v } else { v }));
            }
        }
        parse_number(self.text.get(start..i)?)
    }

    /// The usual number, at most 8 digits before the point and 8 after it and no
    /// exponent, read from 16 bytes at once: where its parts end comes from one mask of
    /// the non-digits, so the cursor does not wait on a chain of per-part scans. None
    /// when it does not apply ([`Cursor::number`] reads it then); otherwise what
    /// `number` gives, the cursor moved past the number.
    #[inline(always)]
    fn short_number(&mut self, at: usize, neg: bool) -> Option<Option<Num>> {
        let chunk = self.b.get(at..at + 16)?;
        let lo = u64::from_le_bytes(chunk[..8].try_into().ok()?);
        let hi = u64::from_le_bytes(chunk[8..].try_into().ok()?);
        let mask = nondigits(lo) | nondigits(hi) << 8 | 1 << 16;
        let k1 = mask.trailing_zeros() as usize;
        if k1 == 0 || k1 > 8 || (k1 > 1 && chunk[0] == b'0') {
            return None; // the general path refuses, or reads, these
        }
        let int = digits_value(lo, k1);
        match chunk[k1] {
            b'.' => {}
            b'e' | b'E' => return None,
            _ => {
                self.i = at + k1;
                // At most 8 digits: an int64.
                return Some(Some(Num::Int(if neg { -(int as i64) } else { int as i64 })));
            }
        }
        let k2 = (mask >> (k1 + 1)).trailing_zeros() as usize;
        let end = k1 + 1 + k2;
        if k2 == 0 || k2 > 8 || end >= 16 || matches!(chunk[end], b'e' | b'E') {
            return None;
        }
        let words = (hi as u128) << 64 | lo as u128;
        let frac = (words >> (8 * (k1 + 1))) as u64;
        let m = int * POW10_INT[k2] + digits_value(frac, k2);
        // At most 16 digits (m <= 2^53 is checked, as parse_number does) and e >= -8:
        // Clinger's path, one correctly rounded division.
        if m > 1u64 << 53 {
            return None;
        }
        self.i = at + end;
        let v = m as f64 / POW10[k2];
        Some(Some(Num::Float(if neg { -v } else { v })))
    }

    /// Skips the value at the cursor, checking it as orjson would: grammar, strings,
    /// finite numbers, and at most [`MAX_DEPTH`] containers open counting the `depth`
    /// that enclose it.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        // One bit per open container: set for an object.
        let mut stack = [0u64; MAX_DEPTH / 64 + 1];
        let mut d = 0usize;
        loop {
            // A value is expected at the cursor (after whitespace).
            match self.ws() {
                open @ (b'{' | b'[') => {
                    d += 1;
                    if depth + d > MAX_DEPTH {
                        return None;
                    }
                    let obj = open == b'{';
                    let (w, bit) = (d / 64, 1u64 << (d % 64));
                    stack[w] = if obj { stack[w] | bit } else { stack[w] & !bit };
                    self.i += 1;
                    let close = if obj { b'}' } else { b']' };
                    if self.ws() == close {
                        self.i += 1;
                        d -= 1;
                    } else {
                        if obj {
                            self.key_colon()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // After a value: close containers until one continues with a comma.
            loop {
                if d == 0 {
                    return Some(());
                }
                let obj = stack[d / 64] & (1u64 << (d % 64)) != 0;
                match self.ws() {
                    b',' => {
                        self.i += 1;
                        if obj {
                            self.key_colon()?;
                        }
                        break;
                    }
                    b'}' if obj => {
                        self.i += 1;
                        d -= 1;
                    }
                    b']' if !obj => {
                        self.i += 1;
                        d -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A key of an ignored object, and its colon.
    #[inline]
    fn key_colon(&mut self) -> Option<()> {
        if self.ws() != b'"' {
            return None;
        }
        self.string()?;
        self.eat(b':')
    }

    /// After a member: `true` at a comma (the cursor then at the next key's quote), `false`
    /// at the closing brace (consumed).
    #[inline(always)]
    fn next_member(&mut self) -> Option<bool> {
        match self.ws() {
            b',' => {
                self.i += 1;
                if self.ws() == b'"' {
                    Some(true)
                } else {
                    None
                }
            }
            b'}' => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A key at the cursor (its opening quote), then its colon and the whitespace after it.
    #[inline(always)]
    fn key(&mut self) -> Option<RawStr<'a>> {
        let k = self.string()?;
        self.eat(b':')?;
        self.ws();
        Some(k)
    }

    /// A string or null (a value at the cursor).
    #[inline]
    fn opt_string(&mut self) -> Option<Option<RawStr<'a>>> {
        match self.peek() {
            b'"' => Some(Some(self.string()?)),
            b'n' => {
                self.literal(b"null")?;
                Some(None)
            }
            _ => None,
        }
    }

    /// Whether the key at the cursor (its opening quote) is feature `slot` of `schema`,
    /// compared in place; if so the cursor moves past its closing quote. Producers
    /// usually write the features in schema order, so this is tried with the next name.
    #[inline(always)]
    fn is_key(&mut self, schema: &ModelSchema, slot: usize) -> bool {
        let (Some(name), Some(&plain)) = (schema.names.get(slot), schema.plain.get(slot)) else {
            return false;
        };
        let (word, mask) = schema.key_words[slot];
        let at = self.i + 1;
        let found = match self.b.get(at..at + 8) {
            Some(chunk) if mask != 0 => {
                u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) & mask == word
            }
            _ => {
                plain
                    && self.b.get(at..at + name.len()) == Some(name.as_bytes())
                    && self.b.get(at + name.len()) == Some(&b'"')
            }
        };
        if found {
            self.i = at + name.len() + 1;
        }
        found
    }

    /// The "features" object at the cursor, of a model with `schema`, into the scratch
    /// rows; whether it had a key outside the schema.
    fn features(&mut self, schema: &ModelSchema, scratch: &mut Scratch<'a>) -> Option<bool> {
        if self.peek() != b'{' {
            return None;
        }
        self.i += 1;
        let stamp = scratch.begin_features(schema);
        let nn = schema.n_num;
        let mut unknown = false;
        let mut expect = 0;
        match self.ws() {
            b'}' => {
                self.i += 1;
                return Some(false);
            }
            b'"' => {}
            _ => return None,
        }
        loop {
            // The cursor is at a key's opening quote.
            let slot = if self.is_key(schema, expect) {
                self.eat(b':')?;
                self.ws();
                Some(expect)
            } else {
                let key = self.key()?.value()?;
                match schema.slot(&key, expect) {
                    Some(slot) => Some(slot),
                    None => {
                        if !scratch.feature_keys.insert(key) {
                            return None;
                        }
                        None
                    }
                }
            };
            match slot {
                None => {
                    unknown = true;
                    self.skip_value(2)?;
                }
                Some(slot) => {
                    if scratch.seen[slot] == stamp {
                        return None;
                    }
                    scratch.seen[slot] = stamp;
                    expect = slot + 1;
                    if slot < nn {
                        scratch.num[slot] = match self.peek() {
                            b'n' => {
                                self.literal(b"null")?;
                                f64::NAN
                            }
                            b'-' | b'0'..=b'9' => match self.number()? {
                                Num::Int(i) => i as f64, // as float(int): round half to even
                                Num::Float(v) => v,
                                Num::BigInt => return None,
                            },
                            _ => return None,
                        };
                    } else {
                        scratch.cat[slot - nn] = match self.opt_string()? {
                            Some(s) => Some(s.value()?),
                            None => None,
                        };
                    }
                }
            }
            if !self.next_member()? {
                return Some(unknown);
            }
        }
    }
}

/// The end of the escape whose letter is at `b[i]` (after the backslash), checked as
/// serde_json's validating parser checks it: a surrogate escape must be a high one
/// followed at once by an escaped low one.
#[inline]
fn escape_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => {
            let u = hex4(b.get(i + 1..)?)?;
            let i = i + 5;
            if (0xDC00..0xE000).contains(&u) {
                return None; // a low surrogate first
            }
            if !(0xD800..0xDC00).contains(&u) {
                return Some(i);
            }
            if b.get(i..i + 2)? != b"\\u" {
                return None;
            }
            let lo = hex4(b.get(i + 2..)?)?;
            (0xDC00..0xE000).contains(&lo).then_some(i + 6)
        }
        _ => None,
    }
}

/// A feature name's JSON key (its bytes then the closing quote) as a little-endian word
/// and the mask of its bytes, when the name is plain and at most 7 bytes long; else
/// (0, 0).
pub(crate) fn key_word(name: &str) -> (u64, u64) {
    let b = name.as_bytes();
    if b.len() > 7 || b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\') {
        return (0, 0);
    }
    let mut bytes = [0u8; 8];
    bytes[..b.len()].copy_from_slice(b);
    bytes[b.len()] = b'"';
    let mask = u64::MAX >> (8 * (7 - b.len()));
    (u64::from_le_bytes(bytes), mask)
}

const POW10_INT: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// How many of the (up to 8) bytes of `w` lead with ASCII digits.
#[inline(always)]
fn leading_digits(w: u64) -> usize {
    // A byte is a digit when its high nibble is 3 and its low nibble at most 9; no carry
    // crosses a byte in either test.
    let hi = (w & (ONES * 0xF0)) ^ (ONES * 0x30);
    let lo = ((w & (ONES * 0x0F)) + ONES * 0x06) & (ONES * 0x10);
    let bad = hi | lo;
    let flags = (((bad & (ONES * 0x7F)) + ONES * 0x7F) | bad) & HIGHS;
    (flags.trailing_zeros() / 8) as usize
}

/// One bit per byte of `w` (bit j for byte j) that is not an ASCII digit.
#[inline(always)]
fn nondigits(w: u64) -> u32 {
    let hi = (w & (ONES * 0xF0)) ^ (ONES * 0x30);
    let lo = ((w & (ONES * 0x0F)) + ONES * 0x06) & (ONES * 0x10);
    let bad = hi | lo;
    let flags = (((bad & (ONES * 0x7F)) + ONES * 0x7F) | bad) & HIGHS;
    // Gathers the 8 flags into the top byte (no two partial products meet).
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// The value of `k` <= 8 leading digit bytes of `w` (first byte most significant).
#[inline(always)]
fn digits_value(w: u64, k: usize) -> u64 {
    if k == 0 {
        return 0;
    }
    let v = (w & (ONES * 0x0F)) << (8 * (8 - k));
    let v = (v.wrapping_mul(10 * 256 + 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100 * 65536 + 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    v.wrapping_mul(10000 * (1 << 32) + 1) >> 32
}

/// Reads the digits from `b[i]` on into `m` (`m * 10 + digit` each, wrapping): (m, the
/// index after the last digit).
#[inline(always)]
fn digits(b: &[u8], mut i: usize, mut m: u64) -> (u64, usize) {
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let k = leading_digits(w);
        m = m
            .wrapping_mul(POW10_INT[k])
            .wrapping_add(digits_value(w, k));
        i += k;
        if k < 8 {
            return (m, i);
        }
    }
    while let Some(&c @ b'0'..=b'9') = b.get(i) {
        m = m.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        i += 1;
    }
    (m, i)
}

const K_EVENT_ID: u8 = 1;
const K_MODEL: u8 = 2;
const K_VERSION: u8 = 4;
const K_TIMESTAMP: u8 = 8;
const K_PREDICTION: u8 = 16;
const K_FEATURES: u8 = 32;

#[inline(always)]
fn top_key(k: &str) -> u8 {
    match k {
        "event_id" => K_EVENT_ID,
        "model" => K_MODEL,
        "model_version" => K_VERSION,
        "timestamp" => K_TIMESTAMP,
        "prediction" => K_PREDICTION,
        "features" => K_FEATURES,
        _ => 0,
    }
}

/// The simple event of model `.0`, or None: the message goes to Python. Same answer as
/// `decode_message_serde`.
pub(crate) fn decode_message<'a>(
    bytes: &'a [u8],
    schemas: &Schemas,
    scratch: &mut Scratch<'a>,
) -> Option<(usize, Row<'a>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut cur = Cursor {
        text,
        b: bytes,
        i: 0,
    };
    cur.eat(b'{')?;
    if cur.ws() != b'"' {
        return None; // `{}` has no model; anything else is not JSON
    }
    let mut seen = 0u8;
    let mut event_id: Option<RawStr<'a>> = None;
    let mut model: Option<(RawStr<'a>, usize)> = None;
    let mut version: Option<RawStr<'a>> = None;
    let mut ts = f64::NAN;
    let mut pred = None;
    let mut features: Option<bool> = None;
    // "features" met before "model": its offset, decoded once the model is known.
    let mut deferred: Option<usize> = None;
    scratch.top_keys.clear();
    loop {
        let raw = cur.key()?;
        let key = raw.value()?;
        let k = top_key(&key);
        if k == 0 {
            if !scratch.top_keys.insert(key) {
                return None;
            }
            cur.skip_value(1)?;
        } else {
            if seen & k != 0 {
                return None;
            }
            seen |= k;
            match k {
                K_EVENT_ID => {
                    if cur.peek() != b'"' {
                        return None;
                    }
                    event_id = Some(cur.string()?);
                }
                K_MODEL => {
                    if cur.peek() != b'"' {
                        return None;
                    }
                    let m = cur.string()?;
                    // A model outside `schemas` goes to Python, valid or not.
                    let idx = schemas.lookup(&m.value()?)?;
                    model = Some((m, idx));
                }
                K_VERSION => version = cur.opt_string()?,
                K_TIMESTAMP => {
                    ts = match cur.peek() {
                        b'n' => {
                            cur.literal(b"null")?;
                            f64::NAN
                        }
                        b'-' | b'0'..=b'9' => timestamp_number(cur.number())?,
                        b'"' => parse_iso_timestamp(&cur.string()?.value()?)?,
                        _ => return None,
                    }
                }
                K_PREDICTION => {
                    pred = Some(match cur.peek() {
                        b'-' | b'0'..=b'9' => match cur.number()? {
                            Num::Int(i) => Pred::Int(i),
                            Num::Float(v) => Pred::Float(v),
                            Num::BigInt => return None,
                        },
                        b'"' => Pred::Str(cur.string()?.value()?),
                        b't' => {
                            cur.literal(b"true")?;
                            Pred::Bool(true)
                        }
                        b'f' => {
                            cur.literal(b"false")?;
                            Pred::Bool(false)
                        }
                        _ => return None,
                    })
                }
                _ => match &model {
                    Some((_, idx)) => {
                        features = Some(cur.features(&schemas.models[*idx], scratch)?);
                    }
                    None => {
                        deferred = Some(cur.i);
                        cur.skip_value(1)?;
                    }
                },
            }
        }
        if !cur.next_member()? {
            break;
        }
    }
    if cur.ws() != 0 || cur.i != bytes.len() {
        return None; // trailing data (or a 0 byte)
    }
    let (model, idx) = model?;
    if let Some(at) = deferred {
        let mut again = Cursor {
            text,
            b: bytes,
            i: at,
        };
        features = Some(again.features(&schemas.models[idx], scratch)?);
    }
    let unknown = features?;
    let event_id = event_id?.value()?;
    let nid = chars(&event_id);
    if nid == 0 || nid > schemas.max_id_chars {
        return None;
    }
    let model = model.value()?;
    let nm = chars(&model);
    if nm == 0 || nm > MAX_MODEL_CHARS {
        return None;
    }
    let version = match version {
        Some(v) => {
            let value = v.value()?;
            if chars(&value) > MAX_VERSION_CHARS {
                return None;
            }
            Some(value)
        }
        None => None,
    };
    Some((
        idx,
        Row {
            event_id,
            version,
            ts,
            pred: pred?,
            unknown,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `number` on `text`, alone and followed by other bytes (which the 16-byte path
    /// reads): the same, and the whole text taken (else None, as a grammar error).
    fn fused(text: &str) -> Option<Option<Num>> {
        let mut out = vec![];
        for tail in [
            "",
            "}",
            ",\"abcdefghijklmnopq\":1}",
            "e",
            ".5e1 0123456789012345",
        ] {
            let padded = format!("{text}{tail}");
            let mut c = Cursor {
                text: &padded,
                b: padded.as_bytes(),
                i: 0,
            };
            let n = c.number();
            // Refused, or taken whole (anything else: a longer token was read).
            out.push((n.is_none() || c.i == text.len()).then_some(n));
        }
        // A number followed by "e" or ".5e1" is another (longer) token: only the first
        // three tails end the number.
        for o in &out[1..3] {
            match (o, &out[0]) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!(same(a, b), "{text}"),
                _ => panic!("{text}: {:?} vs {:?}", o.is_some(), out[0].is_some()),
            }
        }
        out.swap_remove(0)
    }

    fn same(a: &Option<Num>, b: &Option<Num>) -> bool {
        match (a, b) {
            (None, None) | (Some(Num::BigInt), Some(Num::BigInt)) => true,
            (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
            (Some(Num::Float(x)), Some(Num::Float(y))) => x.to_bits() == y.to_bits(),
            _ => false,
        }
    }

    /// The fused scan gives parse_number's value, bit for bit, on valid numbers.
    #[test]
    fn fused_number_is_parse_number() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "9007199254740992",
            "9007199254740993",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "123456.789e3",
            "0.1",
            "0.30000000000000004",
            "1e308",
            "1.7976931348623157e308",
            "1.8e308",
            "1e400",
            "-1e400",
            "4.9e-324",
            "1e-400",
            "2.2250738585072014e-308",
            "1234567890123456789",
            "12345678901234567890",
            "1234567890123456789.5",
            "0.0000000000000000001",
            "9007199254740993.0",
            "9007199254740993e0",
            "41.0756",
            "1E5",
            "1e+5",
            "1e-5",
            "1e0000000000000000000000000000005",
            "1e99999999999999999999",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.push(format!("1{}", "0".repeat(400)));
        cases.push(format!("0.{}1", "0".repeat(400)));
        // A deterministic spread of mantissas and exponents.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 22) as usize + 1;
            let m = format!("{}", x >> 3);
            let m = &m[..digits.min(m.len())];
            let dot = (x >> 40) as usize % (m.len() + 1);
            let e = (x >> 50) as i64 % 60 - 30;
            let mut s = String::new();
            if x & 1 == 1 {
                s.push('-');
            }
            if dot == 0 || dot == m.len() {
                s.push_str(m);
            } else {
                s.push_str(&format!("{}.{}", &m[..dot], &m[dot..]));
            }
            if x & 2 == 2 {
                s.push_str(&format!("e{e}"));
            }
            if s.trim_start_matches('-').starts_with('0') && s.len() > 1 {
                continue; // leading zeros are not JSON
            }
            cases.push(s);
        }
        for s in &cases {
            let got = fused(s).unwrap_or_else(|| panic!("{s} refused"));
            assert!(got.is_some() || parse_number(s).is_none(), "{s}");
            assert!(same(&got, &parse_number(s)), "{s}");
        }
    }

    #[test]
    fn fused_number_refuses_bad_grammar() {
        for s in [
            "-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "1.e5", "--1",
        ] {
            assert!(!matches!(fused(s), Some(Some(_))), "{s}");
        }
    }

    #[test]
    fn nondigits_every_byte() {
        for c in 0..=255u8 {
            for at in 0..8 {
                let mut bytes = *b"01234567";
                bytes[at] = c;
                let got = nondigits(u64::from_le_bytes(bytes));
                let want = if c.is_ascii_digit() { 0 } else { 1 << at };
                assert_eq!(got, want, "{c} at {at}");
            }
        }
    }

    #[test]
    fn digits_match_a_loop() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Digits, and now and then one of the bytes around them.
            let bytes: Vec<u8> = (0..(x % 24) as usize)
                .map(|j| {
                    let r = (x >> (j % 60)) as u8;
                    if r % 7 == 0 {
                        [b'.', b'/', b':', b'e', b'"', 0xB0, 0x39 + 0x80][(r / 7 % 7) as usize]
                    } else {
                        b'0' + r % 10
                    }
                })
                .collect();
            for at in 0..bytes.len().min(3) {
                let (mut m, mut i) = (7u64, at);
                while let Some(&c @ b'0'..=b'9') = bytes.get(i) {
                    m = m.wrapping_mul(10).wrapping_add((c - b'0') as u64);
                    i += 1;
                }
                assert_eq!(digits(&bytes, at, 7), (m, i), "{bytes:?} at {at}");
            }
        }
    }

    fn schemas() -> Schemas {
        let entry = |name: &str, num: &[&str], cat: &[&str]| {
            let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
            (name.to_string(), v(num), v(cat))
        };
        Schemas::new(
            vec![
                entry("m0", &["f0", "f1", "f2"], &["c0", "c1"]),
                entry(
                    "m\u{e9}",
                    &["\u{e9}", "a_much_longer_name", "q\"t", "b\\s"],
                    &["t\t"],
                ),
                entry("m1", &[], &["c0"]),
            ],
            12,
        )
        .unwrap()
    }

    /// One message's outcome, written out exactly (floats as bits).
    fn outcome(decode: crate::DecodeMessage, msg: &[u8], schemas: &Schemas) -> String {
        let mut scratch = Scratch::new(schemas.width);
        let Some((idx, row)) = decode(msg, schemas, &mut scratch) else {
            return "not simple".to_string();
        };
        let m = &schemas.models[idx];
        let pred = match row.pred {
            Pred::Int(i) => format!("int {i}"),
            Pred::Float(v) => format!("float {:x}", v.to_bits()),
            Pred::Str(s) => format!("str {s:?}"),
            Pred::Bool(b) => format!("bool {b}"),
        };
        let num: Vec<String> = scratch.num[..m.n_num]
            .iter()
            .map(|v| format!("{:x}", if v.is_nan() { 0 } else { v.to_bits() }))
            .collect();
        format!(
            "{idx} {:?} {:?} {:x} {pred} {} {num:?} {:?}",
            row.event_id,
            row.version,
            row.ts.to_bits(),
            row.unknown,
            &scratch.cat[..m.names.len() - m.n_num],
        )
    }

    /// The scanner and the serde_json decoder agree on every message below: listed
    /// hostile ones, every prefix of some valid ones, and single-byte damage of them at
    /// every position.
    #[test]
    fn scanner_agrees_with_serde_json() {
        let schemas = schemas();
        let valid: Vec<String> = vec![
            r#"{"event_id":"e1","model":"m0","model_version":"v1","timestamp":"2026-11-01T00:00:00.123Z","features":{"f0":41.0756,"f1":-0.5,"f2":12345678.87654321,"c0":"low","c1":null},"prediction":0.731}"#.into(),
            r#" { "features" : { "c1" : "x" , "f2" : -0 , "zz" : [ 1 , { "a" : null } ] } , "model" : "m0" , "event_id" : "\u00e9\ud83d\ude00" , "timestamp" : 1790000000123 , "prediction" : "yes" , "extra" : [ ] } "#.into(),
            "{\"event_id\":\"x\",\"model\":\"m\u{e9}\",\"features\":{\"\u{e9}\":1e5,\"a_much_longer_name\":2,\"q\\\"t\":3.5,\"b\\\\s\":null,\"t\\t\":\"v\"},\"prediction\":true}".into(),
            r#"{"event_id":"e","model":"m1","features":{"c0":"a\nb"},"prediction":-9223372036854775808,"timestamp":null,"model_version":null}"#.into(),
        ];
        let mut messages: Vec<Vec<u8>> = vec![];
        let hostile: &[&[u8]] = &[
            b"", b"{}", b"null", b"[]", b"\xef\xbb\xbf{}", b"{\"model\":\"m0\"}",
            br#"{"event_id":"e","model":"m0","features":{},"prediction":1e400}"#,
            br#"{"event_id":"e","model":"m0","features":{},"prediction":NaN}"#,
            br#"{"event_id":"e","model":"m0","features":{},"prediction":1,"x":"\udc00"}"#,
            br#"{"event_id":"e","model":"m0","features":{},"prediction":1,"x":"\ud800\u0041"}"#,
            br#"{"event_id":"e","model":"m0","features":{"f0":1,"f\u0030":2},"prediction":1}"#,
            br#"{"event_id":"e","model":"m0","features":{"x":1,"x":2},"prediction":1}"#,
            br#"{"event_id":"e","model":"m0","features":{},"prediction":1,"a":1,"\u0061":2}"#,
            br#"{"event_id":"e","model":"m0","features":{"f0":01},"prediction":1}"#,
            br#"{"event_id":"e","model":"m0","features":{"f0":1.},"prediction":1}"#,
            br#"{"event_id":"e","model":"m0","features":{"f0":18446744073709551616},"prediction":1}"#,
            br#"{"event_id":"e","model":"m0","features":{"f0":-0.0,"f1":-0},"prediction":1}"#,
            br#"{"event_id":"0123456789abc","model":"m0","features":{},"prediction":1}"#,
            br#"{"event_id":"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9","model":"m0","features":{},"prediction":1}"#,
        ];
        messages.extend(hostile.iter().map(|m| m.to_vec()));
        for depth in [1022, 1023, 1024] {
            let nest = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            for at in ["\"x\":", "\"features\":{\"x\":"] {
                let close = if at.contains("features") { "}" } else { "" };
                messages.push(
                    format!(
                        r#"{{"event_id":"e","model":"m0","prediction":1,{at}{nest}{close}{}}}"#,
                        if close.is_empty() {
                            r#","features":{}"#
                        } else {
                            ""
                        }
                    )
                    .into_bytes(),
                );
            }
        }
        let damage: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"[",
            b",",
            b":",
            b"0",
            b"9",
            b"-",
            b".",
            b"e",
            b" ",
            b"\x00",
            b"\x1f",
            b"\xff",
            b"\xc3",
            b"\xed\xa0\x80",
            b"\\u",
            b"n",
        ];
        for v in &valid {
            let v = v.as_bytes();
            for i in 0..=v.len() {
                messages.push(v[..i].to_vec());
                for d in damage {
                    let mut replaced = v[..i].to_vec();
                    replaced.extend_from_slice(d);
                    messages.push([&replaced[..], v.get(i + 1..).unwrap_or(&[])].concat());
                    messages.push([&replaced[..], v.get(i..).unwrap_or(&[])].concat());
                }
            }
        }
        let (mut simple, mut not) = (0, 0);
        for m in &messages {
            let new = outcome(decode_message, m, &schemas);
            let old = outcome(crate::decode_message_serde, m, &schemas);
            assert_eq!(new, old, "{:?}", String::from_utf8_lossy(m));
            if new == "not simple" {
                not += 1;
            } else {
                simple += 1;
            }
        }
        for v in &valid {
            assert_ne!(
                outcome(decode_message, v.as_bytes(), &schemas),
                "not simple",
                "{v}"
            );
        }
        assert!(simple > 1_000 && not > 10_000, "{simple} {not}");
    }

    /// The interner's tags tell apart any two different strings of at most 16 bytes.
    #[test]
    fn tags_are_exact_up_to_16_bytes() {
        let mut seen = std::collections::HashMap::new();
        let alphabet = ["a", "b", "\u{e9}"];
        let mut words: Vec<String> = vec![String::new()];
        for _ in 0..8 {
            let longer: Vec<String> = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .filter(|w| w.len() <= 16)
                .collect();
            words.extend(longer);
            words.sort();
            words.dedup();
        }
        // Strings of 9..=16 bytes that differ only in the middle.
        for k in 0..256u32 {
            words.push(format!("ab{:08b}cd", k));
            words.push(format!("x{:015b}", k));
        }
        words.sort();
        words.dedup();
        for w in &words {
            if let Some(other) = seen.insert(crate::tag(w), w.clone()) {
                panic!("{w:?} and {other:?} share a tag");
            }
        }
        assert!(words.len() > 3000);
    }

    #[test]
    fn specials_finds_the_first() {
        for (s, at) in [
            (*b"abcdefgh", None),
            (*b"abc\"efgh", Some(3)),
            (*b"\x01bcdefgh", Some(0)),
            (*b"\xffb\\d\"fgh", Some(2)),
            (*b"\xe9\xe9\xe9\xe9\xe9\xe9\xe9\x1f", Some(7)),
        ] {
            let m = specials(u64::from_le_bytes(s));
            let got = (m != 0).then(|| (m.trailing_zeros() / 8) as usize);
            assert_eq!(got, at);
        }
    }

    #[test]
    fn strings_checked_like_serde_json() {
        let ok = [
            r#""abc""#,
            r#""\u00e9\ud83d\ude00\n\/""#,
            "\"\u{e9}t\u{e9}\"",
        ];
        let bad = [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800\n""#,
            r#""\x""#,
            "\"a\u{1}\"",
            r#""abc"#,
            r#""\u12""#,
        ];
        for s in ok {
            let mut c = Cursor {
                text: s,
                b: s.as_bytes(),
                i: 0,
            };
            let r = c.string().expect(s);
            let want: String = serde_json::from_str(s).unwrap();
            assert_eq!(r.value().unwrap(), want);
            assert_eq!(c.i, s.len());
        }
        for s in bad {
            let mut c = Cursor {
                text: s,
                b: s.as_bytes(),
                i: 0,
            };
            assert!(c.string().is_none(), "{s}");
        }
    }
}
