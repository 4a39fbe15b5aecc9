//! The BPF iterators' records, counted into buffers and their holders: the same facts the /proc
//! walk gathers, with the same rules for threads. Pure, like the parser.
//!
//! The task iterators visit a thread group through its leader and through every thread whose
//! fd table differs from the leader's: one that called `unshare(CLONE_FILES)`, and, once the
//! leader has exited (its table is gone), every remaining thread. So an fd table is counted
//! once per process (the first thread it was reached through), like `kcmp` does for /proc, and
//! an address space once per process likewise.

use std::collections::BTreeMap;

use super::records::{self, Record, RecordError};
use crate::account::{Buffer, Process};
use crate::idmap::{IdMap, IdSet};
use crate::kernel_buffers::{KernelBuffer, KernelBuffers};
use crate::procfs::status::comm_as_printed;
use crate::scan::{self, mapped, model_name, record_mapping};

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
    /// An fd of a table walked in the kernel, with no table before it.
    #[error("BPF fd record outside any fd table")]
    NoTable,
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
    counter.finish()
}

/// A [`Tally`] built from records as they are read, so that a pass's output (11 MB for 270,000
/// mappings) is never held whole: feed it what each read returned, the unused tail first.
///
/// A pass is hundreds of thousands of references, so each costs one hash lookup (its buffer)
/// and a count: a task's records come together, so whether its table or address space counts
/// and whether its process was described are decided once per run of records, and tasks come
/// by ascending pid, so a holder is mostly counted at the end of its buffer's counts.
#[derive(Debug, Default)]
pub struct Counter<'a> {
    processes: BTreeMap<i32, Process>,
    /// Buffers in the order first met, keyed as [`Tally::buffers`] keys them (so that
    /// [`Counter::finish`] sorts them in place and builds the map from this vector, not a
    /// copy: the memory a scan touches costs it time), and where each is by inode.
    found: Vec<(u64, Buffer)>,
    slots: IdMap<u64, usize>,
    /// (tgid, fd table or address space) -> the one thread it is counted through.
    tables: IdMap<(i32, u64), i32>,
    spaces: IdMap<(i32, u64), i32>,
    /// The owner of the last reference counted: the next one by the same owner counts too.
    last: Option<Owner>,
    /// The fd table the kernel is walking (`dmabuf_tables`), until the stream says it stands.
    walked: Walked,
    /// Tables whose walk was cut, for their rest to be read from /proc.
    cuts: Vec<Cut>,
    /// Processes found holding something, and whether a table was voided: then a process
    /// described for that table alone holds nothing, and [`Counter::finish`] drops it.
    holding: IdSet<i32>,
    voided: bool,
    /// For passes that describe no buffers: the kernel's list, read just before, by inode.
    listed: Option<IdMap<u64, &'a KernelBuffer>>,
}

/// The rest of an fd table that one run of `dmabuf_tables` could not write: fds `next_fd` and
/// above of thread `tid` of process `tgid`, to be read from `/proc` and counted with
/// [`Counter::add_fd`]. Only for tables that count (reached through their first thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The process.
    pub tgid: i32,
    /// The thread whose table it is.
    pub tid: i32,
    /// The first fd the walk did not reach.
    pub next_fd: u32,
    /// The table's identity, as its records gave it.
    files: u64,
}

/// A table walked in the kernel: its fds count once the next record shows that no void record
/// follows them.
#[derive(Debug, Default)]
struct Walked {
    owner: Option<Owner>,
    /// (inode, size) per dma-buf fd.
    fds: Vec<(u64, u64)>,
    /// Where the walk stopped, when it did.
    cut: Option<u32>,
}

/// Who a reference was reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    /// A mapping's (`table` is an address space), else an fd's.
    map: bool,
    tgid: i32,
    /// The fd table or address space.
    table: u64,
    tid: i32,
}

impl<'a> Counter<'a> {
    /// A counter for the passes that describe no buffer (`dmabuf_tables`, `dmabuf_vma_refs`):
    /// a buffer is described by `list` (the kernel's, read before the pass), or, created since,
    /// by its fd (size only) or mapping (a lower bound, as /proc maps give), until the list read
    /// after the walk completes it ([`crate::scan`]).
    pub fn described_by(list: &'a KernelBuffers) -> Self {
        let listed = list.buffers.iter().map(|b| (b.inode, b)).collect();
        // Nearly every listed buffer is held: room for them all up front.
        let room = list.buffers.len();
        Counter {
            listed: Some(listed),
            found: Vec::with_capacity(room),
            slots: IdMap::with_capacity_and_hasher(room, Default::default()),
            ..Counter::default()
        }
    }

