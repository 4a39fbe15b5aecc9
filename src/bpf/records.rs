//! The binary records the BPF iterators write (`bpf/dmabuf_iter.bpf.c`), parsed.
//!
//! Every record starts with a `u32` kind that fixes its length; fields are the kernel's native
//! byte order (the object is loaded on the machine that reads it). A pure function over bytes:
//! any input yields records up to the first malformed one, then one error, never a panic.

/// Length of the name field: the kernel's `DMA_BUF_NAME_LEN`.
pub const NAME_LEN: usize = 32;
/// Length of the exporter field.
pub const EXPORTER_LEN: usize = 64;
/// Length of the command-name field: the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// The layout's version: part of the path iterators are pinned at, so that a reader never
/// parses the records of an object built for another layout. Bump it with any layout change.
pub const FORMAT: u32 = 5;

const KIND_BUFFER: u32 = 1;
const KIND_FD: u32 = 2;
const KIND_VMA: u32 = 3;
const KIND_PROCESS: u32 = 4;
const KIND_TABLE: u32 = 5;
const KIND_TABLE_FD: u32 = 6;
const KIND_TABLE_CUT: u32 = 7;
const KIND_TABLE_VOID: u32 = 8;

/// Bytes of each record kind, header included.
const BUFFER_LEN: usize = 24 + NAME_LEN + EXPORTER_LEN;
const FD_LEN: usize = 40;
const VMA_LEN: usize = 40;
const PROCESS_LEN: usize = 16 + COMM_LEN;
const TABLE_LEN: usize = 24;
const TABLE_FD_LEN: usize = 24;
const TABLE_CUT_LEN: usize = 16;
const TABLE_VOID_LEN: usize = 16;

/// One buffer, described once per pass (or more often: keep the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferRecord<'a> {
    /// Inode on the dma-buf filesystem.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Purpose name, up to its NUL; empty when unnamed.
    pub name: &'a [u8],
    /// Exporter name, up to its NUL.
    pub exporter: &'a [u8],
}

impl BufferRecord<'_> {
    /// The exporter as the model keeps it (as fdinfo's is kept: lossy UTF-8, `None` if empty).
    pub fn exporter_name(&self) -> Option<crate::account::Exporter> {
        (!self.exporter.is_empty()).then(|| String::from_utf8_lossy(self.exporter).into())
    }
}

/// One process, described once per pass before its first fd or mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRecord<'a> {
    /// Thread-group id.
    pub tgid: i32,
    /// Real uid.
    pub uid: u32,
    /// The leader's command name, raw (unescaped), up to its NUL.
    pub comm: &'a [u8],
}

/// One dma-buf fd of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdRecord {
    /// Thread-group id: the process.
    pub tgid: i32,
    /// The task the fd table was reached through.
    pub tid: i32,
    /// The fd number.
    pub fd: u32,
    /// Identity of the fd table (the kernel's `files_struct` address).
    pub files: u64,
    /// The buffer's inode.
    pub inode: u64,
    /// The buffer's size (its inode's), for a buffer no description or list gave.
    pub size: u64,
}

/// An fd table walked whole in the kernel; the [`TableFdRecord`]s after it are its dma-buf fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRecord {
    /// Thread-group id: the process.
    pub tgid: i32,
    /// The task the table was reached through.
    pub tid: i32,
    /// Identity of the table (the kernel's `files_struct` address).
    pub files: u64,
}

/// One dma-buf fd of the [`TableRecord`] before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFdRecord {
    /// The buffer's inode.
    pub inode: u64,
    /// The buffer's size (its inode's), for a buffer the kernel's list did not have yet.
    pub size: u64,
}

/// The [`TableRecord`] before it goes on past what one program run writes: its dma-buf fds
/// `next_fd` and above are to be read from `/proc/<tgid>/task/<tid>/fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableCutRecord {
    /// Thread-group id: the process.
    pub tgid: i32,
    /// The task the table was reached through.
    pub tid: i32,
    /// The first fd not walked.
    pub next_fd: u32,
}

/// The records of the [`TableRecord`] before it are void: the table may have been freed while
/// the kernel walked it (the task was exiting, or took another table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableVoidRecord {
    /// Thread-group id: the process.
    pub tgid: i32,
    /// The task the table was reached through.
    pub tid: i32,
}

