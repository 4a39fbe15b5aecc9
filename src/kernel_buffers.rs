//! The kernel's own list of every exported dma-buf, held by a process or not.
//!
//! Four sources: dmabufd's own pinned `iter/dmabuf` (Linux 6.16+, after `dmabufctl bpf pin`; one
//! read, exact names, no debugfs), debugfs `dma_buf/bufinfo` (root, debugfs mounted; one read, with names), AOSP's
//! pinned BPF iterator (Android 16, where the policy lets the reader open it; one read, with
//! names save newlines) and `/sys/kernel/dmabuf/buffers/<inode>` (CONFIG_DMABUF_SYSFS_STATS,
//! Android 12-era kernels; one directory listing and two small reads per buffer). The scan reads it around its walk of
//! `/proc` (kernel-only buffers, true sizes of map-only buffers, the exported total); the
//! service reads it to prune ledger entries of freed buffers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::bpf::records::{self, Record, RecordError};
use crate::coverage::{source, SourceState, SourceUse};
use crate::procfs::{bpf_iter, bufinfo, sysfs};
use crate::scan::{self, model_name, ScanOptions};
use crate::text::Name;
use crate::{Error, Result};

/// One buffer as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBuffer {
    /// Inode on the dma-buf pseudo filesystem.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Exporter name, when the source tells.
    pub exporter: Option<crate::account::Exporter>,
    /// Purpose name, exact bytes from bufinfo (from the BPF iterator, newlines read as
    /// spaces); `None` when unnamed or the source does not tell (sysfs).
    pub name: Option<Name>,
}

/// Everything one read of a source listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelBuffers {
    /// Buffers with an inode, in the source's order.
    pub buffers: Vec<KernelBuffer>,
    /// Sizes of buffers listed without an inode (bufinfo before Linux 5.3): counted in the
    /// total, but they cannot be matched to fds or mappings.
    pub unidentified: Vec<u64>,
}

impl KernelBuffers {
    /// Bytes of every listed buffer, saturating.
    pub fn exported_bytes(&self) -> u64 {
        crate::account::saturating_sum(
            self.buffers.iter().map(|b| b.size).chain(self.unidentified.iter().copied()),
        )
    }

    /// The list `iter/dmabuf` wrote as buffer records (src/bpf/records.rs); anything else in
    /// it is the object and the parser disagreeing.
    pub fn from_records(bytes: &[u8]) -> std::result::Result<KernelBuffers, RecordError> {
        let mut list = KernelBuffers::default();
        let used = list.add_records(bytes)?;
        if used < bytes.len() {
            return Err(RecordError::Truncated { offset: used });
        }
        Ok(list)
    }

    /// [`KernelBuffers::from_records`] a read at a time: adds the whole records at the start of
    /// `bytes` and returns how many bytes they took; the rest is the start of a record the next
    /// read completes. Offsets in errors are within `bytes`.
    pub fn add_records(&mut self, bytes: &[u8]) -> std::result::Result<usize, RecordError> {
        let mut used = 0;
        for (record, end) in records::parse_with_ends(bytes) {
            match record {
                Ok(Record::Buffer(b)) => {
                    // Buffers of one heap mostly come in runs: each shares the one before's.
                    let exporter = match self.buffers.last() {
                        Some(KernelBuffer { exporter: Some(last), .. })
                            if last.as_bytes() == b.exporter =>
                        {
                            Some(last.clone())
                        }
                        _ => b.exporter_name(),
                    };
                    let name = model_name(b.name);
                    self.buffers.push(KernelBuffer { inode: b.inode, size: b.size, exporter, name })
                }
                Ok(_) => return Err(RecordError::Unexpected { index: self.buffers.len() }),
                Err(RecordError::Truncated { .. }) => break,
                Err(e) => return Err(e),
            }
            used = end;
        }
        Ok(used)
    }

    /// Inodes of every listed buffer; fails if some buffer has none (such a list cannot vouch
    /// for any inode being dead).
    pub fn inodes(&self) -> Result<HashSet<u64>> {
        if !self.unidentified.is_empty() {
            return Err(Error::Unsupported("inodes in debugfs bufinfo (Linux 5.3+)"));
        }
        Ok(self.buffers.iter().map(|b| b.inode).collect())
    }
}

/// Where the list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// dmabufd's pinned `iter/dmabuf` (bpffs), binary records.
    Pinned(PathBuf),
    /// debugfs `dma_buf/bufinfo`.
    Bufinfo(PathBuf),
    /// AOSP's pinned dma-buf iterator (a bpffs file).
    BpfIter(PathBuf),
    /// `/sys/kernel/dmabuf/buffers`.
    Sysfs(PathBuf),
}

impl Source {
    /// The first of `candidates` that can be read now, with what it listed; how each one tried
    /// served is appended to `tried`.
    pub fn first_readable(
        candidates: impl IntoIterator<Item = Source>,
        tried: &mut Vec<SourceUse>,
    ) -> Option<(Source, KernelBuffers)> {
        candidates.into_iter().find_map(|source| match source.read() {
            Ok(listed) => {
                log::debug!("{source}: {} buffers", listed.buffers.len());
                tried.push(SourceUse::new(source.id(), SourceState::Used, source.to_string()));
                Some((source, listed))
            }
            Err(e) => {
                log::debug!("{source}: {e}");
                let state = match &e {
                    Error::Io { source: io, .. } => SourceState::of_error(io),
                    _ => SourceState::Failed,
                };
                tried.push(SourceUse::new(source.id(), state, format!("{e}")));
                None
            }
        })
    }

