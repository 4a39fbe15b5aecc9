//! `/proc/<pid>/maps`: the dma-buf mappings of a process.
//!
//! A mapped dma-buf shows as `start-end perms offset dev inode   /dmabuf:<name>`: the inode column
//! is the buffer's inode and the rest of the line is its name, spaces included. A process maps
//! hundreds of libraries and anonymous regions and only a few dma-bufs, so instead of splitting
//! every line we search the whole file for `/dmabuf:` (SIMD substring search) and parse only the
//! lines it lands on. Anonymous-inode mappings of pre-5.3 kernels all share one inode and cannot be
//! told apart; they are not reported.

use memchr::{memchr, memmem, memrchr};

use super::{parse_hex, parse_u64};

/// One dma-buf VMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaBufMap<'a> {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Offset into the buffer, in bytes.
    pub offset: u64,
    /// The buffer's inode.
    pub inode: u64,
    /// Purpose name; empty when unnamed.
    pub name: &'a [u8],
}

impl DmaBufMap<'_> {
    /// Length of the mapping in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the mapping is empty (never for a real VMA).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const PATH_PREFIX: &[u8] = b"/dmabuf:";

/// Calls `f` for every dma-buf mapping in a maps file, in file order. Malformed lines are skipped.
pub fn for_each_dmabuf<'a>(maps: &'a [u8], mut f: impl FnMut(DmaBufMap<'a>)) {
    let finder = memmem::Finder::new(PATH_PREFIX);
    let mut from = 0;
    while let Some(hit) = finder.find(&maps[from..]).map(|i| i + from) {
        let line_start = memrchr(b'\n', &maps[..hit]).map_or(0, |i| i + 1);
        let line_end = memchr(b'\n', &maps[hit..]).map_or(maps.len(), |i| i + hit);
        if let Some(entry) = parse_line(&maps[line_start..line_end]) {
            f(entry);
        }
        from = line_end;
    }
}

/// Parses one maps line if its path is a dma-buf.
pub fn parse_line(line: &[u8]) -> Option<DmaBufMap<'_>> {
    let mut rest = line;
    let mut field = || -> Option<&[u8]> {
        let start = rest.iter().position(|&b| b != b' ')?;
        let tail = &rest[start..];
        let len = tail.iter().position(|&b| b == b' ').unwrap_or(tail.len());
        let (value, after) = tail.split_at(len);
        rest = after;
        Some(value)
    };
    let range = field()?;
    let _perms = field()?;
    let offset = parse_hex(field()?)?;
    let _dev = field()?;
    let inode = parse_u64(field()?)?;
    let dash = memchr(b'-', range)?;
    let (start, end) = (parse_hex(&range[..dash])?, parse_hex(&range[dash + 1..])?);
    let path_start = rest.iter().position(|&b| b != b' ')?;
    let name = rest[path_start..].strip_prefix(PATH_PREFIX)?;
    Some(DmaBufMap { start, end, offset, inode, name })
}
