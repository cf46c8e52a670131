//! Every object name of a repository, spelled once: how an id becomes a name and a name an id.
//! Nothing else in the code writes `.tar.zst`, `.json` or `schedule.json`.

use chrono::{DateTime, FixedOffset};

use crate::id::BlobId;

/// The repository's config object.
pub const CONFIG: &str = crate::backend::CONFIG_NAME;
/// The run-due schedule state.
pub const SCHEDULE: &str = "schedule.json";

const ARCHIVE_SUFFIX: &str = ".tar.zst";
const JSON_SUFFIX: &str = ".json";
const JOURNAL_SUFFIX: &str = ".jsonl";

/// Name of an archive: `<id>.tar.zst`.
pub fn archive(id: &BlobId) -> String {
    format!("{}{ARCHIVE_SUFFIX}", id.to_hex())
}

/// The id an archive name carries, if it is one.
pub fn archive_id(name: &str) -> Option<BlobId> {
    name.strip_suffix(ARCHIVE_SUFFIX)?.parse().ok()
}

/// Name of an archive's index: `<archive id>.json`.
pub fn index(archive: &BlobId) -> String {
    format!("{}{JSON_SUFFIX}", archive.to_hex())
}

/// The archive id an index name carries, if it is one.
pub fn index_id(name: &str) -> Option<BlobId> {
    name.strip_suffix(JSON_SUFFIX)?.parse().ok()
}

/// Name of a snapshot manifest: `<snapshot id>.json`.
pub fn manifest(id: &BlobId) -> String {
    format!("{}{JSON_SUFFIX}", id.to_hex())
}

/// The snapshot id a manifest name carries, if it is one.
pub fn manifest_id(name: &str) -> Option<BlobId> {
    name.strip_suffix(JSON_SUFFIX)?.parse().ok()
}

/// Whether a name in the manifests' namespace is meant to be a manifest (even one whose name
/// is not an id: that is damage to report, not a file to ignore).
pub fn is_manifest_name(name: &str) -> bool {
    name.ends_with(JSON_SUFFIX)
}

/// Name of the journal object of the month of `time`: `YYYY-MM.jsonl`.
pub fn journal(time: &DateTime<FixedOffset>) -> String {
    format!("{}{JOURNAL_SUFFIX}", time.format("%Y-%m"))
}

/// Whether a name is a journal object.
pub fn is_journal(name: &str) -> bool {
    name.ends_with(JOURNAL_SUFFIX)
}

/// Name of a key file: `<key id>.json`.
pub fn key(id: &str) -> String {
    format!("{id}{JSON_SUFFIX}")
}

/// The key id a key file name carries, if it is one (64 hex characters).
pub fn key_id(name: &str) -> Option<String> {
    let id = name.strip_suffix(JSON_SUFFIX)?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// Name of an operation record: `<operation id>.json`.
pub fn record(id: &str) -> String {
    format!("{id}{JSON_SUFFIX}")
}

/// Whether a name is an operation record.
pub fn is_record(name: &str) -> bool {
    name.ends_with(JSON_SUFFIX)
}

/// Name under which a damaged object is set aside: its path in the repository with `/`
/// replaced by `-` (`archives-<id>.tar.zst`), numbered (`.1`, `.2`) when taken.
pub fn set_aside(path: &str, n: u32) -> String {
    let flat = path.replace('/', "-");
    if n == 0 {
        flat
    } else {
        format!("{flat}.{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let id = BlobId::of(b"x");
        assert_eq!(archive_id(&archive(&id)), Some(id));
        assert_eq!(index_id(&index(&id)), Some(id));
        assert_eq!(manifest_id(&manifest(&id)), Some(id));
        assert_eq!(archive_id("x.tar.zst"), None);
        assert_eq!(set_aside("archives/a.tar.zst", 2), "archives-a.tar.zst.2");
    }
}
