//! Synthetic cache-tree generator for benchmarks and end-to-end tests.
//!
//! Builds a tree shaped like the cache root (`OUTPUTS/`) of the FBA
//! data-collection agent, and can replay day-by-day churn on it so that
//! incremental backups, retention and relationship-aware clearing can be
//! exercised on realistic data.
//!
//! ```text
//! cargo run --release --example gen_corpus -- DIR --scale S [--seed N]
//! cargo run --release --example gen_corpus -- DIR --mutate --day D [--seed N]
//! cargo run --release --example gen_corpus -- DIR --fixture [--seed N]
//! ```
//!
//! * `--scale S` creates `DIR/OUTPUTS/`. Scale 1 is about 55,000 files and
//!   600 MB of pretty-printed JSON that compresses roughly 6x with zstd -3:
//!   ~52,800 `FBA_ANALYSIS/amazon_cache/amazon_<ASIN>.json` (2-40 KB, median
//!   ~2.5 KB), ~1,900 supplier category pages under
//!   `cached_products/<supplier>/` (20-400 KB), ~300 files in
//!   `FBA_ANALYSIS/ai_category_cache/`, one ~65 MB
//!   `FBA_ANALYSIS/Linking map/linking_map.json` and ten `*_state.json`
//!   files. File counts and total size are linear in `S`. `DIR/OUTPUTS` must
//!   not exist yet (or be empty).
//! * `--mutate --day D` applies one day of agent activity to an existing
//!   tree: ~3% new amazon entries, ~2% rewritten (fresh `scraped_at`, one more
//!   `price_history` point), ~1% deleted, ~0.5% new supplier pages, the
//!   linking map grows by 1% and is rewritten whole through a temporary file
//!   and a rename, and the two top-level state files are refreshed. Touched
//!   files get timestamps and mtimes on 2026-11-25 + D days.
//! * `--fixture` writes the small tree committed under `fixtures/tree/`:
//!   2 suppliers x 3 pages, 30 amazon entries, 3 AI category files, a
//!   40-record linking map and 2 state files.
//!
//! Output is a pure function of the seed (default 1), the scale and, for
//! `--mutate`, the day and the tree being mutated. Timestamps are RFC 3339
//! UTC and spread over the 30 days before 2026-11-25; file mtimes match the
//! `scraped_at` / `generated_at` / `linked_at` / `updated_at` of the content.
//! JSON is written byte-for-byte as Python's `json.dump(obj, f, indent=2)`
//! would (insertion-ordered keys, `ensure_ascii`, no trailing newline).
//!
//! Linking-map records reference real supplier EANs and cached ASINs for most
//! entries, but also ASINs with no cache file, products from pages that are no
//! longer cached, and a few EANs linked to several ASINs; some amazon entries
//! are not referenced by any link.

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

// ---------------------------------------------------------------------------
// Layout and sizing
// ---------------------------------------------------------------------------

const SUPPLIER_DIR: &str = "cached_products";
const AMAZON_DIR: &str = "FBA_ANALYSIS/amazon_cache";
const AI_DIR: &str = "FBA_ANALYSIS/ai_category_cache";
const LINK_DIR: &str = "FBA_ANALYSIS/Linking map";
const LINK_FILE: &str = "linking_map.json";
const PROCESSING_STATE: &str = "FBA_ANALYSIS/processing_state.json";
const RESUME_STATE: &str = "cached_products/resume_state.json";

/// Per-unit-of-scale counts.
const PAGES_PER_SCALE: f64 = 1_900.0;
const AMAZON_PER_SCALE: f64 = 52_800.0;
const AI_PER_SCALE: f64 = 300.0;
const LINKS_PER_SCALE: f64 = 115_000.0;

/// Share of linking-map records that point at products of cached pages
/// (the rest refer to pages that have since expired).
const LINKED_CURRENT_SHARE: f64 = 0.62;
/// Share of amazon entries whose product is linked from a cached page.
const AMAZON_LINKED_SHARE: f64 = 0.92;

/// Serialised size of one `[timestamp, price]` pair at depth 2.
const HISTORY_POINT_BYTES: f64 = 55.0;

const DAY: i64 = 86_400;
/// 2026-11-25T00:00:00Z: base timestamps fall in the 30 days before it.
const NOW: i64 = days_from_civil(2026, 11, 25) * DAY;
const WINDOW: i64 = 30 * DAY;

#[derive(Clone, Copy)]
struct Shape {
    pages: usize,
    amazon: usize,
    ai: usize,
    links: usize,
    suppliers: usize,
    pages_per_category: (u64, u64),
    /// Products per page for every page, overriding the supplier's page size.
    page_products: Option<(u64, u64)>,
    /// Target amazon file size range in bytes, sampled with a small-skewed
    /// distribution.
    amazon_bytes: (f64, f64),
    supplier_states: bool,
}

impl Shape {
    fn scaled(s: f64) -> Shape {
        let n = |per: f64| ((per * s).round() as usize).max(1);
        Shape {
            pages: n(PAGES_PER_SCALE),
            amazon: n(AMAZON_PER_SCALE),
            ai: n(AI_PER_SCALE),
            links: n(LINKS_PER_SCALE),
            suppliers: SUPPLIERS.len(),
            pages_per_category: (1, 16),
            page_products: None,
            amazon_bytes: (2_000.0, 40_000.0),
            supplier_states: true,
        }
    }

