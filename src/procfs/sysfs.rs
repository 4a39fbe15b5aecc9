//! `/sys/kernel/dmabuf/buffers/<inode>/{size,exporter_name}` (CONFIG_DMABUF_SYSFS_STATS,
//! Android 12-era kernels): the system-wide buffer list where debugfs is not mounted.

use super::{lossy, parse_u64, trim};

/// Parses the `size` attribute (decimal bytes and a newline).
pub fn parse_size(bytes: &[u8]) -> Option<u64> {
    parse_u64(trim(bytes))
}

/// Parses the `exporter_name` attribute; `None` when empty.
pub fn parse_exporter(bytes: &[u8]) -> Option<String> {
    Some(lossy(trim(bytes))).filter(|s| !s.is_empty())
}

/// Parses a directory entry name of `buffers/` (the inode number).
pub fn parse_inode_dir(name: &[u8]) -> Option<u64> {
    parse_u64(name)
}
