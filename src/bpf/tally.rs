//! The BPF iterators' records, counted into buffers and their holders: the same facts the /proc
//! walk gathers, with the same rules for threads. Pure, like the parser.
//!
//! The task iterators visit a thread group through its leader and through every thread whose
//! fd table differs from the leader's: one that called `unshare(CLONE_FILES)`, and, once the
//! leader has exited (its table is gone), every remaining thread. So an fd table is counted
//! once per process (the first thread it was reached through), like `kcmp` does for /proc, and
//! an address space once per process likewise.

use std::collections::{BTreeMap, HashMap};

use super::records::{self, Record, RecordError};
use crate::account::Buffer;
use crate::scan::model_name;

/// Why records could not be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    /// The bytes are not records.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// An fd or mapping of a buffer no earlier record described: the program emits the
    /// description first, so the stream is not what it wrote.
    #[error("BPF record refers to undescribed buffer inode {0}")]
    Undescribed(u64),
}

/// Buffers by inode, with their fd and mapping counts per process, from the records in `bytes`.
pub fn tally(bytes: &[u8]) -> Result<BTreeMap<u64, Buffer>, TallyError> {
    let mut buffers = BTreeMap::new();
    // (tgid, fd table or address space) -> the one thread it is counted through.
    let mut tables: HashMap<(i32, u64), i32> = HashMap::new();
    let mut spaces: HashMap<(i32, u64), i32> = HashMap::new();
    for record in records::parse(bytes) {
        let (inode, tgid, refs) = match record? {
            Record::Buffer(b) => {
                buffers.entry(b.inode).or_insert_with(|| Buffer {
                    inode: b.inode,
                    size: b.size,
                    exporter: b.exporter_name(),
                    name: model_name(b.name),
                    ..Buffer::default()
                });
                continue;
            }
            Record::Fd(f) => {
                if *tables.entry((f.tgid, f.files)).or_insert(f.tid) != f.tid {
                    continue;
                }
                (f.inode, f.tgid, Refs::Fd)
            }
            Record::Vma(v) => {
                if *spaces.entry((v.tgid, v.mm)).or_insert(v.tid) != v.tid {
                    continue;
                }
                (v.inode, v.tgid, Refs::Map)
            }
        };
        let b = buffers.get_mut(&inode).ok_or(TallyError::Undescribed(inode))?;
        let counts = match refs {
            Refs::Fd => &mut b.fd_refs,
            Refs::Map => &mut b.map_refs,
        };
        *counts.entry(tgid).or_default() += 1;
    }
    Ok(buffers)
}

enum Refs {
    Fd,
    Map,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(words: &[u64], kind: u32, head: [u32; 3]) -> Vec<u8> {
        let mut r = [kind, head[0], head[1], head[2]].map(u32::to_ne_bytes).concat();
        r.extend(words.iter().flat_map(|w| w.to_ne_bytes()));
        r
    }

    fn buffer(inode: u64) -> Vec<u8> {
        let mut r = rec(&[inode, 4096], 1, [0; 3])[..].to_vec();
        r.drain(8..16);
        r.resize(24 + records::NAME_LEN + records::EXPORTER_LEN, 0);
        r[24] = b'n';
        r
    }

    /// Process 10's leader and a thread sharing its table (visited twice when the leader has
    /// exited), a thread with its own table, and mappings reached through two threads of one
    /// address space: each table and address space counts once.
    #[test]
    fn tables_and_spaces_count_once_per_process() {
        let bytes = [
            buffer(7),
            rec(&[0xa, 7], 2, [10, 11, 3]),
            rec(&[0xa, 7], 2, [10, 12, 3]),
            rec(&[0xa, 7], 2, [10, 11, 4]),
            rec(&[0xb, 7], 2, [10, 13, 3]),
            rec(&[0xc, 7], 2, [20, 20, 3]),
            rec(&[0xd, 7, 0, 4096, 0], 3, [10, 11, 0]),
            rec(&[0xd, 7, 0, 4096, 0], 3, [10, 13, 0]),
        ]
        .concat();
        let got = tally(&bytes).expect("well-formed");
        let b = &got[&7];
        assert_eq!((b.size, b.name.as_ref().and_then(|n| n.to_str())), (4096, Some("n")));
        assert_eq!(b.fd_refs, [(10, 3), (20, 1)].into());
        assert_eq!(b.map_refs, [(10, 1)].into());
    }

    #[test]
    fn reference_before_description_is_refused() {
        let bytes = rec(&[0xa, 7], 2, [10, 10, 3]);
        assert_eq!(tally(&bytes), Err(TallyError::Undescribed(7)));
    }
}
