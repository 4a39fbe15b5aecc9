//! The kernel's own list of every exported dma-buf, held by a process or not.
//!
//! Two sources: debugfs `dma_buf/bufinfo` (root, debugfs mounted; one read, with names) and
//! `/sys/kernel/dmabuf/buffers/<inode>` (CONFIG_DMABUF_SYSFS_STATS, Android 12-era kernels; one
//! directory listing and two small reads per buffer). The scan reads it around its walk of
//! `/proc` (kernel-only buffers, true sizes of map-only buffers, the exported total); the
//! service reads it to prune ledger entries of freed buffers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::procfs::{bufinfo, sysfs};
use crate::scan::{self, ScanOptions};
use crate::{Error, Result};

/// One buffer as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBuffer {
    /// Inode on the dma-buf pseudo filesystem.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Exporter name, when the source tells.
    pub exporter: Option<String>,
    /// Purpose name, exact bytes; only bufinfo tells, `None` when unnamed.
    pub name: Option<Vec<u8>>,
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
    /// debugfs `dma_buf/bufinfo`.
    Bufinfo(PathBuf),
    /// `/sys/kernel/dmabuf/buffers`.
    Sysfs(PathBuf),
}

impl Source {
    /// The first of `bufinfo` and `sysfs` that can be read now, with what it listed.
    pub fn first_readable(
        bufinfo: Option<&Path>,
        sysfs: Option<&Path>,
    ) -> Option<(Source, KernelBuffers)> {
        let candidates = [
            bufinfo.map(|p| Source::Bufinfo(p.to_path_buf())),
            sysfs.map(|p| Source::Sysfs(p.to_path_buf())),
        ];
        candidates.into_iter().flatten().find_map(|source| {
            let listed = source.read().map_err(|e| log::debug!("{source}: {e}")).ok()?;
            Some((source, listed))
        })
    }

    /// Reads the list. Fails if the source cannot be read or does not have the kernel's format;
    /// a name, whatever its bytes, cannot make it fail (see [`bufinfo`]).
    pub fn read(&self) -> Result<KernelBuffers> {
        match self {
            Source::Bufinfo(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                let info = bufinfo::parse(&bytes).map_err(|e| {
                    Error::io(
                        format!("parsing {}", path.display()),
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    )
                })?;
                Ok(from_bufinfo(info))
            }
            Source::Sysfs(dir) => read_sysfs(dir),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Bufinfo(path) => write!(f, "debugfs {}", path.display()),
            Source::Sysfs(dir) => write!(f, "sysfs {}", dir.display()),
        }
    }
}

fn from_bufinfo(info: bufinfo::BufInfo) -> KernelBuffers {
    let mut out = KernelBuffers::default();
    for row in info.rows {
        match row.inode {
            Some(inode) => out.buffers.push(KernelBuffer {
                inode,
                size: row.size,
                exporter: Some(row.exporter).filter(|e| !e.is_empty()),
                name: row.name,
            }),
            None => out.unidentified.push(row.size),
        }
    }
    out
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
        out.buffers.push(KernelBuffer { inode, size, exporter, name: None });
    }
    Ok(out)
}

/// Which buffers exist now, for pruning the ledger without holding any of them. The kernel's
/// list is complete and cheap; without one, a `/proc` scan is the fallback: slower, and it
/// misses buffers only devices hold, whose entries are then dropped early (under-counting a
/// quota, never refusing wrongly).
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
        let opts = ScanOptions::default();
        let candidates =
            [opts.debugfs_bufinfo.map(Source::Bufinfo), opts.sysfs_buffers.map(Source::Sysfs)];
        candidates
            .into_iter()
            .flatten()
            .map(LiveBuffers::Kernel)
            .find(|live| live.read().is_ok())
            .unwrap_or(LiveBuffers::Scan)
    }

    /// Inodes of the buffers that exist now.
    pub fn read(&self) -> Result<HashSet<u64>> {
        match self {
            LiveBuffers::Kernel(source) => source.read()?.inodes(),
            LiveBuffers::Scan => {
                Ok(scan::scan(&ScanOptions::default())?.buffers.into_keys().collect())
            }
        }
    }
}

impl std::fmt::Display for LiveBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveBuffers::Kernel(source) => source.fmt(f),
            LiveBuffers::Scan => f.write_str("/proc scan"),
        }
    }
}