/// One dma-buf mapping of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmaRecord {
    /// Thread-group id: the process.
    pub tgid: i32,
    /// The task the address space was reached through.
    pub tid: i32,
    /// Offset into the buffer, in pages (saturated at `u32::MAX`).
    pub pgoff: u32,
    /// Identity of the address space (the kernel's `mm_struct` address).
    pub mm: u64,
    /// The buffer's inode.
    pub inode: u64,
    /// Bytes mapped.
    pub len: u64,
}

/// Any record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A buffer's description.
    Buffer(BufferRecord<'a>),
    /// An fd.
    Fd(FdRecord),
    /// A mapping.
    Vma(VmaRecord),
    /// A process's description.
    Process(ProcessRecord<'a>),
    /// An fd table's start.
    Table(TableRecord),
    /// An fd of the table before it.
    TableFd(TableFdRecord),
    /// Where the walk of the table before it stopped.
    TableCut(TableCutRecord),
    /// The table before it is void.
    TableVoid(TableVoidRecord),
}

/// Why parsing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A kind this parser does not know: the object and the parser disagree.
    #[error("unknown BPF record kind {kind} at byte {offset}")]
    UnknownKind {
        /// The kind read.
        kind: u32,
        /// Where the record starts.
        offset: usize,
    },
    /// A record of a kind the stream should not hold (a buffer list holds only buffers).
    #[error("BPF record {index} is not of the kind expected here")]
    Unexpected {
        /// 0-based record index.
        index: usize,
    },
    /// The input ends inside a record.
    #[error("BPF record cut short at byte {offset}")]
    Truncated {
        /// Where the record starts.
        offset: usize,
    },
}

/// The records in `bytes`, in order; after an error, nothing more.
pub fn parse(bytes: &[u8]) -> Records<'_> {
    Records { bytes, offset: 0 }
}

/// The records in `bytes`, each with the offset just past it (where the next one starts).
pub fn parse_with_ends(
    bytes: &[u8],
) -> impl Iterator<Item = (Result<Record<'_>, RecordError>, usize)> {
    let mut records = parse(bytes);
    std::iter::from_fn(move || records.next().map(|r| (r, records.offset)))
}

/// Iterator returned by [`parse`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..).filter(|r| !r.is_empty())?;
        let offset = self.offset;
        let Some(kind) = u32_at(rest, 0) else {
            return Some(self.fail(RecordError::Truncated { offset }));
        };
        let len = match kind {
            KIND_BUFFER => BUFFER_LEN,
            KIND_FD => FD_LEN,
            KIND_VMA => VMA_LEN,
            KIND_PROCESS => PROCESS_LEN,
            KIND_TABLE => TABLE_LEN,
            KIND_TABLE_FD => TABLE_FD_LEN,
            KIND_TABLE_CUT => TABLE_CUT_LEN,
            KIND_TABLE_VOID => TABLE_VOID_LEN,
            _ => return Some(self.fail(RecordError::UnknownKind { kind, offset })),
        };
        let Some(r) = rest.get(..len) else {
            return Some(self.fail(RecordError::Truncated { offset }));
        };
        self.offset += len;
        // Every field offset below is within `len` bytes of its kind.
        let u32f = |at| u32_at(r, at).unwrap_or_default();
        let u64f = |at| u64_at(r, at).unwrap_or_default();
        Some(Ok(match kind {
            KIND_BUFFER => Record::Buffer(BufferRecord {
                inode: u64f(8),
                size: u64f(16),
                name: c_str(&r[24..24 + NAME_LEN]),
                exporter: c_str(&r[24 + NAME_LEN..]),
            }),
            KIND_FD => Record::Fd(FdRecord {
                tgid: u32f(4) as i32,
                tid: u32f(8) as i32,
                fd: u32f(12),
                files: u64f(16),
                inode: u64f(24),
                size: u64f(32),
            }),
            KIND_PROCESS => Record::Process(ProcessRecord {
                tgid: u32f(4) as i32,
                uid: u32f(8),
                comm: c_str(&r[16..]),
            }),
            KIND_TABLE => Record::Table(TableRecord {
                tgid: u32f(4) as i32,
                tid: u32f(8) as i32,
                files: u64f(16),
            }),
            KIND_TABLE_FD => Record::TableFd(TableFdRecord { inode: u64f(8), size: u64f(16) }),
            KIND_TABLE_CUT => Record::TableCut(TableCutRecord {
                tgid: u32f(4) as i32,
                tid: u32f(8) as i32,
                next_fd: u32f(12),
            }),
            KIND_TABLE_VOID => {
                Record::TableVoid(TableVoidRecord { tgid: u32f(4) as i32, tid: u32f(8) as i32 })
            }
            _ => Record::Vma(VmaRecord {
                tgid: u32f(4) as i32,
                tid: u32f(8) as i32,
                pgoff: u32f(12),
                mm: u64f(16),
                inode: u64f(24),
                len: u64f(32),
            }),
        }))
    }
}

