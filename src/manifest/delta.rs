//! The plaintext of a delta part: the pages of a relation file that changed since the parent
//! backup, as `(block, page)` records after an 8-byte magic. Block numbers count from the start
//! of the file (not of the relation). Knows nothing of how parts are stored.

use crate::pg::page::PAGE_SIZE;

const MAGIC: &[u8; 8] = b"PGKDLT01";
const RECORD: usize = 4 + PAGE_SIZE;

/// Builds one delta part.
#[derive(Debug)]
pub struct DeltaWriter {
    buf: Vec<u8>,
}

impl Default for DeltaWriter {
    fn default() -> Self {
        DeltaWriter {
            buf: MAGIC.to_vec(),
        }
    }
}

impl DeltaWriter {
    pub fn push(&mut self, block: u32, page: &[u8]) {
        debug_assert_eq!(page.len(), PAGE_SIZE);
        self.buf.extend_from_slice(&block.to_le_bytes());
        self.buf.extend_from_slice(page);
    }

    pub fn pages(&self) -> usize {
        (self.buf.len() - MAGIC.len()) / RECORD
    }

    /// Bytes held so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages() == 0
    }

    /// The finished part; `self` starts over.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.buf, MAGIC.to_vec())
    }
}

/// The records of a delta part, checked for shape.
pub fn records(part: &[u8]) -> Result<impl Iterator<Item = (u32, &[u8])>, String> {
    let body = part
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a delta part (bad magic)")?;
    if body.len() % RECORD != 0 {
        return Err(format!(
            "delta part of {} bytes is not a whole number of pages",
            part.len()
        ));
    }
    Ok(body.chunks_exact(RECORD).map(|r| {
        let block = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
        (block, &r[4..])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_shapes_are_refused() {
        let mut w = DeltaWriter::default();
        assert!(w.is_empty());
        w.push(3, &[1u8; PAGE_SIZE]);
        w.push(70_000, &[2u8; PAGE_SIZE]);
        assert_eq!(w.pages(), 2);
        let part = w.take();
        assert!(w.is_empty());
        let got: Vec<(u32, u8)> = records(&part).unwrap().map(|(b, p)| (b, p[0])).collect();
        assert_eq!(got, vec![(3, 1), (70_000, 2)]);
        assert!(records(&part[..part.len() - 1]).is_err());
        assert!(records(b"PGKDLT00").is_err());
    }
}
