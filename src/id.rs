//! `BlobId`: the blake3 hash that names every blob, archive and snapshot; hex in JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 256-bit blake3 digest naming a piece of content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The first eight bytes as a number: ordered as the ids are, and enough to tell two
    /// ids apart nearly always.
    pub fn head(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("an id has 32 bytes"))
    }

    /// The blake3 hash of `data`.
    pub fn of(data: &[u8]) -> BlobId {
        BlobId(*blake3::hash(data).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let buf = self.hex_bytes();
        std::str::from_utf8(&buf).expect("hex is ASCII").to_string()
    }

    fn hex_bytes(&self) -> [u8; 64] {
        let mut buf = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = HEX[(b >> 4) as usize];
            buf[2 * i + 1] = HEX[(b & 15) as usize];
        }
        buf
    }

    /// The first 8 hex characters, as shown to people.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl std::hash::Hash for BlobId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Eight bytes of a uniform hash are as good a key as all 32.
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(b));
    }
}

impl From<blake3::Hash> for BlobId {
    fn from(h: blake3::Hash) -> Self {
        BlobId(*h.as_bytes())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

/// Error for a string that is not 64 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a 64-character hex id")]
pub struct ParseIdError(pub String);

impl FromStr for BlobId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobId::from_hex(s.as_bytes()).ok_or_else(|| ParseIdError(s.to_string()))
    }
}

impl BlobId {
    /// Decodes 64 lower-case hex digits; None for anything else. Eight digits at a time,
    /// as one 64-bit word (each byte checked to be a digit, then turned into its value and
    /// paired with its neighbour), not one table lookup a digit: every index file and
    /// entry list holds an id or more a line.
    pub fn from_hex(hex: &[u8]) -> Option<BlobId> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = ONES * 0x80;
        let hex: &[u8; 64] = hex.try_into().ok()?;
        let mut out = [0u8; 32];
        let mut bad = 0u64;
        for (digits, bytes) in hex.chunks_exact(8).zip(out.chunks_exact_mut(4)) {
            let x = u64::from_le_bytes(digits.try_into().expect("eight digits"));
            // For bytes below 0x80 (others are bad whatever follows), neither sum nor
            // difference carries into the next byte: the high bit of each byte says
            // whether it is at least `lo`, or at most `hi`.
            let at_least = |lo: u64| x.wrapping_add(ONES * (0x80 - lo)) & HIGH;
            let at_most = |hi: u64| (ONES * (0x80 + hi)).wrapping_sub(x) & HIGH;
            let digit = at_least(u64::from(b'0')) & at_most(u64::from(b'9'));
            let letter = at_least(u64::from(b'a')) & at_most(u64::from(b'f'));
            bad |= (x & HIGH) | ((digit | letter) ^ HIGH);
            // A digit's value is its low four bits, plus 9 for a letter (bit 6 set).
            let v = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
            // Each even byte takes the next as its low half; then the even bytes close up.
            let w = ((v << 4) | (v >> 8)) & 0x00ff_00ff_00ff_00ff;
            let w = (w | (w >> 8)) & 0x0000_ffff_0000_ffff;
            let w = (w | (w >> 16)) as u32;
            bytes.copy_from_slice(&w.to_le_bytes());
        }
        (bad == 0).then_some(BlobId(out))
    }
}

/// Hasher for maps keyed by [`BlobId`]: the id is already a uniform hash, so its first
/// eight bytes are used as is (much cheaper than SipHash over 32 bytes).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// `HashMap` keyed by blob ids.
pub type IdMap<V> = std::collections::HashMap<BlobId, V, std::hash::BuildHasherDefault<IdHasher>>;
/// `HashSet` of blob ids.
pub type IdSet = std::collections::HashSet<BlobId, std::hash::BuildHasherDefault<IdHasher>>;

/// A set of blob ids that only grows, at 33 bytes an id: a sorted vector with a table of
/// where each bucket of it starts, and a short hashed tail merged into it when full. A hash set takes 38 to 75 bytes an id (its table
/// is a power of two, two thirds to seven eighths full) and half as much again while it
/// grows; the set of the blobs a first snapshot claims holds one id per file.
#[derive(Default)]
pub struct GrowingIdSet {
    sorted: Vec<BlobId>,
    tail: IdSet,
    /// `starts[k]..starts[k + 1]`: where the ids whose first `bits` bits are `k` lie in
    /// `sorted`, about eight a bucket (a byte an id): a lookup touches the table and a few
    /// neighbouring ids, where a search by halves of the whole vector missed the cache at
    /// most of its seventeen steps (2.5% of an initial snapshot's CPU).
    starts: Vec<usize>,
    bits: u32,
}

/// The order of ids (their bytes'), settled by [`BlobId::head`] in nearly every comparison:
/// a byte-by-byte compare of whole ids was 3.6% of an initial snapshot's CPU.
pub fn id_order(a: &BlobId, b: &BlobId) -> std::cmp::Ordering {
    a.head().cmp(&b.head()).then_with(|| a.0.cmp(&b.0))
}

/// The bucket of `id` among `1 << bits` (`bits` from 1 to 24): its first `bits` bits.
fn bucket(id: &BlobId, bits: u32) -> usize {
    (id.head() >> (64 - bits)) as usize
}

/// Ids gathered in [`GrowingIdSet`]'s tail before it is merged into the sorted vector.
const GROWING_TAIL: usize = 4096;