    /// Counts the whole records at the start of `bytes` and returns how many bytes they took;
    /// the rest is the start of a record the next read completes.
    pub fn add(&mut self, bytes: &[u8]) -> Result<usize, TallyError> {
        let page = crate::sys::page_size() as u64;
        let mut used = 0;
        for (record, end) in records::parse_with_ends(bytes) {
            let record = match record {
                Err(RecordError::Truncated { .. }) => break,
                other => other?,
            };
            used = end;
            if !matches!(record, Record::TableFd(_) | Record::TableCut(_) | Record::TableVoid(_)) {
                self.commit()?;
            }
            let (owner, inode, refs) = match record {
                Record::Buffer(b) => {
                    if !self.slots.contains_key(&b.inode) {
                        self.insert(Buffer {
                            inode: b.inode,
                            size: b.size,
                            exporter: b.exporter_name(),
                            name: model_name(b.name),
                            ..Buffer::default()
                        });
                    }
                    continue;
                }
                Record::Process(p) => {
                    self.processes.entry(p.tgid).or_insert_with(|| Process {
                        pid: p.tgid,
                        uid: p.uid,
                        comm: comm_as_printed(p.comm),
                    });
                    continue;
                }
                Record::Table(t) => {
                    self.walked.owner =
                        Some(Owner { map: false, tgid: t.tgid, table: t.files, tid: t.tid });
                    continue;
                }
                Record::TableFd(f) => {
                    self.walked.owner.ok_or(TallyError::NoTable)?;
                    self.walked.fds.push((f.inode, f.size));
                    continue;
                }
                Record::TableCut(c) => {
                    self.walked.owner.ok_or(TallyError::NoTable)?;
                    self.walked.cut = Some(c.next_fd);
                    continue;
                }
                Record::TableVoid(_) => {
                    self.walked.owner.take().ok_or(TallyError::NoTable)?;
                    self.walked.fds.clear();
                    self.walked.cut = None;
                    self.voided = true;
                    continue;
                }
                Record::Fd(f) => {
                    let owner = Owner { map: false, tgid: f.tgid, table: f.files, tid: f.tid };
                    (owner, f.inode, Refs::Fd { size: f.size })
                }
                Record::Vma(v) => {
                    let extent = u64::from(v.pgoff).saturating_mul(page).saturating_add(v.len);
                    let owner = Owner { map: true, tgid: v.tgid, table: v.mm, tid: v.tid };
                    (owner, v.inode, Refs::Map { extent })
                }
            };
            self.count(owner, inode, refs)?;
        }
        Ok(used)
    }

    /// Counts the walked table's fds, and keeps its cut: no void record came after them.
    fn commit(&mut self) -> Result<(), TallyError> {
        let Some(owner) = self.walked.owner.take() else { return Ok(()) };
        let mut fds = std::mem::take(&mut self.walked.fds);
        for &(inode, size) in &fds {
            self.count(owner, inode, Refs::Fd { size })?;
        }
        fds.clear();
        self.walked.fds = fds;
        if let Some(next_fd) = self.walked.cut.take() {
            if self.tables.get(&(owner.tgid, owner.table)) == Some(&owner.tid) {
                self.cuts.push(Cut {
                    tgid: owner.tgid,
                    tid: owner.tid,
                    next_fd,
                    files: owner.table,
                });
            }
        }
        Ok(())
    }

    /// The tables whose walk was cut, for [`Counter::add_fd`]; call once every pass is read.
    pub fn take_cuts(&mut self) -> Result<Vec<Cut>, TallyError> {
        self.commit()?;
        Ok(std::mem::take(&mut self.cuts))
    }

    /// Counts a dma-buf fd of the rest of `cut`, read from `/proc`.
    pub fn add_fd(&mut self, cut: &Cut, inode: u64, size: u64) -> Result<(), TallyError> {
        let owner = Owner { map: false, tgid: cut.tgid, table: cut.files, tid: cut.tid };
        self.count(owner, inode, Refs::Fd { size })
    }

