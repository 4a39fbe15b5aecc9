//! `/proc/<pid>/fdinfo/<n>` of a dma-buf fd.
//!
//! 6.12 prints `pos:`, `flags:`, `mnt_id:`, `ino:`, then the dma-buf's own `size:`, `count:`,
//! `exp_name:` and, only when a name is set, `name:`; values follow the colon after a tab.
//! Kernels before ~5.10 print no dma-buf lines at all and older ones lack the generic `ino:`, so
//! every field is optional.
//!
//! The name is printed raw and last: whoever holds the buffer can put newlines in it, and with
//! them lines that look like `size:` or `ino:`. So the first line of each key is the kernel's,
//! and the `name:` line, once reached, takes the rest of the file (less the kernel's final
//! newline) as the exact name. Read once per buffer, so owning the name costs nothing.

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
    /// Purpose name (`name:`), the exact bytes; absent when unnamed.
    pub name: Option<Vec<u8>>,
}

/// Parses an fdinfo file. Unknown lines are ignored; malformed numbers leave the field `None`.
pub fn parse(bytes: &[u8]) -> FdInfo {
    let mut info = FdInfo::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        if let Some(name) = rest.strip_prefix(b"name:\t") {
            let name = name.strip_suffix(b"\n").unwrap_or(name);
            info.name = Some(name.to_vec()).filter(|n| !n.is_empty());
            break;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        rest = next;
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (key, value) = (&line[..colon], trim(&line[colon + 1..]));
        let slot = match key {
            b"ino" => &mut info.ino,
            b"size" => &mut info.size,
            b"count" => &mut info.count,
            b"exp_name" => {
                if info.exporter.is_none() {
                    info.exporter = Some(lossy(value)).filter(|s| !s.is_empty());
                }
                continue;
            }
            _ => continue,
        };
        if slot.is_none() {
            *slot = parse_u64(value);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_takes_the_rest_and_cannot_override_fields() {
        let text = b"pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t7\nsize:\t4096\ncount:\t1\n\
exp_name:\tsystem\nname:\t\nsize:\t1073741824\nino:\t9\n\n";
        let info = parse(text);
        assert_eq!((info.ino, info.size, info.count), (Some(7), Some(4096), Some(1)));
        assert_eq!(info.exporter.as_deref(), Some("system"));
        assert_eq!(info.name.as_deref(), Some(&b"\nsize:\t1073741824\nino:\t9\n"[..]));
    }
}