    /// The source's [`source`] name.
    pub fn id(&self) -> &'static str {
        match self {
            Source::Pinned(_) => source::DMABUFD_ITER,
            Source::Bufinfo(_) => source::DEBUGFS_BUFINFO,
            Source::BpfIter(_) => source::BPF_ITER,
            Source::Sysfs(_) => source::SYSFS_STATS,
        }
    }

    /// Reads the list. Fails if the source cannot be read or does not have the kernel's format;
    /// a name, whatever its bytes, cannot make it fail (see [`bufinfo`]).
    pub fn read(&self) -> Result<KernelBuffers> {
        match self {
            // Read as it is parsed: the list of thousands of buffers is never held whole.
            Source::Pinned(path) => crate::bpf::read_list(path),
            Source::Bufinfo(path) => read_parsed(path, |b| bufinfo::parse(b).map(from_bufinfo)),
            Source::BpfIter(path) => {
                read_parsed(path, |b| bpf_iter::parse(b).map(|rows| from_bpf_iter(&rows)))
            }
            Source::Sysfs(dir) => read_sysfs(dir),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Pinned(path) => write!(f, "pinned iter/dmabuf {}", path.display()),
            Source::Bufinfo(path) => write!(f, "debugfs {}", path.display()),
            Source::BpfIter(path) => write!(f, "BPF iterator {}", path.display()),
            Source::Sysfs(dir) => write!(f, "sysfs {}", dir.display()),
        }
    }
}

/// Reads a list file whole and parses it; a parse failure is an I/O error of kind
/// `InvalidData`, so that every failure of a source names the file.
fn read_parsed<E: std::error::Error + Send + Sync + 'static>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> std::result::Result<KernelBuffers, E>,
) -> Result<KernelBuffers> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    parse(&bytes).map_err(|e| {
        Error::io(
            format!("parsing {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

fn from_bufinfo(info: bufinfo::BufInfo) -> KernelBuffers {
    let mut out = KernelBuffers::default();
    for row in info.rows {
        match row.inode {
            Some(inode) => out.buffers.push(KernelBuffer {
                inode,
                size: row.size,
                exporter: Some(row.exporter).filter(|e| !e.is_empty()).map(Into::into),
                name: row.name.as_deref().and_then(model_name),
            }),
            None => out.unidentified.push(row.size),
        }
    }
    out
}

fn from_bpf_iter(rows: &[bpf_iter::Row<'_>]) -> KernelBuffers {
    let buffers = rows
        .iter()
        .map(|r| KernelBuffer {
            inode: r.inode,
            size: r.size,
            exporter: Some(String::from_utf8_lossy(r.exporter).into()),
            name: r.name.and_then(model_name),
        })
        .collect();
    KernelBuffers { buffers, unidentified: Vec::new() }
}

fn read_sysfs(dir: &Path) -> Result<KernelBuffers> {
    let listing = |e| Error::io(format!("listing {}", dir.display()), e);
    let mut out = KernelBuffers::default();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let Some(inode) = sysfs::parse_inode_dir(entry.file_name().as_encoded_bytes()) else {
            continue;
        };
        // A buffer freed since the listing has no attributes left: it is not live.
        let Some(size) =
            std::fs::read(entry.path().join("size")).ok().and_then(|b| sysfs::parse_size(&b))
        else {
            continue;
        };
        let exporter = std::fs::read(entry.path().join("exporter_name"))
            .ok()
            .and_then(|b| sysfs::parse_exporter(&b));
        let exporter = exporter.map(Into::into);
        out.buffers.push(KernelBuffer { inode, size, exporter, name: None });
    }
    Ok(out)
}

/// Which buffers exist now, for pruning the ledger without holding any of them. The kernel's
/// list is complete and cheap; without one, a `/proc` scan is the fallback: slower, and it
/// misses buffers only devices hold, whose entries are then dropped early (under-counting a
/// quota, never refusing wrongly). A scan that could not read every process (a service without
/// CAP_SYS_PTRACE on a device) cannot tell: it refuses, and the ledger keeps its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveBuffers {
    /// The kernel's list.
    Kernel(Source),
    /// Every buffer some process holds by fd or mapping.
    Scan,
}

impl LiveBuffers {
    /// The first kernel source that works on this system (per [`ScanOptions::default`]'s
    /// paths), else the scan; chosen once at start-up.
    pub fn detect() -> Self {
        ScanOptions::default()
            .kernel_sources()
            .into_iter()
            .map(LiveBuffers::Kernel)
            .find(|live| live.read().is_ok())
            .unwrap_or(LiveBuffers::Scan)
    }

    /// Inodes of the buffers that exist now.
    pub fn read(&self) -> Result<HashSet<u64>> {
        match self {
            LiveBuffers::Kernel(source) => source.read()?.inodes(),
            LiveBuffers::Scan => {
                let model = scan::scan(&ScanOptions::default())?;
                Ok(saw_every_holder(&model)?.buffers.keys().copied().collect())
            }
        }
    }
}

/// `model`, if it can tell freed buffers from live ones: a buffer held only by a process closed
/// to the scan (unreadable, or hidden by hidepid) would read as freed.
pub fn saw_every_holder(model: &crate::account::Model) -> Result<&crate::account::Model> {
    let hidden = model
        .coverage
        .sources
        .iter()
        .any(|s| s.source == source::PROCFS && s.state == SourceState::Denied);
    if hidden || !model.coverage.unreadable.is_empty() {
        return Err(Error::Unsupported(
            "telling freed buffers from a scan that could not read every process",
        ));
    }
    Ok(model)
}

impl std::fmt::Display for LiveBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveBuffers::Kernel(source) => source.fmt(f),
            LiveBuffers::Scan => f.write_str("/proc scan"),
        }
    }
}
