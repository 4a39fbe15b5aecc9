//! Which buffers still exist, for pruning the ledger without holding any of them.
//!
//! The cheapest complete list is debugfs `bufinfo` (one read); sysfs stats (one directory
//! listing) come next. Without either, a `/proc` scan is the fallback: it is slower and misses
//! buffers only devices hold, whose entries are then dropped early (under-counting a quota,
//! never refusing wrongly).

use std::collections::HashSet;
use std::path::PathBuf;

use crate::procfs::{bufinfo, sysfs};
use crate::scan::{self, ScanOptions};
use crate::{Error, Result};

/// Where the list of live buffers comes from; chosen once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveBuffers {
    /// debugfs `dma_buf/bufinfo` (root, debugfs mounted).
    Bufinfo(PathBuf),
    /// `/sys/kernel/dmabuf/buffers/<inode>` (CONFIG_DMABUF_SYSFS_STATS).
    Sysfs(PathBuf),
    /// Every buffer some process holds by fd or mapping.
    Scan,
}

impl LiveBuffers {
    /// The first source that works on this system, per [`ScanOptions::default`]'s paths.
    pub fn detect() -> Self {
        let opts = ScanOptions::default();
        let candidates = [
            opts.debugfs_bufinfo.map(LiveBuffers::Bufinfo),
            opts.sysfs_buffers.map(LiveBuffers::Sysfs),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|source| source.read().is_ok())
            .unwrap_or(LiveBuffers::Scan)
    }

    /// Inodes of the buffers that exist now.
    pub fn read(&self) -> Result<HashSet<u64>> {
        match self {
            LiveBuffers::Bufinfo(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                // Kernels before 5.3 print no inodes: such a list cannot vouch for any entry.
                bufinfo::parse(&bytes)
                    .rows
                    .into_iter()
                    .map(|row| {
                        row.inode
                            .ok_or(Error::Unsupported("inodes in debugfs bufinfo (Linux 5.3+)"))
                    })
                    .collect()
            }
            LiveBuffers::Sysfs(dir) => {
                let listing = |e| Error::io(format!("listing {}", dir.display()), e);
                let mut live = HashSet::new();
                for entry in std::fs::read_dir(dir).map_err(listing)? {
                    if let Some(inode) = sysfs::parse_inode_dir(
                        entry.map_err(listing)?.file_name().as_encoded_bytes(),
                    ) {
                        live.insert(inode);
                    }
                }
                Ok(live)
            }
            LiveBuffers::Scan => {
                Ok(scan::scan(&ScanOptions::default())?.buffers.into_keys().collect())
            }
        }
    }
}

impl std::fmt::Display for LiveBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveBuffers::Bufinfo(path) => write!(f, "debugfs {}", path.display()),
            LiveBuffers::Sysfs(dir) => write!(f, "sysfs {}", dir.display()),
            LiveBuffers::Scan => f.write_str("/proc scan"),
        }
    }
}