impl GrowingIdSet {
    /// Adds `id`; true when it was not in the set.
    pub fn insert(&mut self, id: BlobId) -> bool {
        if self.contains(&id) {
            return false;
        }
        if self.tail.capacity() == 0 {
            self.tail.reserve(GROWING_TAIL);
        }
        self.tail.insert(id);
        if self.tail.len() >= GROWING_TAIL {
            self.merge_tail();
        }
        true
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &BlobId) -> bool {
        if self.tail.contains(id) {
            return true;
        }
        if self.sorted.is_empty() {
            return false;
        }
        let k = bucket(id, self.bits);
        self.sorted[self.starts[k]..self.starts[k + 1]]
            .binary_search_by(|x| id_order(x, id))
            .is_ok()
    }

    /// How many ids the set holds.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.tail.len()
    }

    /// Whether the set holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges the tail into the sorted vector in place, from the back: no second vector.
    fn merge_tail(&mut self) {
        let mut tail: Vec<BlobId> = self.tail.drain().collect();
        tail.sort_unstable_by(id_order);
        let old = self.sorted.len();
        self.sorted.resize(old + tail.len(), BlobId([0; 32]));
        let (mut i, mut k) = (old, self.sorted.len());
        while let Some(t) = tail.last() {
            k -= 1;
            if i > 0 && id_order(&self.sorted[i - 1], t) == std::cmp::Ordering::Greater {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = *t;
                tail.pop();
            }
        }
        self.bits = (usize::BITS - self.sorted.len().leading_zeros())
            .saturating_sub(3)
            .clamp(1, 24);
        self.starts.clear();
        self.starts.resize((1 << self.bits) + 1, 0);
        for id in &self.sorted {
            self.starts[bucket(id, self.bits) + 1] += 1;
        }
        for k in 1..self.starts.len() {
            self.starts[k] += self.starts[k - 1];
        }
    }
}

impl Serialize for BlobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buf = self.hex_bytes();
        s.serialize_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
    }
}

/// Reads an id from a string's bytes (`deserialize_bytes`): no UTF-8 check, and no copy
/// unless the string holds escapes (serde_json still resolves them), since an id is 64
/// ASCII hex digits.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = BlobId;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a 64-character hex id")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<BlobId, E> {
        BlobId::from_hex(v)
            .ok_or_else(|| E::custom(ParseIdError(String::from_utf8_lossy(v).into_owned())))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BlobId, E> {
        self.visit_bytes(v.as_bytes())
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_rejects_bad_input() {
        let id = BlobId::of(b"hello");
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("xyz".parse::<BlobId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<BlobId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
        // From a parsed value too (its strings are owned), and the culprit named.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::from_value::<BlobId>(value).unwrap(), id);
        let bad = format!("\"{}g\"", &id.to_hex()[..63]);
        let err = serde_json::from_str::<BlobId>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("g\" is not a 64-character hex id"), "{err}");
        assert!(serde_json::from_str::<BlobId>("[1, 2]").is_err());
    }

    /// Ids inserted over several merges of the tail, repeats among them across merges:
    /// each insert says what a hash set says, and the set holds exactly what went in.
    #[test]
    fn a_growing_id_set_answers_as_a_hash_set_does() {
        let mut set = GrowingIdSet::default();
        let mut reference = std::collections::HashSet::new();
        let n = 3 * GROWING_TAIL as u64 + 123;
        for i in 0..2 * n {
            // Every id twice, the second time long after the first (a merge between),
            // some a third time right away.
            let k = if i < n { i } else { (i * 7919) % n };
            let id = BlobId::of(&k.to_le_bytes());
            assert_eq!(set.insert(id), reference.insert(id), "insert {i} (id {k})");
            if k % 5 == 0 {
                assert!(!set.insert(id));
            }
        }
        assert_eq!(set.len(), reference.len());
        assert!(set.sorted.windows(2).all(|w| w[0] < w[1]));
        for k in 0..n {
            assert!(set.contains(&BlobId::of(&k.to_le_bytes())), "id {k}");
        }
        for k in n..n + 1000 {
            assert!(!set.contains(&BlobId::of(&k.to_le_bytes())), "id {k}");
        }
    }

    /// Reference decoding: a pair of lower-case hex digits at a time.
    fn unhex_pairs(s: &[u8]) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        for (o, pair) in out.iter_mut().zip(s.chunks(2)) {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            *o = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Some(out)
    }

    proptest::proptest! {
        /// Every id's hex decodes back to it.
        #[test]
        fn hex_of_any_id_decodes_to_it(bytes in proptest::array::uniform32(0u8..)) {
            let id = BlobId(bytes);
            proptest::prop_assert_eq!(BlobId::from_hex(id.to_hex().as_bytes()), Some(id));
        }

        /// Digits changed to any byte (the neighbours of the digit ranges, upper case,
        /// bytes above 0x7f) decode as a pair at a time would, or not at all.
        #[test]
        fn any_64_bytes_decode_as_pairs_would(
            bytes in proptest::array::uniform32(0u8..),
            changes in proptest::collection::vec(
                (0usize..64, proptest::prop_oneof![
                    proptest::sample::select(b"/09:@AF`afg\x7f\x80\xb0\xe6\xff\x00".to_vec()),
                    0u8..,
                ]),
                0..4,
            ),
        ) {
            let mut hex = BlobId(bytes).to_hex().into_bytes();
            for (at, b) in changes {
                hex[at] = b;
            }
            proptest::prop_assert_eq!(BlobId::from_hex(&hex).map(|id| id.0), unhex_pairs(&hex));
        }
    }
}
