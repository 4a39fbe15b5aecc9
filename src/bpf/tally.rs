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
use crate::account::{Buffer, Process};
use crate::procfs::status::comm_as_printed;
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
    /// An fd or mapping of a process no earlier record described.
    #[error("BPF record refers to undescribed process {0}")]
    UndescribedProcess(i32),
}

/// What a pass saw: buffers by inode with their fd and mapping counts per process, and every
/// process that holds one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Buffers by inode.
    pub buffers: BTreeMap<u64, Buffer>,
    /// Holders by pid, named as `/proc/<pid>/status` names them.
    pub processes: BTreeMap<i32, Process>,
}

/// The buffers and holders the records in `bytes` describe.
pub fn tally(bytes: &[u8]) -> Result<Tally, TallyError> {
    let mut counter = Counter::default();
    let used = counter.add(bytes)?;
    if used < bytes.len() {
        return Err(RecordError::Truncated { offset: used }.into());
    }
    Ok(counter.finish())
}

/// A [`Tally`] built from records as they are read, so that a pass's output (15 MB for 270,000
/// mappings) is never held whole: feed it what each read returned, the unused tail first.
#[derive(Debug, Default)]
pub struct Counter {
    tally: Tally,
    /// (tgid, fd table or address space) -> the one thread it is counted through.
    tables: HashMap<(i32, u64), i32>,
    spaces: HashMap<(i32, u64), i32>,
}

impl Counter {
    /// Counts the whole records at the start of `bytes` and returns how many bytes they took;
    /// the rest is the start of a record the next read completes.
    pub fn add(&mut self, bytes: &[u8]) -> Result<usize, TallyError> {
        let Tally { buffers, processes } = &mut self.tally;
        let mut used = 0;
        for (record, end) in records::parse_with_ends(bytes) {
            let record = match record {
                Err(RecordError::Truncated { .. }) => break,
                other => other?,
            };
            used = end;
            let (inode, tgid, refs) = match record {
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
                Record::Process(p) => {
                    processes.entry(p.tgid).or_insert_with(|| Process {
                        pid: p.tgid,
                        uid: p.uid,
                        comm: comm_as_printed(p.comm),
                    });
                    continue;
                }
                Record::Fd(f) => {
                    if *self.tables.entry((f.tgid, f.files)).or_insert(f.tid) != f.tid {
                        continue;
                    }
                    (f.inode, f.tgid, Refs::Fd)
                }
                Record::Vma(v) => {
                    if *self.spaces.entry((v.tgid, v.mm)).or_insert(v.tid) != v.tid {
                        continue;
                    }
                    (v.inode, v.tgid, Refs::Map)
                }
            };
            if !processes.contains_key(&tgid) {
                return Err(TallyError::UndescribedProcess(tgid));
            }
            let b = buffers.get_mut(&inode).ok_or(TallyError::Undescribed(inode))?;
            let counts = match refs {
                Refs::Fd => &mut b.fd_refs,
                Refs::Map => &mut b.map_refs,
            };
            *counts.entry(tgid).or_default() += 1;
        }
        Ok(used)
    }

    /// What every record added so far describes.
    pub fn finish(self) -> Tally {
        self.tally
    }
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

    fn process(tgid: u32, uid: u32, comm: &[u8]) -> Vec<u8> {
        let mut r = rec(&[], 4, [tgid, uid, 0]);
        r.extend(comm);
        r.resize(16 + records::COMM_LEN, 0);
        r
    }

    /// Process 10's leader and a thread sharing its table (visited twice when the leader has
    /// exited), a thread with its own table, and mappings reached through two threads of one
    /// address space: each table and address space counts once.
    #[test]
    fn tables_and_spaces_count_once_per_process() {
        let bytes = [
            process(10, 1000, b"cam\nera"),
            process(20, 1013, b"media"),
            buffer(7),
            rec(&[0xa, 7], 2, [10, 11, 3]),
            rec(&[0xa, 7], 2, [10, 12, 3]),
            rec(&[0xa, 7], 2, [10, 11, 4]),
            rec(&[0xb, 7], 2, [10, 13, 3]),
            rec(&[0xc, 7], 2, [20, 20, 3]),
            rec(&[0xd, 7, 0, 4096, 0], 3, [10, 11, 0]),
            rec(&[0xd, 7, 0, 4096, 0], 3, [10, 13, 0]),
            // A second pass's description of a process already described: the first stays.
            process(10, 0, b"other"),
        ]
        .concat();
        let got = tally(&bytes).expect("well-formed");
        let p = |pid: i32| (got.processes[&pid].uid, got.processes[&pid].comm.as_str());
        assert_eq!((p(10), p(20)), ((1000, "cam\\nera"), (1013, "media")));
        let b = &got.buffers[&7];
        assert_eq!((b.size, b.name.as_ref().and_then(|n| n.to_str())), (4096, Some("n")));
        assert_eq!(b.fd_refs, [(10, 3), (20, 1)].into());
        assert_eq!(b.map_refs, [(10, 1)].into());
    }

    #[test]
    fn reference_before_description_is_refused() {
        let bytes = [process(10, 0, b"p"), rec(&[0xa, 7], 2, [10, 10, 3])].concat();
        assert_eq!(tally(&bytes), Err(TallyError::Undescribed(7)));
        let bytes = [buffer(7), rec(&[0xa, 7], 2, [10, 10, 3])].concat();
        assert_eq!(tally(&bytes), Err(TallyError::UndescribedProcess(10)));
    }
}