impl Records<'_> {
    fn fail<T>(&mut self, e: RecordError) -> Result<T, RecordError> {
        self.offset = self.bytes.len();
        Err(e)
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The bytes before the first NUL (all of them when the kernel filled the field).
fn c_str(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(inode: u64, size: u64, name: &[u8], exporter: &[u8]) -> Vec<u8> {
        let mut r = [KIND_BUFFER.to_ne_bytes(), [0; 4]].concat();
        r.extend(inode.to_ne_bytes());
        r.extend(size.to_ne_bytes());
        let mut n = name.to_vec();
        n.resize(NAME_LEN, 0);
        let mut e = exporter.to_vec();
        e.resize(EXPORTER_LEN, 0);
        [r, n, e].concat()
    }

    #[test]
    fn parses_each_kind_and_stops_at_garbage() {
        let mut bytes = buffer(7, 4096, b"a\nb", b"system");
        let fd = [2u32, 100, 101, 5].map(u32::to_ne_bytes).concat();
        bytes.extend(fd);
        bytes.extend([0xffff_0000u64, 7, 4096].map(u64::to_ne_bytes).concat());
        bytes.extend([3u32, 100, 100, 1].map(u32::to_ne_bytes).concat());
        bytes.extend([0xaa, 7, 0x2000].map(u64::to_ne_bytes).concat());
        bytes.extend([4u32, 100, 1000, 0].map(u32::to_ne_bytes).concat());
        bytes.extend(*b"surf\\fl\ng\0\0\0\0\0\0\0");
        bytes.extend([5u32, 100, 102, 0].map(u32::to_ne_bytes).concat());
        bytes.extend(0xffff_0040u64.to_ne_bytes());
        bytes.extend([6u32, 0].map(u32::to_ne_bytes).concat());
        bytes.extend([7u64, 4096].map(u64::to_ne_bytes).concat());
        bytes.extend([7u32, 100, 102, 1301].map(u32::to_ne_bytes).concat());
        bytes.extend([8u32, 100, 102, 0].map(u32::to_ne_bytes).concat());
        bytes.extend(9u32.to_ne_bytes());
        let got: Vec<_> = parse(&bytes).collect();
        assert_eq!(
            got,
            [
                Ok(Record::Buffer(BufferRecord {
                    inode: 7,
                    size: 4096,
                    name: b"a\nb",
                    exporter: b"system"
                })),
                Ok(Record::Fd(FdRecord {
                    tgid: 100,
                    tid: 101,
                    fd: 5,
                    files: 0xffff_0000,
                    inode: 7,
                    size: 4096
                })),
                Ok(Record::Vma(VmaRecord {
                    tgid: 100,
                    tid: 100,
                    pgoff: 1,
                    mm: 0xaa,
                    inode: 7,
                    len: 0x2000
                })),
                Ok(Record::Process(ProcessRecord { tgid: 100, uid: 1000, comm: b"surf\\fl\ng" })),
                Ok(Record::Table(TableRecord { tgid: 100, tid: 102, files: 0xffff_0040 })),
                Ok(Record::TableFd(TableFdRecord { inode: 7, size: 4096 })),
                Ok(Record::TableCut(TableCutRecord { tgid: 100, tid: 102, next_fd: 1301 })),
                Ok(Record::TableVoid(TableVoidRecord { tgid: 100, tid: 102 })),
                Err(RecordError::UnknownKind {
                    kind: 9,
                    offset: BUFFER_LEN
                        + FD_LEN
                        + VMA_LEN
                        + PROCESS_LEN
                        + TABLE_LEN
                        + TABLE_FD_LEN
                        + TABLE_CUT_LEN
                        + TABLE_VOID_LEN
                }),
            ]
        );
    }

    #[test]
    fn truncated_record_is_one_error() {
        let bytes = buffer(1, 1, b"", b"");
        for cut in [1, 4, BUFFER_LEN - 1] {
            let got: Vec<_> = parse(&bytes[..cut]).collect();
            assert_eq!(got, [Err(RecordError::Truncated { offset: 0 })]);
        }
        let full = buffer(1, 1, &[b'x'; NAME_LEN], b"");
        let Some(Ok(Record::Buffer(b))) = parse(&full).next() else { panic!("no record") };
        assert_eq!(b.name, &[b'x'; NAME_LEN]);
    }
}
