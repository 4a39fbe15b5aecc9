//! `/proc/<pid>/maps`: the dma-buf mappings of a process.
//!
//! A mapped dma-buf shows as `start-end perms offset dev inode   /dmabuf:<name>`: the inode column
//! is the buffer's inode and the rest of the line is its name, spaces included. A process maps
//! hundreds of libraries and anonymous regions and only a few dma-bufs, so instead of splitting
//! every line we search the whole file for `/dmabuf:` (SIMD substring search) and parse only the
//! lines it lands on. Anonymous-inode mappings of pre-5.3 kernels all share one inode and cannot be
//! told apart; they are not reported.
//!
//! The kernel prints the path with `seq_path(..., "\n")`: a newline in a name becomes the four
//! bytes `\012` (so a line stays a line), and nothing else is escaped, not even a backslash. A
//! name that holds the text `\012` therefore reads the same as one holding a newline; see
//! [`unescape_name`]. Everything before the path is the kernel's, and the name is the rest of
//! the line, so a name cannot change a mapping's range, offset or inode.

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
    /// The device column as `st_dev` encodes it ([`encode_dev`]): the dma-buf file system's for
    /// a real dma-buf, anything for a file that is only named like one.
    pub dev: u64,
    /// Purpose name as the kernel escaped it (see [`unescape_name`]); empty when unnamed.
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

/// The name as set, from the name as maps shows it: every `\012` turned back into the newline
/// the kernel escaped. Exact unless the name itself contained the text `\012`, which the
/// kernel prints unchanged; prefer a name from an fd link, fdinfo or bufinfo where there is one.
pub fn unescape_name(escaped: &[u8]) -> Vec<u8> {
    const NEWLINE: &[u8] = b"\\012";
    let mut out = Vec::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = memmem::find(rest, NEWLINE) {
        out.extend_from_slice(&rest[..at]);
        out.push(b'\n');
        rest = &rest[at + NEWLINE.len()..];
    }
    out.extend_from_slice(rest);
    out
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
    let dev = parse_dev(field()?)?;
    let inode = parse_u64(field()?)?;
    let dash = memchr(b'-', range)?;
    let (start, end) = (parse_hex(&range[..dash])?, parse_hex(&range[dash + 1..])?);
    let path_start = rest.iter().position(|&b| b != b' ')?;
    let name = rest[path_start..].strip_prefix(PATH_PREFIX)?;
    Some(DmaBufMap { start, end, offset, inode, dev, name })
}

/// `major:minor` in hex, as maps prints a device.
fn parse_dev(field: &[u8]) -> Option<u64> {
    let colon = memchr(b':', field)?;
    let major = u32::try_from(parse_hex(&field[..colon])?).ok()?;
    let minor = u32::try_from(parse_hex(&field[colon + 1..])?).ok()?;
    Some(encode_dev(major, minor))
}

/// A device number as `stat` reports it in `st_dev` (the kernel's `new_encode_dev`, glibc's and
/// bionic's `makedev`), so that a maps line compares with a `stat` of the same file.
pub fn encode_dev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_column_encodes_as_st_dev() {
        let line = b"7f00-7f01 rw-s 00000000 00:0b 2001   /dmabuf:GL";
        let m = parse_line(line).expect("a dma-buf line");
        assert_eq!((m.inode, m.dev, m.name), (2001, 0x0b, &b"GL"[..]));
        for (major, minor) in [(0x103, 0x12345), (0xfff_ffff, 0xffff_ffff), (8, 1)] {
            #[allow(clippy::useless_conversion)] // `dev_t`'s width differs by libc.
            let want = u64::from(libc::makedev(major, minor));
            assert_eq!(encode_dev(major, minor), want, "{major:x}:{minor:x}");
        }
        assert_eq!(parse_line(b"7f00-7f01 rw-s 0 0b 2001 /dmabuf:GL"), None, "no colon");
    }

    #[test]
    fn newlines_are_unescaped() {
        assert_eq!(unescape_name(b"a\\012b\\012"), b"a\nb\n");
        assert_eq!(unescape_name(b"\\01\\0123"), b"\\01\n3");
        assert_eq!(unescape_name(b"plain"), b"plain");
    }
}