    /// Counts one reference by `owner`, unless its table or address space counts through
    /// another thread.
    fn count(&mut self, owner: Owner, inode: u64, refs: Refs) -> Result<(), TallyError> {
        if self.last != Some(owner) {
            let Owner { map, tgid, table, tid } = owner;
            let first = if map { &mut self.spaces } else { &mut self.tables };
            if *first.entry((tgid, table)).or_insert(tid) != tid {
                return Ok(());
            }
            if !self.processes.contains_key(&tgid) {
                return Err(TallyError::UndescribedProcess(tgid));
            }
            self.holding.insert(tgid);
            self.last = Some(owner);
        }
        let at = match self.slots.get(&inode) {
            Some(&at) => at,
            None => match describe(self.listed.as_ref(), inode, refs) {
                Some(buffer) => self.insert(buffer),
                None => return Err(TallyError::Undescribed(inode)),
            },
        };
        let buffer = &mut self.found[at].1;
        match refs {
            Refs::Fd { .. } => buffer.fd_refs.add(owner.tgid, 1),
            Refs::Map { extent } => {
                record_mapping(buffer, extent);
                buffer.map_refs.add(owner.tgid, 1);
            }
        }
        Ok(())
    }

    /// Counts a buffer first met now; returns where it is.
    fn insert(&mut self, buffer: Buffer) -> usize {
        self.slots.insert(buffer.inode, self.found.len());
        self.found.push((buffer.inode, buffer));
        self.found.len() - 1
    }

    /// The tally of every record added (and fd counted); fails as [`Counter::add`] does if the
    /// last table's fds do.
    pub fn finish(mut self) -> Result<Tally, TallyError> {
        self.commit()?;
        let mut processes = self.processes;
        if self.voided {
            processes.retain(|pid, _| self.holding.contains(pid));
        }
        let mut found = self.found;
        // Sorted, the map's own sort finds one run and moves nothing.
        found.sort_unstable_by_key(|&(inode, _)| inode);
        Ok(Tally { buffers: found.into_iter().collect(), processes })
    }
}

/// A buffer a reference-only pass meets first: as the kernel's list read before describes it,
/// else, created since, as its fd (the size) or mapping (a lower bound) tells. `None` where
/// buffers must be described by the pass itself.
fn describe(listed: Option<&IdMap<u64, &KernelBuffer>>, inode: u64, refs: Refs) -> Option<Buffer> {
    let listed = listed?;
    Some(match (listed.get(&inode), refs) {
        (Some(k), _) => scan::listed(k),
        (None, Refs::Fd { size }) => Buffer { inode, size, ..Buffer::default() },
        (None, Refs::Map { extent }) => mapped(inode, extent, None),
    })
}

