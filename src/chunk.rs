//! Cutting file content into blobs: a small file is one blob, a large one is cut by FastCDC
//! so that a rewritten file whose only change is an appended tail adds only the tail.

use std::io::Read;

use crate::repo::ChunkerParams;

/// Calls `on_chunk` with each blob of the content of `reader` (of `size` bytes as stat'ed),
/// in order. Empty content yields no blob.
pub fn for_each_chunk(
    reader: impl Read,
    size: u64,
    params: &ChunkerParams,
    mut on_chunk: impl FnMut(&[u8]) -> crate::Result<()>,
) -> std::io::Result<crate::Result<()>> {
    if size < u64::from(params.threshold) {
        let mut buf = Vec::with_capacity(size as usize + 1);
        reader
            .take(u64::from(params.threshold))
            .read_to_end(&mut buf)?;
        if buf.len() as u64 >= u64::from(params.threshold) {
            // Grew past the threshold while we read: the caller's re-stat notices.
            return Ok(on_chunk(&buf));
        }
        if buf.is_empty() {
            return Ok(Ok(()));
        }
        return Ok(on_chunk(&buf));
    }
    let cdc =
        fastcdc::v2020::StreamCDC::new(reader, params.min_size, params.avg_size, params.max_size);
    for chunk in cdc {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        if let Err(e) = on_chunk(&chunk.data) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], params: &ChunkerParams) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for_each_chunk(data, data.len() as u64, params, |c| {
            out.push(c.to_vec());
            Ok(())
        })
        .unwrap()
        .unwrap();
        out
    }

    #[test]
    fn small_is_one_blob_large_is_cut_and_reassembles() {
        let p = ChunkerParams::default();
        assert_eq!(chunks(b"", &p).len(), 0);
        assert_eq!(chunks(b"abc", &p), vec![b"abc".to_vec()]);
        let mut big = Vec::new();
        let mut x: u64 = 1;
        while big.len() < 5 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            big.extend_from_slice(format!("{{\"n\": {}}},\n", x % 100000).as_bytes());
        }
        let cs = chunks(&big, &p);
        assert!(cs.len() > 4);
        assert!(cs.iter().all(|c| c.len() <= p.max_size as usize));
        assert_eq!(cs.concat(), big);
    }
}
