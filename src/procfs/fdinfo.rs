//! `/proc/<pid>/fdinfo/<n>` of a dma-buf fd.
//!
//! 6.12 prints `pos:`, `flags:`, `mnt_id:`, `ino:`, then the dma-buf's own `size:`, `count:`,
//! `exp_name:` and, only when a name is set, `name:`; values follow the colon after a tab.
//! Kernels before ~5.10 print no dma-buf lines at all and older ones lack the generic `ino:`, so
//! every field is optional. Read once per buffer, so owning the strings costs nothing.

use super::{lossy, parse_u64, trim};

/// The dma-buf fields of one fdinfo file; `None` for each line the kernel did not print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// Inode of the file (`ino:`), the buffer's identity.
    pub ino: Option<u64>,
    /// Buffer size in bytes (`size:`).
    pub size: Option<u64>,
    /// Reference count of the dma-buf's file (`count:`); may include a temporary reference
    /// taken while printing.
    pub count: Option<u64>,
    /// Exporter, for heap buffers the heap name (`exp_name:`).
    pub exporter: Option<String>,
    /// Purpose name (`name:`), absent when unnamed.
    pub name: Option<String>,
}

/// Parses an fdinfo file. Unknown lines are ignored; malformed numbers leave the field `None`.
pub fn parse(bytes: &[u8]) -> FdInfo {
    let mut info = FdInfo::default();
    for line in bytes.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        match key {
            b"ino" => info.ino = parse_u64(trim(value)),
            b"size" => info.size = parse_u64(trim(value)),
            b"count" => info.count = parse_u64(trim(value)),
            b"exp_name" => info.exporter = Some(lossy(trim(value))).filter(|s| !s.is_empty()),
            // Names may contain spaces (and trailing ones): strip only the separator tab.
            b"name" => {
                info.name = Some(lossy(value.strip_prefix(b"\t").unwrap_or(value)))
                    .filter(|s| !s.is_empty())
            }
            _ => {}
        }
    }
    info
}