/// How a record refers to its buffer, and what it tells of the buffer's size.
#[derive(Clone, Copy)]
enum Refs {
    Fd { size: u64 },
    Map { extent: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Name, PidCounts};

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
            rec(&[0xa, 7, 4096], 2, [10, 11, 3]),
            rec(&[0xa, 7, 4096], 2, [10, 12, 3]),
            rec(&[0xa, 7, 4096], 2, [10, 11, 4]),
            rec(&[0xb, 7, 4096], 2, [10, 13, 3]),
            rec(&[0xc, 7, 4096], 2, [20, 20, 3]),
            rec(&[0xd, 7, 4096], 3, [10, 11, 0]),
            rec(&[0xd, 7, 4096], 3, [10, 13, 0]),
            // A second pass's description of a process already described: the first stays.
            process(10, 0, b"other"),
        ]
        .concat();
        let got = tally(&bytes).expect("well-formed");
        let p = |pid: i32| (got.processes[&pid].uid, got.processes[&pid].comm.as_str());
        assert_eq!((p(10), p(20)), ((1000, "cam\\nera"), (1013, "media")));
        let b = &got.buffers[&7];
        assert_eq!((b.size, b.name.as_ref().and_then(|n| n.to_str())), (4096, Some("n")));
        assert_eq!(b.fd_refs, PidCounts::from([(10, 3), (20, 1)]));
        assert_eq!(b.map_refs, PidCounts::from([(10, 1)]));
    }

    #[test]
    fn the_kernel_list_describes_buffers_for_reference_only_passes() {
        let listed = KernelBuffer {
            inode: 7,
            size: 8192,
            exporter: Some("system".into()),
            name: Some(Name::from(&b"GL:x"[..])),
        };
        let list = KernelBuffers { buffers: vec![listed], unidentified: Vec::new() };
        let page = crate::sys::page_size() as u64;
        let bytes = [
            process(10, 1000, b"app"),
            rec(&[0xa, 7, 8192], 2, [10, 10, 3]),
            // Created after the list was read: an fd tells its size, a mapping a lower bound.
            rec(&[0xa, 9, 4096], 2, [10, 10, 4]),
            rec(&[0xd, 11, page], 3, [10, 10, 2]),
            rec(&[0xd, 11, page], 3, [10, 10, 0]),
        ]
        .concat();
        let mut counter = Counter::described_by(&list);
        assert_eq!(counter.add(&bytes), Ok(bytes.len()));
        let got = counter.finish().expect("well-formed");
        let b = |inode: u64| {
            let b = &got.buffers[&inode];
            (b.size, b.size_from_maps, b.exporter.as_deref(), b.name.clone(), b.fd_refs.clone())
        };
        let refs = |n| PidCounts::from([(10, n)]);
        assert_eq!(b(7), (8192, false, Some("system"), Some(Name::from(&b"GL:x"[..])), refs(1)));
        assert_eq!(b(9), (4096, false, None, None, refs(1)));
        assert_eq!(b(11), (3 * page, true, None, None, PidCounts::new()));
        assert_eq!(got.buffers[&11].map_refs, refs(2));
    }

    fn table(tgid: u32, tid: u32, files: u64, inodes: &[u64]) -> Vec<u8> {
        let mut r = rec(&[files], 5, [tgid, tid, 0]);
        for &inode in inodes {
            let mut entry = rec(&[inode, 4096], 6, [0; 3]);
            entry.drain(8..16);
            r.extend(entry);
        }
        r
    }

    /// Tables walked in the kernel count by the rules of fd records: a table reached again
    /// through another thread (the leader exited) counts once, a thread's own table counts too,
    /// a buffer created after the list was read is sized by its entry, and a void table not at
    /// all.
    #[test]
    fn walked_tables_count_once_per_process() {
        let listed = KernelBuffer { inode: 7, size: 8192, exporter: None, name: None };
        let list = KernelBuffers { buffers: vec![listed], unidentified: Vec::new() };
        let bytes = [
            process(10, 1000, b"app"),
            table(10, 11, 0xa, &[7, 7, 9]),
            process(10, 1000, b"app"),
            table(10, 12, 0xa, &[7, 7, 9]),
            table(10, 13, 0xb, &[7]),
            process(20, 0, b"sf"),
            table(20, 20, 0xc, &[]),
            table(20, 20, 0xd, &[9]),
            // Cut: its rest comes from /proc, once, and only for the thread the table counts
            // through.
            rec(&[], 7, [20, 20, 1300]),
            table(20, 21, 0xd, &[9]),
            rec(&[], 7, [20, 21, 1300]),
            // Void (the table may have been freed during the walk): its fds and cut never
            // count, and its process, holding nothing else, is no holder.
            process(30, 0, b"gone"),
            table(30, 30, 0xe, &[7, 9]),
            rec(&[], 7, [30, 30, 1300]),
            rec(&[], 8, [30, 30, 0]),
        ]
        .concat();
        let mut counter = Counter::described_by(&list);
        assert_eq!(counter.add(&bytes), Ok(bytes.len()));
        let cuts = counter.take_cuts().expect("well-formed");
        let at = |c: &Cut| (c.tgid, c.tid, c.next_fd);
        assert_eq!(cuts.iter().map(at).collect::<Vec<_>>(), [(20, 20, 1300)]);
        assert_eq!(counter.add_fd(&cuts[0], 7, 8192), Ok(()));
        assert_eq!(counter.add_fd(&cuts[0], 11, 4096), Ok(()));
        let got = counter.finish().expect("well-formed");
        assert_eq!(got.buffers[&11].fd_refs, PidCounts::from([(20, 1)]));
        assert_eq!(got.buffers[&7].fd_refs, PidCounts::from([(10, 3), (20, 1)]));
        assert_eq!(got.buffers[&7].size, 8192);
        assert_eq!(got.buffers[&9].fd_refs, PidCounts::from([(10, 1), (20, 1)]));
        assert_eq!(got.buffers[&9].size, 4096);
        assert_eq!(got.processes.keys().copied().collect::<Vec<_>>(), [10, 20]);
    }

    #[test]
    fn reference_before_description_is_refused() {
        let entry = table(10, 10, 0xa, &[7]).split_off(24);
        assert_eq!(
            tally(&[process(10, 0, b"p"), buffer(7), entry].concat()),
            Err(TallyError::NoTable)
        );
        let bytes = [process(10, 0, b"p"), rec(&[0xa, 7, 4096], 2, [10, 10, 3])].concat();
        assert_eq!(tally(&bytes), Err(TallyError::Undescribed(7)));
        let bytes = [buffer(7), rec(&[0xa, 7, 4096], 2, [10, 10, 3])].concat();
        assert_eq!(tally(&bytes), Err(TallyError::UndescribedProcess(10)));
    }
}
