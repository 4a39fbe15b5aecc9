//! `/proc/<pid>/dmabuf_rss`, `dmabuf_rss_hwm` and `dmabuf_pss`: per-process dma-buf counters
//! that Android common kernels add (not upstream Linux). Each holds one decimal byte count and a
//! newline: Rss counts every distinct buffer the process references by fd or mapping once, the
//! high-water mark the largest Rss since it was last reset (by writing `0`), Pss the process's
//! share of each buffer split among its holders.
//!
//! They matter where `/proc/<pid>/fd` and `maps` of other uids are closed to the reader (a vendor
//! service on a device): the kernel counts what the reader cannot see.

use std::ffi::CStr;

use super::{parse_u64, trim};

/// The per-process counter files: Rss, its high-water mark, Pss.
pub const FILES: [&CStr; 3] = [c"dmabuf_rss", c"dmabuf_rss_hwm", c"dmabuf_pss"];

/// Parses one counter file: decimal bytes, surrounding whitespace allowed. `None` for anything
/// else (a kernel that printed something else must not be read as a number).
pub fn parse(bytes: &[u8]) -> Option<u64> {
    parse_u64(trim(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters() {
        assert_eq!(parse(b"4096\n"), Some(4096));
        assert_eq!(parse(b"0\n"), Some(0));
        assert_eq!(parse(b"18446744073709551615\n"), Some(u64::MAX));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"4096 kB\n"), None);
        assert_eq!(parse(b"-1\n"), None);
    }
}
