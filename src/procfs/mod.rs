//! Pure parsers over the bytes of `/proc`, debugfs, sysfs and bpffs files.
//!
//! Every function here takes bytes and returns values: no I/O, so each kernel era's format can
//! be tested from fixture files, and no panics on any input, because these bytes come from the
//! kernel of whatever device the tool runs on. The hot-path parsers ([`fd::classify_link`],
//! [`maps::for_each_dmabuf`]) borrow from their input and never allocate.

pub mod bpf_iter;
pub mod bufinfo;
pub mod dmabuf_rss;
pub mod fd;
pub mod fdinfo;
pub mod maps;
pub mod status;
pub mod sysfs;

/// Parses an unsigned decimal number (leading zeros allowed, as in debugfs columns).
/// Returns `None` on empty input, any non-digit, or overflow.
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Parses an unsigned hexadecimal number without prefix (maps addresses and offsets).
pub fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(d))
    })
}

/// Trims ASCII whitespace (spaces, tabs, newlines) from both ends.
pub fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// Turns kernel-provided bytes into a `String`, replacing invalid UTF-8 rather than failing:
/// a buffer name is informational and must never make a whole report fail.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"00004096"), Some(4096));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_hex(b"7f00AbCd"), Some(0x7f00abcd));
        assert_eq!(parse_hex(b"g"), None);
        assert_eq!(parse_hex(b"11112222333344445"), None);
    }
}
