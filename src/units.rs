//! Human sizes: parsing `4M`-style arguments and page rounding.
//!
//! Suffixes are powers of 1024 (K, M, G, case-insensitive), because buffer sizes are counted in
//! pages and every tool in this space (dmabuf_dump, /proc) reports KiB.

use crate::error::SizeError;

/// Parses `"4096"`, `"4K"`, `"4M"`, `"1G"` (also lower case) into bytes. Anything else (empty,
/// signs, spaces, fractions, other suffixes, values beyond `u64`) is refused, because a
/// misread size silently allocates the wrong amount of memory.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let unparsable = || SizeError::Unparsable(text.to_string());
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    if let Some(rest) = digits.strip_prefix('-') {
        // Keep "negative" distinct from "junk": it is the likely mistake behind e.g. `--size -1`.
        if let (true, Ok(value)) = (rest.bytes().all(|b| b.is_ascii_digit()), rest.parse::<i64>()) {
            return Err(SizeError::Negative(-value));
        }
    }
    // `u64::from_str` also accepts a leading '+'; a size is plain digits.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unparsable());
    }
    let value: u64 = digits.parse().map_err(|_| unparsable())?;
    value.checked_mul(1u64 << shift).ok_or_else(unparsable)
}

/// Converts a signed size, as AIDL's `long` delivers it, refusing negatives.
pub fn size_from_i64(size: i64) -> Result<u64, SizeError> {
    u64::try_from(size).map_err(|_| SizeError::Negative(size))
}

/// Rounds `size` up to a multiple of `page` (a power of two), as the heaps do before allocating.
/// Fails instead of wrapping: the kernel's own `PAGE_ALIGN` wraps to 0 for sizes near `u64::MAX`.
pub fn round_up(size: u64, page: u64) -> Result<u64, SizeError> {
    debug_assert!(page.is_power_of_two());
    size.checked_add(page - 1).map(|s| s & !(page - 1)).ok_or(SizeError::Overflow(size))
}

/// This system's page size.
pub fn page_size() -> u64 {
    crate::sys::page_size() as u64
}

/// [`round_up`] to this system's page size.
pub fn round_up_to_page(size: u64) -> Result<u64, SizeError> {
    round_up(size, page_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn suffixes_are_powers_of_1024() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("3m"), Ok(3 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("16g"), Ok(16 << 30));
        assert_eq!(parse_size("0K"), Ok(0));
    }

    #[test]
    fn junk_is_refused() {
        for junk in [
            "", "K", "M", "4KB", "4 K", " 4", "4 ", "+4", "4.5M", "0x10", "4T", "four", "4KK", "-",
            "-K", "1e3",
        ] {
            assert_eq!(parse_size(junk), Err(SizeError::Unparsable(junk.to_string())), "{junk:?}");
        }
    }

    #[test]
    fn negatives_are_named() {
        assert_eq!(parse_size("-1"), Err(SizeError::Negative(-1)));
        assert_eq!(parse_size("-4M"), Err(SizeError::Negative(-4)));
        assert_eq!(
            parse_size("-99999999999999999999"),
            Err(SizeError::Unparsable("-99999999999999999999".into()))
        );
        assert_eq!(parse_size("-+1"), Err(SizeError::Unparsable("-+1".into())));
        assert_eq!(size_from_i64(-5), Err(SizeError::Negative(-5)));
        assert_eq!(size_from_i64(5), Ok(5));
    }

    #[test]
    fn overflow_is_refused() {
        assert_eq!(
            parse_size("18446744073709551616"),
            Err(SizeError::Unparsable("18446744073709551616".into()))
        );
        // 2^34 G = 2^64 bytes: one past u64.
        assert_eq!(parse_size("17179869184G"), Err(SizeError::Unparsable("17179869184G".into())));
        assert_eq!(parse_size("17179869183G"), Ok(17_179_869_183u64 << 30));
        assert_eq!(
            parse_size("18014398509481984K"),
            Err(SizeError::Unparsable("18014398509481984K".into()))
        );
    }

    #[test]
    fn rounding() {
        assert_eq!(round_up(0, 4096), Ok(0));
        assert_eq!(round_up(1, 4096), Ok(4096));
        assert_eq!(round_up(4096, 4096), Ok(4096));
        assert_eq!(round_up(4097, 4096), Ok(8192));
        assert_eq!(round_up(u64::MAX - 4095, 4096), Ok(u64::MAX - 4095));
        assert_eq!(round_up(u64::MAX - 4094, 4096), Err(SizeError::Overflow(u64::MAX - 4094)));
        assert_eq!(round_up(u64::MAX, 4096), Err(SizeError::Overflow(u64::MAX)));
        assert_eq!(round_up(65537, 65536), Ok(131072));
    }

    #[test]
    fn page_size_is_sane() {
        let page = page_size();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        assert_eq!(round_up_to_page(1), Ok(page));
    }
}