    fn fixture() -> Shape {
        Shape {
            pages: 6,
            amazon: 30,
            ai: 3,
            links: 40,
            suppliers: 2,
            pages_per_category: (1, 2),
            page_products: Some((5, 30)),
            amazon_bytes: (2_000.0, 4_500.0),
            supplier_states: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stable 64-bit key of a tuple of integers.
fn key(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |h, &p| {
        mix(h.wrapping_add(GOLDEN) ^ p)
    })
}

/// FNV-1a, used to fold strings into keys.
fn hstr(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// Domain tags so that independent streams never share a key.
const T_SUPPLIER: u64 = 1;
const T_PLAN: u64 = 2;
const T_PAGE: u64 = 3;
const T_PRODUCT: u64 = 4;
const T_ASIN: u64 = 5;
const T_AMAZON: u64 = 6;
const T_HIST: u64 = 7;
const T_ORPHAN: u64 = 8;
const T_LINK: u64 = 9;
const T_AI: u64 = 10;
const T_STATE: u64 = 11;
const T_DAY: u64 = 12;

/// splitmix64 stream.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(parts: &[u64]) -> Rng {
        Rng(key(parts))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }

    /// Approximately normal (Irwin-Hall with 4 terms), mean 0, sd 1.
    fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 3f64.sqrt()
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn rfc3339(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let s = t.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

fn compact_stamp(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let s = t.rem_euclid(DAY);
    format!(
        "{y:04}{m:02}{d:02}_{:02}{:02}{:02}",
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

/// A moment in the 30 days before [`NOW`].
fn recent(r: &mut Rng) -> i64 {
    NOW - 1 - r.below(WINDOW as u64) as i64
}

/// A moment during mutation day `day` (2026-11-25 + `day` days), in working
/// hours of the agent.
fn on_day(r: &mut Rng, day: u64) -> i64 {
    NOW + day as i64 * DAY + 2 * 3_600 + r.below(20 * 3_600) as i64
}

// ---------------------------------------------------------------------------
// JSON values, Python-compatible writer, parser
// ---------------------------------------------------------------------------

/// A JSON value with insertion-ordered objects and numbers kept as their
/// textual form, so that parsed files re-serialise unchanged.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn get(&self, k: &str) -> Option<&J> {
        match self {
            J::Obj(fields) => fields.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, k: &str) -> Option<&mut J> {
        match self {
            J::Obj(fields) => fields.iter_mut().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }

    fn set(&mut self, k: &str, v: J) {
        if let Some(slot) = self.get_mut(k) {
            *slot = v;
        } else if let J::Obj(fields) = self {
            fields.push((k.to_owned(), v));
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            J::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
}

fn s(x: impl Into<String>) -> J {
    J::Str(x.into())
}

fn int(i: impl Into<i64>) -> J {
    J::Num(i.into().to_string())
}

/// A float rendered as Python's `repr` does.
fn num(x: f64) -> J {
    J::Num(py_float(x))
}

fn money(cents: i64) -> J {
    num(cents as f64 / 100.0)
}

fn obj(fields: Vec<(&str, J)>) -> J {
    J::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn py_float(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let t = format!("{x}");
        if t.contains('.') {
            t
        } else {
            t + ".0"
        }
    } else {
        let t = format!("{x:e}");
        let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

fn newline(out: &mut Vec<u8>, level: usize) {
    out.push(b'\n');
    out.resize(out.len() + 2 * level, b' ');
}

fn write_str(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    for c in v.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{u:04x}").as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

/// Serialise like `json.dumps(v, indent=2)` at nesting depth `level`.
fn write_json(out: &mut Vec<u8>, v: &J, level: usize) {
    match v {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(true) => out.extend_from_slice(b"true"),
        J::Bool(false) => out.extend_from_slice(b"false"),
        J::Num(n) => out.extend_from_slice(n.as_bytes()),
        J::Str(t) => write_str(out, t),
        J::Arr(xs) if xs.is_empty() => out.extend_from_slice(b"[]"),
        J::Obj(fs) if fs.is_empty() => out.extend_from_slice(b"{}"),
        J::Arr(xs) => {
            out.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, level + 1);
                write_json(out, x, level + 1);
            }
            newline(out, level);
            out.push(b']');
        }
        J::Obj(fs) => {
            out.push(b'{');
            for (i, (k, x)) in fs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, level + 1);
                write_str(out, k);
                out.extend_from_slice(b": ");
                write_json(out, x, level + 1);
            }
            newline(out, level);
            out.push(b'}');
        }
    }
}

fn dump(out: &mut Vec<u8>, v: &J) {
    out.clear();
    write_json(out, v, 0);
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(b: &[u8]) -> std::result::Result<J, String> {
        let mut p = Parser { b, i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != b.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    fn err<T>(&self, what: &str) -> std::result::Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> std::result::Result<J, String> {
        self.ws();
        match self.b.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat(b"}") {
                    return Ok(J::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(b":") {
                        return self.err("expected ':'");
                    }
                    fields.push((k, self.value()?));
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"}") {
                        return Ok(J::Obj(fields));
                    }
                    return self.err("expected ',' or '}'");
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut xs = Vec::new();
                self.ws();
                if self.eat(b"]") {
                    return Ok(J::Arr(xs));
                }
                loop {
                    xs.push(self.value()?);
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"]") {
                        return Ok(J::Arr(xs));
                    }
                    return self.err("expected ',' or ']'");
                }
            }
            Some(b'"') => Ok(J::Str(self.string()?)),
            Some(_) if self.eat(b"true") => Ok(J::Bool(true)),
            Some(_) if self.eat(b"false") => Ok(J::Bool(false)),
            Some(_) if self.eat(b"null") => Ok(J::Null),
            Some(_) => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                if start == self.i {
                    return self.err("unexpected character");
                }
                let t = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
                Ok(J::Num(t.to_owned()))
            }
        }
    }

    fn hex4(&mut self) -> std::result::Result<u32, String> {
        let Some(h) = self.b.get(self.i..self.i + 4) else {
            return self.err("short \\u escape");
        };
        let h = std::str::from_utf8(h).map_err(|e| e.to_string())?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        if !self.eat(b"\"") {
            return self.err("expected string");
        }
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) && self.eat(b"\\u") {
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

struct SupplierDef {
    domain: &'static str,
    sku: &'static str,
    /// Products on a full category page.
    page_size: u64,
    /// URL scheme: 0 Magento, 1 WooCommerce, 2 Shopify.
    style: u8,
    weight: f64,
}

#[rustfmt::skip]
const SUPPLIERS: &[SupplierDef] = &[
    SupplierDef { domain: "clearance-king.co.uk", sku: "CK", page_size: 144, style: 0, weight: 1.6 },
    SupplierDef { domain: "poundwholesale.co.uk", sku: "PW", page_size: 120, style: 0, weight: 1.3 },
    SupplierDef { domain: "wholesaleclearance.co.uk", sku: "WC", page_size: 240, style: 1, weight: 1.2 },
    SupplierDef { domain: "bulkbuy-direct.co.uk", sku: "BBD", page_size: 96, style: 2, weight: 1.0 },
    SupplierDef { domain: "discount-trade-supplies.co.uk", sku: "DTS", page_size: 480, style: 1, weight: 0.9 },
    SupplierDef { domain: "homeware-wholesale.co.uk", sku: "HW", page_size: 192, style: 0, weight: 0.8 },
    SupplierDef { domain: "toytrade-direct.co.uk", sku: "TT", page_size: 288, style: 2, weight: 0.7 },
    SupplierDef { domain: "valueline-wholesale.co.uk", sku: "VL", page_size: 60, style: 1, weight: 0.5 },
];

struct Parent {
    slug: &'static str,
    name: &'static str,
    amazon: &'static str,
    children: &'static [&'static str],
    nouns: &'static [&'static str],
}

#[rustfmt::skip]
const PARENTS: &[Parent] = &[
    Parent {
        slug: "home-garden",
        name: "Home & Garden",
        amazon: "Home & Kitchen",
        children: &["kitchen-storage", "cleaning", "bathroom", "lighting", "bedding", "home-decor", "laundry", "garden-tools"],
        nouns: &["Storage Box", "Laundry Basket", "Shower Caddy", "Cushion Cover", "Door Mat", "Photo Frame", "LED Candles", "Scrubbing Brush", "Microfibre Cloths", "Clothes Pegs", "Plant Pot", "Hose Nozzle", "Bin Liners", "Vacuum Storage Bags", "Toilet Brush", "Coat Hangers", "Draught Excluder", "Fairy Lights", "Mop Bucket", "Garden Kneeler"],
    },
    Parent {
        slug: "toys-games",
        name: "Toys & Games",
        amazon: "Toys & Games",
        children: &["board-games", "puzzles", "outdoor-toys", "arts-crafts", "plush-toys", "party-supplies"],
        nouns: &["Jigsaw Puzzle", "Bubble Wand", "Colouring Set", "Modelling Dough Set", "Water Pistol", "Plush Teddy", "Card Game", "Balloons", "Skipping Rope", "Stacking Blocks", "Kite", "Yo-Yo", "Sticker Book", "Slime Kit", "Party Bag Fillers", "Magic Set"],
    },
    Parent {
        slug: "health-beauty",
        name: "Health & Beauty",
        amazon: "Beauty",
        children: &["hair-care", "skincare", "oral-care", "cosmetics", "fragrance", "vitamins"],
        nouns: &["Shampoo", "Conditioner", "Hand Cream", "Lip Balm", "Toothbrushes", "Toothpaste", "Nail Polish", "Body Spray", "Face Wipes", "Hair Bobbles", "Cotton Pads", "Shower Gel", "Multivitamin Tablets", "Eyeliner Pencil", "Hair Brush", "Bath Bombs"],
    },
    Parent {
        slug: "pet-supplies",
        name: "Pet Supplies",
        amazon: "Pet Supplies",
        children: &["dog", "cat", "small-animal", "aquatics", "bird-care"],
        nouns: &["Dog Chews", "Cat Litter", "Pet Bowl", "Rope Toy", "Cat Scratcher", "Dog Lead", "Poop Bags", "Fish Flakes", "Wild Bird Seed", "Grooming Brush", "Pet Bed", "Catnip Toy", "Squeaky Ball", "Hay Rack"],
    },
    Parent {
        slug: "diy-tools",
        name: "DIY & Tools",
        amazon: "DIY & Tools",
        children: &["hand-tools", "adhesives", "electrical-diy", "paint-decorating", "fixings"],
        nouns: &["Screwdriver Set", "Tape Measure", "Duct Tape", "Super Glue", "Paint Brush Set", "Cable Ties", "Wall Plugs", "Utility Knife", "Spirit Level", "Sandpaper Sheets", "Extension Lead", "Claw Hammer", "Masking Tape", "Allen Key Set", "Dust Sheet"],
    },
    Parent {
        slug: "kitchen-dining",
        name: "Kitchen & Dining",
        amazon: "Home & Kitchen",
        children: &["cookware", "bakeware", "utensils", "tableware", "food-storage"],
        nouns: &["Frying Pan", "Baking Tray", "Garlic Press", "Cheese Grater", "Mixing Bowl", "Food Containers", "Tea Towels", "Measuring Spoons", "Can Opener", "Rolling Pin", "Ice Cube Tray", "Mug", "Cutlery Set", "Chopping Board", "Silicone Spatula", "Cake Tin"],
    },
    Parent {
        slug: "stationery-office",
        name: "Stationery & Office",
        amazon: "Stationery & Office Supplies",
        children: &["pens-pencils", "notebooks", "art-supplies", "filing", "back-to-school"],
        nouns: &["Ballpoint Pens", "Gel Pens", "A5 Notebook", "Highlighters", "Pencil Case", "Sticky Notes", "Ring Binder", "Glue Sticks", "Colouring Pencils", "Scissors", "Envelopes", "Whiteboard Markers", "Ruler Set"],
    },
    Parent {
        slug: "electrical",
        name: "Electrical",
        amazon: "Electronics & Photo",
        children: &["batteries", "cables", "phone-accessories", "torches", "plugs-adaptors"],
        nouns: &["AA Batteries", "AAA Batteries", "USB-C Cable", "Phone Case", "LED Torch", "Travel Adaptor", "Wall Charger", "Earphones", "Screen Protector", "Power Bank", "LED Light Bulb", "Car Charger", "HDMI Cable"],
    },
    Parent {
        slug: "seasonal",
        name: "Seasonal",
        amazon: "Home & Kitchen",
        children: &["christmas", "halloween", "summer", "easter"],
        nouns: &["Christmas Baubles", "Tinsel", "Advent Calendar", "Gift Bags", "Halloween Mask", "Pumpkin Lantern", "Egg Hunt Kit", "Beach Ball", "Paddling Pool", "Wrapping Paper", "Christmas Crackers", "Bunting"],
    },
    Parent {
        slug: "food-drink",
        name: "Food & Drink",
        amazon: "Grocery",
        children: &["confectionery", "snacks", "soft-drinks", "grocery"],
        nouns: &["Chocolate Bar", "Jelly Sweets", "Crisps Multipack", "Energy Drink", "Instant Noodles", "Biscuits", "Popcorn", "Fruit Juice", "Tea Bags", "Ground Coffee", "Hot Sauce", "Lollipops"],
    },
    Parent {
        slug: "baby-kids",
        name: "Baby & Kids",
        amazon: "Baby Products",
        children: &["feeding", "bath-time", "nursery"],
        nouns: &["Baby Wipes", "Sippy Cup", "Bib Set", "Bath Toys", "Dummy Clips", "Night Light", "Weaning Spoons", "Hooded Towel", "Teething Ring"],
    },
    Parent {
        slug: "automotive",
        name: "Automotive",
        amazon: "Automotive",
        children: &["car-care", "car-accessories"],
        nouns: &["Car Air Freshener", "Ice Scraper", "Screenwash", "Microfibre Car Cloth", "Tyre Inflator", "Phone Holder", "Sun Shade", "Car Shampoo", "Seat Organiser"],
    },
];

#[rustfmt::skip]
const BRANDS: &[&str] = &[
    "HomeCraft", "Kingfisher Living", "Bright Spark", "PetPal", "Ashford & Kent", "TidyHome",
    "KitchenPro", "Sunny Days", "Little Stars", "ToolMaster", "Everglow", "Pure Bloom",
    "Caf\u{e9} Noir", "Maison \u{c9}lan", "Cr\u{e8}me Lux", "Oakridge", "Blue Harbour", "Northgate",
    "Playtime Pals", "Snug & Co", "Fresh Living", "Urban Nest", "Paws & Claws", "Artisan Studio",
    "Pro-Fix", "Powerline", "Voltix", "Smart Choice", "Daily Essentials", "Greenleaf",
    "Whitby & Lane", "Royal Crest", "Funtastic", "Bubble Buddies", "Crafty Kids", "Glamour Girl",
    "Derwent Valley", "Spectrum", "Lumina", "ChefMate", "Bake Club", "Zing", "Sweet Treats",
    "Crunchies", "Motorline", "AutoShine", "Tiny Tots", "Cosy Cub", "Festive Magic", "Spooky Town",
    "Summer Splash", "Wildwing", "AquaLife", "OfficeLine", "Scribe", "Colour Burst", "Brite",
    "Duraforce", "Elemental", "Velvet Touch",
];

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "Heavy Duty", "Premium", "Compact", "Foldable", "Reusable", "Eco-Friendly", "Large", "Small",
    "Extra Large", "Non-Stick", "Waterproof", "Rechargeable", "Portable", "Deluxe", "Classic",
    "Soft Touch", "Multi-Purpose", "Durable", "Lightweight", "Stackable", "Anti-Slip", "Scented",
    "Mini", "Jumbo", "Assorted", "Professional", "Kids", "Value", "Luxury", "Traditional",
];

#[rustfmt::skip]
const MATERIALS: &[&str] = &[
    "Stainless Steel", "Bamboo", "Plastic", "Silicone", "Cotton", "Glass", "Ceramic", "Wooden",
    "Metal", "Polyester", "Rubber", "Microfibre", "Aluminium", "Recycled Plastic", "Fleece",
];

#[rustfmt::skip]
const COLOURS: &[&str] = &[
    "Black", "White", "Grey", "Silver", "Red", "Blue", "Navy", "Green", "Pink", "Purple", "Yellow",
    "Orange", "Cream", "Multicolour", "Assorted Colours", "Clear", "Rose Gold", "Sage Green",
];

#[rustfmt::skip]
const USES: &[&str] = &[
    "everyday use", "home and office", "parties and celebrations", "travel", "gifting",
    "the kitchen", "outdoor use", "busy families", "school and college", "camping trips",
    "small spaces", "weekend projects",
];

#[rustfmt::skip]
const PACKAGING: &[&str] = &[
    "retail-ready display box", "hanging blister pack", "shrink-wrapped sleeve", "gift box",
    "resealable bag", "PDQ counter display", "colour printed header card",
];

#[rustfmt::skip]
const AUDIENCES: &[&str] = &[
    "adults", "kids aged 3+", "all ages", "small and medium dogs", "indoor cats",
    "home and professional use", "beginners and enthusiasts",
];

#[rustfmt::skip]
const ROOMS: &[&str] = &[
    "kitchen", "bathroom", "living room", "bedroom", "garden", "office", "classroom", "utility room",
];

#[rustfmt::skip]
const MATCH_METHODS: &[&str] = &[
    "ean_exact", "ean_exact", "ean_exact", "ean_exact", "ean_exact", "ean_search", "ean_search",
    "title_fuzzy", "title_ai",
];

#[rustfmt::skip]
const AI_REASONS: &[&str] = &[
    "High Amazon UK demand with moderate competition",
    "Strong historical margins for this category",
    "Many products with low BSR and few FBA sellers",
    "Seasonal uplift expected in the coming weeks",
    "Products are small and light, keeping FBA fees low",
    "Frequent price undercutting by Amazon itself",
    "Category dominated by branded listings with gating",
    "Low average selling price leaves thin margins after fees",
    "Good EAN coverage makes matching reliable",
    "Mixed results in previous runs",
];

// ---------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------

struct Profile {
    page_size: u64,
    has_brand: bool,
    has_rrp: bool,
    has_case: bool,
    has_stock: bool,
    has_desc: bool,
    image_token: String,
}

fn profile(seed: u64, sup: usize) -> Profile {
    let mut r = Rng::new(&[seed, T_SUPPLIER, sup as u64]);
    Profile {
        page_size: SUPPLIERS[sup].page_size,
        has_brand: r.chance(0.7),
        has_rrp: r.chance(0.6),
        has_case: r.chance(0.6),
        has_stock: r.chance(0.5),
        has_desc: r.chance(0.8),
        image_token: format!("{:016x}{:016x}", r.next(), r.next()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Cat {
    parent: usize,
    child: usize,
}

impl Cat {
    fn file_key(self) -> String {
        format!(
            "{}_{}",
            PARENTS[self.parent].slug, PARENTS[self.parent].children[self.child]
        )
    }

    fn from_file_key(k: &str) -> Option<Cat> {
        let (p, c) = k.split_once('_')?;
        let parent = PARENTS.iter().position(|x| x.slug == p)?;
        let child = PARENTS[parent].children.iter().position(|&x| x == c)?;
        Some(Cat { parent, child })
    }

    fn all() -> Vec<Cat> {
        (0..PARENTS.len())
            .flat_map(|parent| {
                (0..PARENTS[parent].children.len()).map(move |child| Cat { parent, child })
            })
            .collect()
    }

    fn random(r: &mut Rng) -> Cat {
        let parent = r.below(PARENTS.len() as u64) as usize;
        let child = r.below(PARENTS[parent].children.len() as u64) as usize;
        Cat { parent, child }
    }
}

fn category_url(sup: usize, cat: Cat) -> String {
    let d = SUPPLIERS[sup].domain;
    let (p, c) = (
        PARENTS[cat.parent].slug,
        PARENTS[cat.parent].children[cat.child],
    );
    match SUPPLIERS[sup].style {
        0 => format!("https://www.{d}/{p}/{c}.html"),
        1 => format!("https://www.{d}/product-category/{p}/{c}/"),
        _ => format!("https://{d}/collections/{c}"),
    }
}

fn page_uid(sup: usize, cat: Cat, page: u64) -> u64 {
    key(&[
        T_PAGE,
        hstr(SUPPLIERS[sup].domain),
        hstr(&cat.file_key()),
        page,
    ])
}

fn page_path(sup: usize, cat: Cat, page: u64) -> String {
    format!(
        "{SUPPLIER_DIR}/{}/{}_page_{page}.json",
        SUPPLIERS[sup].domain,
        cat.file_key()
    )
}

fn slugify(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

fn ean13(r: &mut Rng) -> String {
    let prefix = r.pick(&[
        "50", "50", "50", "50", "50", "69", "40", "54", "87", "80", "84", "76",
    ]);
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while d.len() < 12 {
        d.push(r.below(10) as u8);
    }
    let sum: u32 = d
        .iter()
        .enumerate()
        .map(|(i, &x)| u32::from(x) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    d.push(((10 - sum % 10) % 10) as u8);
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

fn asin(r: &mut Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut a = String::from("B0");
    for _ in 0..8 {
        a.push(char::from(r.pick(ALNUM)));
    }
    a
}

/// Retail-looking price in pence, ending in 9.
fn retail_cents(x: f64) -> i64 {
    (((x * 100.0) as i64) / 10 * 10 + 9).max(19)
}

struct Product {
    sup: usize,
    cat: Cat,
    title: String,
    brand: &'static str,
    noun: &'static str,
    material: &'static str,
    colour: &'static str,
    pack: u64,
    ean: String,
    price: i64,
    rrp: i64,
    sku: String,
    id: u64,
    weight_g: u64,
    url: String,
    image_url: String,
    in_stock: bool,
    stock_qty: u64,
    case_qty: u64,
    description: String,
}

fn product(seed: u64, sup: usize, cat: Cat, uid: u64, slot: u64) -> Product {
    let mut r = Rng::new(&[seed, T_PRODUCT, uid, slot]);
    let def = &SUPPLIERS[sup];
    let noun = r.pick(PARENTS[cat.parent].nouns);
    let brand = r.pick(BRANDS);
    let adj = r.pick(ADJECTIVES);
    let material = r.pick(MATERIALS);
    let colour = r.pick(COLOURS);
    let pack = r.pick(&[1, 1, 1, 1, 1, 2, 2, 3, 4, 5, 6, 10, 12, 24]);
    let mut title = if r.chance(0.5) {
        format!("{brand} {adj} {material} {noun}")
    } else {
        format!("{brand} {adj} {noun}")
    };
    match r.below(5) {
        0 => title += &format!(" {}cm", r.range(5, 60)),
        1 => {
            title += &format!(
                " {}ml",
                r.pick(&[50, 100, 150, 200, 250, 300, 400, 500, 750, 1000])
            )
        }
        _ => {}
    }
    if r.chance(0.5) {
        title += ", ";
        title += colour;
    }
    if pack > 1 {
        title += &format!(" - Pack of {pack}");
    }
    let ean = ean13(&mut r);
    let price = retail_cents(r.log_uniform(0.39, 39.99));
    let rrp = retail_cents(price as f64 / 100.0 * (1.5 + 1.5 * r.unit()));
    let sku = format!("{}{:06}", def.sku, r.below(1_000_000));
    let id = r.range(10_000, 999_999);
    let weight_g = (r.log_uniform(15.0, 4_000.0)) as u64;
    let slug = slugify(&title);
    let (url, image_url) = match def.style {
        0 => (
            format!("https://www.{}/{slug}.html", def.domain),
            format!(
                "https://www.{}/media/catalog/product/cache/{}/{}/{}/{}-{:08x}.jpg",
                def.domain,
                profile_token(seed, sup),
                &slug[..1],
                &slug[1..2],
                sku.to_lowercase(),
                r.next() as u32
            ),
        ),
        1 => (
            format!("https://www.{}/product/{slug}/", def.domain),
            format!(
                "https://www.{}/wp-content/uploads/2026/{:02}/{}-1.jpg",
                def.domain,
                r.range(1, 11),
                sku.to_lowercase()
            ),
        ),
        _ => (
            format!("https://{}/products/{slug}", def.domain),
            format!(
                "https://cdn.shopify.com/s/files/1/{:04}/{:04}/products/{}_{:08x}.jpg?v={}",
                key(&[seed, T_SUPPLIER, sup as u64, 1]) % 10_000,
                key(&[seed, T_SUPPLIER, sup as u64, 2]) % 10_000,
                sku,
                r.next() as u32,
                1_700_000_000 + r.below(95_000_000)
            ),
        ),
    };
    let in_stock = r.chance(0.86);
    let stock_qty = if in_stock { r.range(1, 2_500) } else { 0 };
    let case_qty = r.pick(&[6, 12, 12, 24, 24, 36, 48, 72, 96, 144]);
    let mut description = String::new();
    let n_sentences = r.range(2, 6) as usize;
    for (i, kind) in shuffled(&mut r, 12, n_sentences).into_iter().enumerate() {
        if i > 0 {
            description.push(' ');
        }
        let sentence = match kind {
            0 => format!(
                "Made from {} for long-lasting use.",
                material.to_lowercase()
            ),
            1 => format!("Perfect for {}.", r.pick(USES)),
            2 => format!(
                "Dimensions approx. {} x {} x {} cm.",
                r.range(3, 60),
                r.range(3, 40),
                r.range(1, 30)
            ),
            3 => format!("Supplied in a {}.", r.pick(PACKAGING)),
            4 => format!("Suitable for {}.", r.pick(AUDIENCES)),
            5 => format!("{pack} piece(s) per pack."),
            6 => "Easy to clean and store.".to_owned(),
            7 => format!("A great addition to any {}.", r.pick(ROOMS)),
            8 => "Please note colours and designs may vary.".to_owned(),
            9 => "Ideal for retail, market stalls and discount stores.".to_owned(),
            10 => format!("Sold in outer cases of {case_qty} units."),
            _ => format!("Our {brand} range offers great value without compromising on quality."),
        };
        description += &sentence;
    }
    Product {
        sup,
        cat,
        title,
        brand,
        noun,
        material,
        colour,
        pack,
        ean,
        price,
        rrp,
        sku,
        id,
        weight_g,
        url,
        image_url,
        in_stock,
        stock_qty,
        case_qty,
        description,
    }
}

/// The first `take` of `0..n` in random order.
fn shuffled(r: &mut Rng, n: u64, take: usize) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    for i in (1..v.len()).rev() {
        v.swap(i, r.below(i as u64 + 1) as usize);
    }
    v.truncate(take);
    v
}

fn profile_token(seed: u64, sup: usize) -> String {
    profile(seed, sup).image_token
}

/// A product from a page that is not (or no longer) in the cache.
fn detached_product(seed: u64, tag: u64, k: u64, suppliers: usize) -> Product {
    let mut r = Rng::new(&[seed, tag, k]);
    let sup = r.below(suppliers as u64) as usize;
    let cat = Cat::random(&mut r);
    product(seed, sup, cat, key(&[tag, k]), 0)
}

fn product_json(p: &Product, prof: &Profile) -> J {
    let mut f = vec![
        ("title", s(&p.title)),
        ("price", money(p.price)),
        ("ean", s(&p.ean)),
        ("url", s(&p.url)),
        ("image_url", s(&p.image_url)),
        ("in_stock", J::Bool(p.in_stock)),
        ("sku", s(&p.sku)),
        ("product_id", int(p.id as i64)),
        ("weight_g", int(p.weight_g as i64)),
    ];
    if prof.has_brand {
        f.push(("brand", s(p.brand)));
    }
    if prof.has_rrp {
        f.push(("rrp", money(p.rrp)));
    }
    if prof.has_case {
        f.push(("case_qty", int(p.case_qty as i64)));
    }
    if prof.has_stock {
        f.push(("stock_qty", int(p.stock_qty as i64)));
    }
    if prof.has_desc {
        f.push(("description", s(&p.description)));
    }
    obj(f)
}

struct Page {
    sup: usize,
    cat: Cat,
    no: u64,
    products: u64,
    scraped_at: i64,
}

impl Page {
    fn uid(&self) -> u64 {
        page_uid(self.sup, self.cat, self.no)
    }

    fn product(&self, seed: u64, slot: u64) -> Product {
        product(seed, self.sup, self.cat, self.uid(), slot)
    }
}

fn page_json(seed: u64, page: &Page) -> J {
    let prof = profile(seed, page.sup);
    let products = (0..page.products)
        .map(|slot| product_json(&page.product(seed, slot), &prof))
        .collect();
    obj(vec![
        ("supplier", s(SUPPLIERS[page.sup].domain)),
        ("category_url", s(category_url(page.sup, page.cat))),
        ("page", int(page.no as i64)),
        ("scraped_at", s(rfc3339(page.scraped_at))),
        ("cache_version", int(2)),
        ("products", J::Arr(products)),
    ])
}

fn asin_for(seed: u64, uid: u64, slot: u64, variant: u64) -> String {
    asin(&mut Rng::new(&[seed, T_ASIN, uid, slot, variant]))
}

fn amazon_title(seed: u64, p: &Product, asin: &str) -> String {
    let mut r = Rng::new(&[seed, T_AMAZON, hstr(asin), 1]);
    let mut t = format!("{} {} {}", p.brand, r.pick(ADJECTIVES), p.noun);
    if r.chance(0.6) {
        t += &format!(", {}", p.material);
    }
    t += &format!(" - Ideal for {}", r.pick(USES));
    if p.pack > 1 || r.chance(0.3) {
        t += &format!(" ({} Pack, {})", p.pack, p.colour);
    }
    t
}

/// Amazon selling price for a product sourced at `p.price`.
fn amazon_price(seed: u64, p: &Product, asin: &str) -> i64 {
    let mut r = Rng::new(&[seed, T_AMAZON, hstr(asin), 2]);
    retail_cents(p.price as f64 / 100.0 * (1.6 + 2.2 * r.unit()) + 1.5)
}

fn amazon_json(seed: u64, p: &Product, asin: &str, scraped_at: i64, bytes: f64) -> J {
    let mut r = Rng::new(&[seed, T_AMAZON, hstr(asin), 3]);
    let price = amazon_price(seed, p, asin);
    let bsr = r.log_uniform(40.0, 1_800_000.0) as i64;
    let fees = (price as f64 * 0.153) as i64 + r.range(241, 520) as i64;
    let reviews = r.log_uniform(1.0, 25_000.0) as i64 - 1;
    let (l, w, h) = (r.range(30, 450), r.range(20, 300), r.range(5, 150));
    let noun = p.noun.to_lowercase();
    let n_features = r.range(3, 6) as usize;
    let mut features = Vec::new();
    for kind in shuffled(&mut r, 7, n_features) {
        let f = match kind {
            0 => format!(
                "PREMIUM QUALITY - Our {noun} is made from {} that is built to last, so you can rely on it day after day.",
                p.material.to_lowercase()
            ),
            1 => format!(
                "VERSATILE - Perfect for {}, {} and much more; a must-have for any {}.",
                r.pick(USES),
                r.pick(USES),
                r.pick(ROOMS)
            ),
            2 => format!(
                "WHAT YOU GET - {} x {} {noun}. Backed by our {}-month hassle-free guarantee.",
                p.pack,
                p.brand,
                r.pick(&[6, 12, 12, 24])
            ),
            3 => "EASY TO USE - Lightweight, compact design that is easy to clean, store and carry.".to_owned(),
            4 => "GREAT GIFT IDEA - An ideal present for birthdays, Christmas and other special occasions.".to_owned(),
            5 => format!(
                "SIZE - Measures approximately {:.1} x {:.1} x {:.1} cm and weighs {} g.",
                l as f64 / 10.0,
                w as f64 / 10.0,
                h as f64 / 10.0,
                r.range(20, 2_000)
            ),
            _ => format!(
                "SAFE AND SUSTAINABLE - Suitable for {} and tested to UK and EU safety standards.",
                r.pick(AUDIENCES)
            ),
        };
        features.push(s(f));
    }

    let mut record = obj(vec![
        ("asin", s(asin)),
        ("ean", s(&p.ean)),
        ("title", s(amazon_title(seed, p, asin))),
        ("scraped_at", s(rfc3339(scraped_at))),
        ("cache_version", int(2)),
        ("bsr", int(bsr)),
        ("category", s(PARENTS[p.cat.parent].amazon)),
        ("price", money(price)),
        ("fba_fees", money(fees)),
        ("reviews", int(reviews)),
        ("rating", num(f64::from(r.range(28, 49) as u32) / 10.0)),
        ("brand", s(p.brand)),
        ("seller_count", int(r.range(1, 25) as i64)),
        ("is_prime", J::Bool(r.chance(0.7))),
        (
            "dimensions_cm",
            J::Arr(vec![
                num(l as f64 / 10.0),
                num(w as f64 / 10.0),
                num(h as f64 / 10.0),
            ]),
        ),
        (
            "weight_kg",
            num(f64::from(r.range(20, 2_500) as u32) / 1_000.0),
        ),
        ("features", J::Arr(features)),
    ]);

    // Price history: price-change events going back from scraped_at, ending
    // at the current price, sized so the file lands near `bytes`.
    let mut base = Vec::new();
    write_json(&mut base, &record, 0);
    let points = ((bytes - base.len() as f64 - 30.0) / HISTORY_POINT_BYTES).max(2.0) as usize;
    let gap_mean = r.log_uniform(2.0 * 3_600.0, 3.0 * DAY as f64);
    let mut hist = Vec::with_capacity(points);
    // Listings with repricing tools move to arbitrary pence.
    let repriced = r.chance(0.6);
    let mut t = scraped_at;
    let mut cents = price as f64;
    for i in 0..points {
        let c = if repriced && i > 0 {
            cents as i64
        } else {
            retail_cents(cents / 100.0)
        };
        hist.push((t, c));
        t -= ((-r.unit().max(1e-9).ln()) * gap_mean) as i64 + 1;
        cents = if r.chance(0.08) {
            price as f64 * (0.7 + 0.6 * r.unit())
        } else {
            cents * (1.0 + 0.03 * r.normal())
        }
        .max(99.0);
    }
    hist.reverse();
    let price_history = hist
        .into_iter()
        .map(|(t, c)| J::Arr(vec![s(rfc3339(t)), money(c)]))
        .collect();

    record.set("price_history", J::Arr(price_history));
    record
}

fn amazon_path(asin: &str) -> String {
    format!("{AMAZON_DIR}/amazon_{asin}.json")
}

/// Small-skewed target size for an amazon file.
fn amazon_bytes(r: &mut Rng, (lo, hi): (f64, f64)) -> f64 {
    lo * (hi / lo).powf(r.unit().powi(4))
}

fn link_json(seed: u64, p: &Product, asin: &str, method: &str, linked_at: i64, r: &mut Rng) -> J {
    let confidence = match method {
        "ean_exact" => 1.0,
        "ean_search" => (95.0 + 5.0 * r.unit()).round() / 100.0,
        _ => (62.0 + 35.0 * r.unit()).round() / 100.0,
    };
    obj(vec![
        ("supplier_ean", s(&p.ean)),
        ("asin", s(asin)),
        ("supplier_url", s(&p.url)),
        ("match_method", s(method)),
        ("confidence", num(confidence)),
        ("linked_at", s(rfc3339(linked_at))),
        ("supplier", s(SUPPLIERS[p.sup].domain)),
        ("supplier_title", s(&p.title)),
        ("amazon_title", s(amazon_title(seed, p, asin))),
        ("supplier_price", money(p.price)),
        ("amazon_price", money(amazon_price(seed, p, asin))),
    ])
}

fn ai_json(seed: u64, k: u64, sup: usize, generated_at: i64, scraped: &[Cat]) -> J {
    let mut r = Rng::new(&[seed, T_AI, k]);
    let mut cats: Vec<Cat> = Cat::all();
    cats.sort_by_key(|c| key(&[seed, T_AI, k, c.parent as u64, c.child as u64]));
    cats.truncate(r.range(8, 30) as usize);
    for &c in scraped.iter().take(6) {
        if !cats.contains(&c) {
            cats.push(c);
        }
    }
    let mut scored: Vec<(f64, Cat)> = cats
        .into_iter()
        .map(|c| ((r.unit() * 100.0).round() / 100.0, c))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let categories = scored
        .into_iter()
        .map(|(score, c)| {
            obj(vec![
                ("url", s(category_url(sup, c))),
                ("score", num(score)),
                (
                    "name",
                    s(format!(
                        "{} > {}",
                        PARENTS[c.parent].name,
                        title_case(PARENTS[c.parent].children[c.child])
                    )),
                ),
                ("reason", s(r.pick(AI_REASONS))),
            ])
        })
        .collect();
    obj(vec![
        ("supplier", s(SUPPLIERS[sup].domain)),
        ("generated_at", s(rfc3339(generated_at))),
        ("model", s("gpt-4o-mini")),
        ("categories", J::Arr(categories)),
    ])
}

fn title_case(slug: &str) -> String {
    slug.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn processing_state(seed: u64, suppliers: usize, updated: i64, run: u64) -> J {
    let mut r = Rng::new(&[seed, T_STATE, 0, run]);
    let current = r.below(suppliers as u64) as usize;
    let progress = (0..suppliers)
        .map(|i| {
            let status = match i.cmp(&current) {
                std::cmp::Ordering::Less => "completed",
                std::cmp::Ordering::Equal => "in_progress",
                std::cmp::Ordering::Greater => "pending",
            };
            (
                SUPPLIERS[i].domain.to_owned(),
                obj(vec![
                    ("status", s(status)),
                    ("categories_done", int(r.range(0, 40) as i64)),
                    ("products_processed", int(r.range(0, 30_000) as i64)),
                    (
                        "last_updated",
                        s(rfc3339(updated - r.below(3 * DAY as u64) as i64)),
                    ),
                ]),
            )
        })
        .collect();
    let failed = (0..r.range(0, 6)).map(|_| s(asin(&mut r))).collect();
    obj(vec![
        ("version", int(3)),
        (
            "run_id",
            s(format!("run_{}", compact_stamp(updated - 3_600 * 5))),
        ),
        ("last_run_started", s(rfc3339(updated - 3_600 * 5))),
        ("updated_at", s(rfc3339(updated))),
        ("current_supplier", s(SUPPLIERS[current].domain)),
        ("current_category_index", int(r.range(0, 30) as i64)),
        ("last_processed_index", int(r.range(0, 5_000) as i64)),
        (
            "total_products_processed",
            int(r.range(50_000, 400_000) as i64),
        ),
        ("profitable_found", int(r.range(100, 4_000) as i64)),
        ("suppliers", J::Obj(progress)),
        ("failed_asins", J::Arr(failed)),
    ])
}

fn resume_state(seed: u64, suppliers: usize, updated: i64, run: u64) -> J {
    let mut r = Rng::new(&[seed, T_STATE, 1, run]);
    let sup = r.below(suppliers as u64) as usize;
    let mut cats = Cat::all();
    cats.sort_by_key(|c| key(&[seed, T_STATE, run, c.parent as u64, c.child as u64]));
    let done: Vec<J> = cats[..r.range(0, 8) as usize]
        .iter()
        .map(|&c| s(category_url(sup, c)))
        .collect();
    obj(vec![
        ("supplier", s(SUPPLIERS[sup].domain)),
        ("category_url", s(category_url(sup, cats[10]))),
        ("page", int(r.range(1, 12) as i64)),
        ("products_scraped", int(r.range(0, 3_000) as i64)),
        ("updated_at", s(rfc3339(updated))),
        ("completed_category_urls", J::Arr(done)),
    ])
}

fn scrape_state(seed: u64, sup: usize, pages: u64, updated: i64) -> J {
    let mut r = Rng::new(&[seed, T_STATE, 2, sup as u64]);
    obj(vec![
        ("supplier", s(SUPPLIERS[sup].domain)),
        ("pages_scraped", int(pages as i64)),
        ("last_category_index", int(r.range(0, 30) as i64)),
        ("last_page", int(r.range(1, 16) as i64)),
        ("consecutive_errors", int(0)),
        (
            "rate_limit_delay_s",
            num(f64::from(r.range(5, 40) as u32) / 10.0),
        ),
        ("updated_at", s(rfc3339(updated))),
    ])
}

// ---------------------------------------------------------------------------
// Generation plan
// ---------------------------------------------------------------------------

enum Source {
    /// Product `slot` of page `page` in the plan.
    Listed { page: u32, slot: u32, variant: u32 },
    /// Product of a page that is not in the cache.
    Detached(u64),
}

struct AmazonItem {
    src: Source,
    scraped_at: i64,
    bytes: f64,
}

struct LinkItem {
    src: Source,
    linked_at: i64,
}

enum StateFile {
    Processing,
    Resume,
    Scrape(usize),
}

struct Plan {
    seed: u64,
    shape: Shape,
    pages: Vec<Page>,
    amazon: Vec<AmazonItem>,
    links: Vec<LinkItem>,
    states: Vec<StateFile>,
}

impl Plan {
    fn build(seed: u64, shape: Shape) -> Plan {
        let mut r = Rng::new(&[seed, T_PLAN]);

        // Pages per supplier by weight (largest remainder).
        let sups = &SUPPLIERS[..shape.suppliers];
        let total_w: f64 = sups.iter().map(|d| d.weight).sum();
        let quotas: Vec<f64> = sups
            .iter()
            .map(|d| shape.pages as f64 * d.weight / total_w)
            .collect();
        let mut counts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
        let mut order: Vec<usize> = (0..sups.len()).collect();
        order.sort_by(|&a, &b| {
            (quotas[b] - quotas[b].floor()).total_cmp(&(quotas[a] - quotas[a].floor()))
        });
        let short = shape.pages - counts.iter().sum::<usize>();
        for &i in order.iter().take(short) {
            counts[i] += 1;
        }

        let mut pages = Vec::with_capacity(shape.pages);
        for (sup, &budget) in counts.iter().enumerate() {
            let prof = profile(seed, sup);
            let mut cats = Cat::all();
            cats.sort_by_key(|c| key(&[seed, T_PLAN, sup as u64, c.parent as u64, c.child as u64]));
            let mut left = budget as u64;
            let mut ci = 0;
            while left > 0 {
                let cat = cats[ci % cats.len()];
                // Beyond the category list, keep extending the earliest ones.
                let first = (ci / cats.len()) as u64 * shape.pages_per_category.1 + 1;
                ci += 1;
                let n = r
                    .range(shape.pages_per_category.0, shape.pages_per_category.1)
                    .min(left);
                let base = recent(&mut r);
                for i in 0..n {
                    let no = first + i;
                    let products = match shape.page_products {
                        Some((lo, hi)) => r.range(lo, hi),
                        None if i + 1 == n => r.range((prof.page_size / 4).max(36), prof.page_size),
                        None => prof.page_size,
                    };
                    let scraped_at = (base + i as i64 * r.range(4, 40) as i64).min(NOW - 1);
                    pages.push(Page {
                        sup,
                        cat,
                        no,
                        products,
                        scraped_at,
                    });
                }
                left -= n;
            }
        }

        // Link targets: a share of listed products, chosen by hash order.
        let mut listed: Vec<(u64, u32, u32)> = pages
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| {
                (0..p.products)
                    .map(move |slot| (key(&[seed, T_LINK, p.uid(), slot]), pi as u32, slot as u32))
            })
            .collect();
        listed.sort_unstable();
        let n_current =
            ((shape.links as f64 * LINKED_CURRENT_SHARE).round() as usize).min(listed.len());
        let linked = &listed[..n_current];

        let mut links = Vec::with_capacity(shape.links + shape.links / 16);
        for (i, &(h, page, slot)) in linked.iter().enumerate() {
            links.push(LinkItem {
                src: Source::Listed {
                    page,
                    slot,
                    variant: 0,
                },
                linked_at: recent(&mut r),
            });
            // Some EANs map to several listings (multipacks, variations).
            if h % 100 < 4 || i == 0 {
                links.push(LinkItem {
                    src: Source::Listed {
                        page,
                        slot,
                        variant: 1,
                    },
                    linked_at: recent(&mut r),
                });
            }
        }
        let n_detached = shape.links.saturating_sub(links.len());
        for k in 0..n_detached as u64 {
            links.push(LinkItem {
                src: Source::Detached(k),
                linked_at: recent(&mut r),
            });
        }
        links.sort_by_key(|l| l.linked_at);

        // Amazon entries: most for linked listed products, the rest orphans
        // (ASINs found by search that never got a link).
        // A fifth of linked listings are never fetched (or have expired).
        let n_linked_amz =
            ((shape.amazon as f64 * AMAZON_LINKED_SHARE).round() as usize).min(n_current * 4 / 5);
        let mut by_amz: Vec<&(u64, u32, u32)> = linked.iter().collect();
        by_amz.sort_unstable_by_key(|x| mix(x.0 ^ T_AMAZON));
        let mut amazon: Vec<AmazonItem> = by_amz[..n_linked_amz]
            .iter()
            .map(|&&(_, page, slot)| AmazonItem {
                src: Source::Listed {
                    page,
                    slot,
                    variant: 0,
                },
                scraped_at: recent(&mut r),
                bytes: amazon_bytes(&mut r, shape.amazon_bytes),
            })
            .collect();
        for k in 0..(shape.amazon - amazon.len()) as u64 {
            amazon.push(AmazonItem {
                src: Source::Detached(k),
                scraped_at: recent(&mut r),
                bytes: amazon_bytes(&mut r, shape.amazon_bytes),
            });
        }

        let mut states = vec![StateFile::Processing, StateFile::Resume];
        if shape.supplier_states {
            states.extend(
                (0..shape.suppliers)
                    .filter(|&i| counts[i] > 0)
                    .map(StateFile::Scrape),
            );
        }

        Plan {
            seed,
            shape,
            pages,
            amazon,
            links,
            states,
        }
    }

    fn source_product(&self, src: &Source, tag: u64) -> (Product, String) {
        match *src {
            Source::Listed {
                page,
                slot,
                variant,
            } => {
                let pg = &self.pages[page as usize];
                let p = pg.product(self.seed, u64::from(slot));
                let a = asin_for(self.seed, pg.uid(), u64::from(slot), u64::from(variant));
                (p, a)
            }
            Source::Detached(k) => {
                let p = detached_product(self.seed, tag, k, self.shape.suppliers);
                let a = asin_for(self.seed, key(&[tag, k]), 0, 0);
                (p, a)
            }
        }
    }

    fn active_suppliers(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.pages.iter().map(|p| p.sup).collect();
        v.dedup();
        v
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Stats {
    fn add(&self, bytes: usize) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

fn set_mtime(f: &File, t: i64) -> io::Result<()> {
    f.set_modified(UNIX_EPOCH + Duration::from_secs(t.max(0) as u64))
}

fn put(root: &Path, rel: &str, data: &[u8], mtime: i64, stats: &Stats) -> io::Result<()> {
    let path = root.join(rel);
    let mut f = File::create(&path)?;
    f.write_all(data)?;
    set_mtime(&f, mtime)?;
    stats.add(data.len());
    Ok(())
}

/// Run `f(i, scratch)` for `i in 0..n` on all available cores.
fn parallel<F>(n: usize, f: F) -> io::Result<()>
where
    F: Fn(usize, &mut Vec<u8>) -> io::Result<()> + Sync,
{
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = Vec::with_capacity(1 << 20);
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = f(i, &mut buf) {
                        failed.store(true, Ordering::Relaxed);
                        first_err
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_err
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_link_map(plan: &Plan, root: &Path, stats: &Stats) -> io::Result<()> {
    let path = root.join(LINK_DIR).join(LINK_FILE);
    let file = File::create(&path)?;
    let mut w = BufWriter::with_capacity(1 << 20, &file);
    let mut buf = Vec::with_capacity(4096);
    let mut total = 0usize;
    let mut emit = |w: &mut BufWriter<&File>, b: &[u8]| -> io::Result<()> {
        total += b.len();
        w.write_all(b)
    };
    if plan.links.is_empty() {
        emit(&mut w, b"[]")?;
    } else {
        emit(&mut w, b"[")?;
        for (i, l) in plan.links.iter().enumerate() {
            let (p, a) = plan.source_product(&l.src, T_HIST);
            let mut r = Rng::new(&[plan.seed, T_LINK, i as u64]);
            let method = match l.src {
                Source::Listed { variant: 1.., .. } => "title_fuzzy",
                _ => r.pick(MATCH_METHODS),
            };
            buf.clear();
            buf.extend_from_slice(if i == 0 { b"\n  " } else { b",\n  " });
            write_json(
                &mut buf,
                &link_json(plan.seed, &p, &a, method, l.linked_at, &mut r),
                1,
            );
            emit(&mut w, &buf)?;
        }
        emit(&mut w, b"\n]")?;
    }
    w.flush()?;
    drop(w);
    let last = plan.links.last().map_or(NOW - DAY, |l| l.linked_at);
    set_mtime(&file, last)?;
    stats.add(total);
    Ok(())
}

fn generate(root: &Path, seed: u64, shape: Shape) -> Result<Stats> {
    let out = root.join("OUTPUTS");
    if out.exists() && fs::read_dir(&out)?.next().is_some() {
        return Err(format!("{} already exists and is not empty", out.display()).into());
    }
    let plan = Plan::build(seed, shape);
    for sup in plan.active_suppliers() {
        fs::create_dir_all(out.join(SUPPLIER_DIR).join(SUPPLIERS[sup].domain))?;
    }
    for d in [SUPPLIER_DIR, AMAZON_DIR, AI_DIR, LINK_DIR] {
        fs::create_dir_all(out.join(d))?;
    }

    let active = plan.active_suppliers();
    let mut scraped: BTreeMap<usize, Vec<Cat>> = BTreeMap::new();
    for p in &plan.pages {
        let v = scraped.entry(p.sup).or_default();
        if !v.contains(&p.cat) {
            v.push(p.cat);
        }
    }
    let mut pages_per_sup: BTreeMap<usize, u64> = BTreeMap::new();
    for p in &plan.pages {
        *pages_per_sup.entry(p.sup).or_default() += 1;
    }

    // Amazon file names must be unique; drop the (astronomically rare)
    // duplicate ASINs up front so the count stays honest.
    let mut seen = HashSet::with_capacity(plan.amazon.len());
    let amazon: Vec<(usize, String)> = plan
        .amazon
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let (_, asin) = plan.source_product(&a.src, T_ORPHAN);
            seen.insert(asin.clone()).then_some((i, asin))
        })
        .collect();

    let stats = Stats::default();
    let n_pages = plan.pages.len();
    let n_amazon = amazon.len();
    let n_ai = plan.shape.ai;
    let n_jobs = 1 + n_pages + n_amazon + n_ai + plan.states.len();
    parallel(n_jobs, |job, buf| {
        if job == 0 {
            return write_link_map(&plan, &out, &stats);
        }
        let mut j = job - 1;
        if j < n_pages {
            let pg = &plan.pages[j];
            dump(buf, &page_json(seed, pg));
            return put(
                &out,
                &page_path(pg.sup, pg.cat, pg.no),
                buf,
                pg.scraped_at,
                &stats,
            );
        }
        j -= n_pages;
        if j < n_amazon {
            let (i, asin) = &amazon[j];
            let item = &plan.amazon[*i];
            let (p, _) = plan.source_product(&item.src, T_ORPHAN);
            dump(
                buf,
                &amazon_json(seed, &p, asin, item.scraped_at, item.bytes),
            );
            return put(&out, &amazon_path(asin), buf, item.scraped_at, &stats);
        }
        j -= n_amazon;
        if j < n_ai {
            let mut r = Rng::new(&[seed, T_AI, j as u64, 0]);
            let sup = active[j % active.len()];
            let at = recent(&mut r);
            dump(buf, &ai_json(seed, j as u64, sup, at, &scraped[&sup]));
            let rel = format!(
                "{AI_DIR}/{}_{}.json",
                SUPPLIERS[sup].domain,
                compact_stamp(at)
            );
            return put(&out, &rel, buf, at, &stats);
        }
        j -= n_ai;
        let mut r = Rng::new(&[seed, T_STATE, j as u64, 9]);
        let at = NOW - 1 - r.below(6 * 3_600) as i64;
        let (rel, v) = match plan.states[j] {
            StateFile::Processing => (
                PROCESSING_STATE.to_owned(),
                processing_state(seed, active.len(), at, 0),
            ),
            StateFile::Resume => (
                RESUME_STATE.to_owned(),
                resume_state(seed, active.len(), at, 0),
            ),
            StateFile::Scrape(sup) => (
                format!("{SUPPLIER_DIR}/{}/scrape_state.json", SUPPLIERS[sup].domain),
                scrape_state(seed, sup, pages_per_sup[&sup], at),
            ),
        };
        dump(buf, &v);
        put(&out, &rel, buf, at, &stats)
    })?;
    Ok(stats)
}

// ---------------------------------------------------------------------------
// Mutation
// ---------------------------------------------------------------------------

struct DayReport {
    new_amazon: usize,
    rewritten: usize,
    deleted: usize,
    new_pages: usize,
    new_links: usize,
    written: Stats,
}

fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Ok(name) = e.file_name().into_string() {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

/// Replace the file in place (same inode), as `open(path, "w")` does.
fn rewrite(root: &Path, rel: &str, data: &[u8], mtime: i64, stats: &Stats) -> io::Result<()> {
    put(root, rel, data, mtime, stats)
}

fn mutate(root: &Path, seed: u64, day: u64) -> Result<DayReport> {
    let out = root.join("OUTPUTS");
    if !out.is_dir() {
        return Err(format!("{} does not exist; generate a tree first", out.display()).into());
    }
    let stats = Stats::default();
    let mut r = Rng::new(&[seed, T_DAY, day]);
    let nsup = SUPPLIERS.len();

    // Supplier pages: extend a few categories by one page.
    let mut last_page: BTreeMap<(usize, Cat), u64> = BTreeMap::new();
    let mut n_pages = 0usize;
    let sup_root = out.join(SUPPLIER_DIR);
    if sup_root.is_dir() {
        for dir in list_dir(&sup_root)? {
            let Some(sup) = SUPPLIERS.iter().position(|d| d.domain == dir) else {
                continue;
            };
            if !sup_root.join(&dir).is_dir() {
                continue;
            }
            for name in list_dir(&sup_root.join(&dir))? {
                let Some((cat, no)) = name
                    .strip_suffix(".json")
                    .and_then(|n| n.rsplit_once("_page_"))
                    .and_then(|(c, n)| Some((Cat::from_file_key(c)?, n.parse::<u64>().ok()?)))
                else {
                    continue;
                };
                n_pages += 1;
                let e = last_page.entry((sup, cat)).or_default();
                *e = (*e).max(no);
            }
        }
    }
    let k_pages = if n_pages == 0 {
        0
    } else {
        ((n_pages as f64 * 0.005).round() as usize).max(1)
    };
    let mut groups: Vec<((usize, Cat), u64)> = last_page.into_iter().collect();
    groups.sort_by_key(|((sup, cat), _)| {
        key(&[seed, T_DAY, day, *sup as u64, hstr(&cat.file_key())])
    });
    let mut new_products = Vec::new();
    for &((sup, cat), last) in groups.iter().take(k_pages) {
        let prof = profile(seed, sup);
        let page = Page {
            sup,
            cat,
            no: last + 1,
            products: r.range((prof.page_size / 4).max(36), prof.page_size),
            scraped_at: on_day(&mut r, day),
        };
        let mut buf = Vec::new();
        dump(&mut buf, &page_json(seed, &page));
        put(
            &out,
            &page_path(sup, cat, page.no),
            &buf,
            page.scraped_at,
            &stats,
        )?;
        let uid = page.uid();
        new_products.extend(
            (0..page.products).map(|slot| (page.product(seed, slot), asin_for(seed, uid, slot, 0))),
        );
    }

    // Linking map size drives how many new links the day produces.
    let link_path = out.join(LINK_DIR).join(LINK_FILE);
    let link_text = if link_path.is_file() {
        fs::read(&link_path)?
    } else {
        b"[]".to_vec()
    };
    let n_links = count(&link_text, b"\"supplier_ean\":");
    let k_links = ((n_links as f64 * 0.01).round() as usize).max(1);

    // Amazon cache.
    let amazon_dir = out.join(AMAZON_DIR);
    fs::create_dir_all(&amazon_dir)?;
    let names: Vec<String> = list_dir(&amazon_dir)?
        .into_iter()
        .filter(|n| n.starts_with("amazon_") && n.ends_with(".json"))
        .collect();
    let existing: HashSet<&str> = names.iter().map(String::as_str).collect();
    let n = names.len();
    let k_new = (n as f64 * 0.03).round() as usize;
    let k_rewrite = (n as f64 * 0.02).round() as usize;
    let k_delete = (n as f64 * 0.01).round() as usize;
    let mut order: Vec<&String> = names.iter().collect();
    order.sort_by_key(|name| key(&[seed, T_DAY, day, hstr(name)]));

    let mut buf = Vec::with_capacity(1 << 16);
    let mut rewritten = 0;
    for name in order.iter().take(k_rewrite) {
        let rel = format!("{AMAZON_DIR}/{name}");
        let mut v = match Parser::parse(&fs::read(out.join(&rel))?) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("gen_corpus: skipping unparsable {rel}: {e}");
                continue;
            }
        };
        let mut fr = Rng::new(&[seed, T_DAY, day, hstr(name)]);
        let at = on_day(&mut fr, day);
        let old = v.get("price").and_then(J::as_f64).unwrap_or(9.99);
        let price = retail_cents(old * (1.0 + 0.04 * fr.normal()).max(0.5));
        v.set("scraped_at", s(rfc3339(at)));
        v.set("price", money(price));
        if let Some(bsr) = v.get("bsr").and_then(J::as_f64) {
            v.set("bsr", int(((bsr * (0.7 + 0.7 * fr.unit())) as i64).max(1)));
        }
        if let Some(reviews) = v.get("reviews").and_then(J::as_f64) {
            v.set("reviews", int(reviews as i64 + fr.below(6) as i64));
        }
        let point = J::Arr(vec![s(rfc3339(at)), money(price)]);
        match v.get_mut("price_history") {
            Some(J::Arr(h)) => h.push(point),
            _ => v.set("price_history", J::Arr(vec![point])),
        }
        dump(&mut buf, &v);
        rewrite(&out, &rel, &buf, at, &stats)?;
        rewritten += 1;
    }
    let mut deleted = 0;
    for name in order.iter().skip(k_rewrite).take(k_delete) {
        fs::remove_file(amazon_dir.join(name))?;
        deleted += 1;
    }

    // New links: products of today's pages first, then detached ones.
    let mut links: Vec<(Product, String, &str)> = Vec::with_capacity(k_links);
    let mut new_iter = new_products.into_iter();
    for i in 0..k_links as u64 {
        let mut lr = Rng::new(&[seed, T_DAY, day, T_LINK, i]);
        let (p, a) = new_iter.next().unwrap_or_else(|| {
            let tag = key(&[T_DAY, day, T_LINK]);
            (
                detached_product(seed, tag, i, nsup),
                asin_for(seed, key(&[tag, i]), 0, 0),
            )
        });
        links.push((p, a, lr.pick(MATCH_METHODS)));
    }

    // New amazon entries: today's linked products first, then orphans.
    let mut added = 0;
    let mut taken: HashSet<String> = HashSet::new();
    for i in 0..k_new as u64 {
        let mut ar = Rng::new(&[seed, T_DAY, day, T_AMAZON, i]);
        let owned;
        let (p, a) = if let Some((p, a, _)) = links.get(i as usize) {
            (p, a.clone())
        } else {
            let tag = key(&[T_DAY, day, T_ORPHAN]);
            owned = detached_product(seed, tag, i, nsup);
            (&owned, asin_for(seed, key(&[tag, i]), 0, 0))
        };
        let file = format!("amazon_{a}.json");
        if existing.contains(file.as_str()) || !taken.insert(file) {
            continue;
        }
        let at = on_day(&mut ar, day);
        let bytes = amazon_bytes(&mut ar, (2_000.0, 40_000.0));
        dump(&mut buf, &amazon_json(seed, p, &a, at, bytes));
        put(&out, &amazon_path(&a), &buf, at, &stats)?;
        added += 1;
    }

    // Linking map: append and rewrite whole via temp file + rename.
    let mut stamped: Vec<(i64, usize)> = (0..links.len())
        .map(|i| {
            (
                on_day(&mut Rng::new(&[seed, T_DAY, day, T_LINK, i as u64, 1]), day),
                i,
            )
        })
        .collect();
    stamped.sort_unstable();
    let end = link_text
        .iter()
        .rposition(|&b| b == b']')
        .ok_or("linking map is not a JSON array")?;
    let head = &link_text[..end];
    let head_trim = head.len()
        - head
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    let empty = head[..head_trim].ends_with(b"[");
    let mut text = Vec::with_capacity(link_text.len() + links.len() * 700);
    text.extend_from_slice(&head[..head_trim]);
    for (n, &(at, i)) in stamped.iter().enumerate() {
        let (p, a, method) = &links[i];
        let mut lr = Rng::new(&[seed, T_DAY, day, T_LINK, i as u64, 2]);
        text.extend_from_slice(if n == 0 && empty { b"\n  " } else { b",\n  " });
        write_json(&mut text, &link_json(seed, p, a, method, at, &mut lr), 1);
    }
    text.extend_from_slice(if stamped.is_empty() && empty {
        b"]"
    } else {
        b"\n]"
    });
    fs::create_dir_all(out.join(LINK_DIR))?;
    let tmp = format!("{LINK_DIR}/.{LINK_FILE}.tmp");
    let last = stamped.last().map_or(on_day(&mut r, day), |x| x.0);
    put(&out, &tmp, &text, last, &stats)?;
    fs::rename(out.join(&tmp), &link_path)?;

    // The agent checkpoints its state at the end of the day's run.
    let active = SUPPLIERS
        .iter()
        .filter(|d| sup_root.join(d.domain).is_dir())
        .count()
        .max(1);
    let at = NOW + day as i64 * DAY + 22 * 3_600 + r.below(3_600) as i64;
    for (rel, v) in [
        (PROCESSING_STATE, processing_state(seed, active, at, day)),
        (RESUME_STATE, resume_state(seed, active, at, day)),
    ] {
        if out.join(rel).is_file() {
            dump(&mut buf, &v);
            rewrite(&out, rel, &buf, at, &stats)?;
        }
    }

    Ok(DayReport {
        new_amazon: added,
        rewritten,
        deleted,
        new_pages: k_pages.min(groups.len()),
        new_links: links.len(),
        written: stats,
    })
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

const USAGE: &str = "usage:
  gen_corpus DIR --scale S [--seed N]          generate DIR/OUTPUTS
  gen_corpus DIR --mutate --day D [--seed N]   apply mutation day D (1, 2, ...)
  gen_corpus DIR --fixture [--seed N]          write the small committed fixture tree";

struct Args {
    dir: PathBuf,
    scale: Option<f64>,
    seed: u64,
    mutate: bool,
    day: Option<u64>,
    fixture: bool,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: PathBuf::new(),
        scale: None,
        seed: 1,
        mutate: false,
        day: None,
        fixture: false,
    };
    let mut dir = None;
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--scale" => a.scale = Some(val("--scale")?.parse()?),
            "--seed" => a.seed = val("--seed")?.parse()?,
            "--day" => a.day = Some(val("--day")?.parse()?),
            "--mutate" => a.mutate = true,
            "--fixture" => a.fixture = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}").into()),
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}\n{USAGE}").into()),
        }
    }
    a.dir = dir.ok_or(USAGE)?;
    let modes = usize::from(a.scale.is_some()) + usize::from(a.mutate) + usize::from(a.fixture);
    if modes != 1 {
        return Err(format!("choose exactly one of --scale, --mutate, --fixture\n{USAGE}").into());
    }
    if a.scale.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
        return Err("--scale must be a positive number".into());
    }
    if a.mutate && a.day.unwrap_or(0) < 1 {
        return Err("--mutate needs --day D with D >= 1".into());
    }
    Ok(a)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_corpus: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let a = parse_args()?;
    let start = Instant::now();
    if a.mutate {
        let day = a.day.unwrap_or(1);
        let d = mutate(&a.dir, a.seed, day)?;
        eprintln!(
            "gen_corpus: day {day}: amazon +{} ~{} -{}, supplier pages +{}, links +{}; {} files / {:.1} MB written, {} removed in {:.2}s",
            d.new_amazon,
            d.rewritten,
            d.deleted,
            d.new_pages,
            d.new_links,
            d.written.files.load(Ordering::Relaxed),
            mb(d.written.bytes.load(Ordering::Relaxed)),
            d.deleted,
            start.elapsed().as_secs_f64()
        );
    } else {
        let (shape, label) = match a.scale {
            Some(s) => (Shape::scaled(s), format!("scale {s}")),
            None => (Shape::fixture(), "fixture".to_owned()),
        };
        let st = generate(&a.dir, a.seed, shape)?;
        eprintln!(
            "gen_corpus: {label}, seed {}: {} files, {:.1} MB in {:.2}s",
            a.seed,
            st.files.load(Ordering::Relaxed),
            mb(st.bytes.load(Ordering::Relaxed)),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
