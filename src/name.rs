//! Purpose names for dma-bufs: validation, and setting them on a buffer.
//!
//! The kernel stores whatever bytes it is given (up to 31) and prints them verbatim in fdinfo
//! `name:` lines, in `/proc/<pid>/maps` paths (`/dmabuf:<name>`) and in debugfs `bufinfo` rows.
//! A newline or other control character would split or corrupt those lines for every tool that
//! reads them, so this module refuses them before the kernel ever sees the name. Spaces are fine
//! (`CAMERA preview`): every reader takes the rest of the line as the name.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::BorrowedFd;

use crate::error::NameError;
use crate::sys::{self, Errno};
use crate::{Error, Result};

/// Longest name the kernel keeps: `DMA_BUF_NAME_LEN` minus the terminating NUL.
pub const MAX_NAME_LEN: usize = sys::DMA_BUF_NAME_LEN - 1;

/// A name that passed [`validate`], stored NUL-terminated so it can go to the kernel without
/// another copy or allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufName {
    /// The name followed by at least one NUL.
    bytes: [u8; sys::DMA_BUF_NAME_LEN],
    len: usize,
}

impl BufName {
    /// Validates raw bytes (the service and CLI may hand over bytes that were never checked to be
    /// UTF-8) and keeps them.
    pub fn new(name: &[u8]) -> std::result::Result<Self, NameError> {
        let text = validate(name)?;
        let mut bytes = [0u8; sys::DMA_BUF_NAME_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(BufName { bytes, len: text.len() })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Validation guarantees UTF-8; fall back to "" rather than panic should that ever break.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// The name as the kernel receives it.
    pub fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or_default()
    }
}

impl fmt::Debug for BufName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for BufName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BufName {
    type Err = NameError;

    fn from_str(s: &str) -> std::result::Result<Self, NameError> {
        BufName::new(s.as_bytes())
    }
}

/// Checks a proposed name and returns it as text. Rules, in the order they are checked:
/// not empty; at most [`MAX_NAME_LEN`] bytes (longer names the kernel refuses); no NUL (it would
/// silently truncate the name); no ASCII control character (`< 0x20` or `0x7f`: newline, tab,
/// escape sequences corrupt line-based readers); valid UTF-8 (so every reader, including AIDL
/// `String`s, can carry it).
pub fn validate(name: &[u8]) -> std::result::Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len(), max: MAX_NAME_LEN });
    }
    if let Some((offset, &byte)) = name.iter().enumerate().find(|(_, &b)| b < 0x20 || b == 0x7f) {
        return Err(if byte == 0 {
            NameError::Nul(offset)
        } else {
            NameError::Control { offset, byte }
        });
    }
    std::str::from_utf8(name).map_err(|_| NameError::NotUtf8)
}

/// Names the buffer behind `fd`. The kernel keeps the last name set; see [`set_name_error`] for
/// how refusals are reported.
pub fn set_name(fd: BorrowedFd<'_>, name: &BufName) -> Result<()> {
    sys::set_name(fd, name.as_c_str()).map_err(set_name_error)
}

/// Maps a `DMA_BUF_SET_NAME` errno to the library's error: ENOTTY means the fd does not
/// understand the ioctl (a kernel before 5.3, or not a dma-buf at all), EBUSY a kernel that
/// refuses renaming while devices are attached.
pub fn set_name_error(errno: Errno) -> Error {
    match errno {
        Errno::NOTTY => Error::Unsupported("naming dma-bufs (DMA_BUF_SET_NAME needs Linux 5.3)"),
        Errno::BUSY => Error::Busy,
        other => Error::io("DMA_BUF_SET_NAME", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["CAMERA", "CAMERA preview", "a", "gralloc:surface#3", "é-名前"] {
            assert_eq!(validate(ok.as_bytes()), Ok(ok));
            assert_eq!(
                BufName::new(ok.as_bytes()).map(|n| n.as_str().to_owned()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn empty() {
        assert_eq!(validate(b""), Err(NameError::Empty));
    }

    #[test]
    fn length_limit_is_31_bytes() {
        let max = [b'x'; 31];
        assert_eq!(validate(&max).map(str::len), Ok(31));
        assert_eq!(validate(&[b'x'; 32]), Err(NameError::TooLong { len: 32, max: 31 }));
        // Bytes, not characters: 16 two-byte characters are 32 bytes.
        assert_eq!(
            validate("é".repeat(16).as_bytes()),
            Err(NameError::TooLong { len: 32, max: 31 })
        );
    }

    #[test]
    fn nul() {
        assert_eq!(validate(b"CAM\0ERA"), Err(NameError::Nul(3)));
        assert_eq!(validate(b"\0"), Err(NameError::Nul(0)));
    }

    #[test]
    fn control_characters() {
        assert_eq!(validate(b"CAM\nERA"), Err(NameError::Control { offset: 3, byte: b'\n' }));
        assert_eq!(validate(b"\tX"), Err(NameError::Control { offset: 0, byte: b'\t' }));
        assert_eq!(validate(b"X\r"), Err(NameError::Control { offset: 1, byte: b'\r' }));
        assert_eq!(validate(b"X\x1b[0m"), Err(NameError::Control { offset: 1, byte: 0x1b }));
        assert_eq!(validate(b"X\x1f"), Err(NameError::Control { offset: 1, byte: 0x1f }));
        assert_eq!(validate(b"X\x7f"), Err(NameError::Control { offset: 1, byte: 0x7f }));
        assert_eq!(validate(b" ~"), Ok(" ~"));
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(validate(b"CAM\xff"), Err(NameError::NotUtf8));
        assert_eq!(validate(b"\xc3"), Err(NameError::NotUtf8));
    }

    #[test]
    fn kernel_form_is_nul_terminated() {
        let name: BufName = "CAMERA preview".parse().expect("valid");
        assert_eq!(name.as_c_str(), c"CAMERA preview");
        let longest = BufName::new(&[b'y'; 31]).expect("valid");
        assert_eq!(longest.as_c_str().to_bytes(), &[b'y'; 31]);
        assert_eq!(format!("{name:?} {name}"), "\"CAMERA preview\" CAMERA preview");
    }

    #[test]
    fn errno_mapping() {
        assert!(matches!(set_name_error(Errno::NOTTY), Error::Unsupported(_)));
        assert!(matches!(set_name_error(Errno::BUSY), Error::Busy));
        assert!(matches!(set_name_error(Errno::FAULT), Error::Io { .. }));
    }

    #[test]
    fn setting_a_name_on_a_non_dma_buf_is_unsupported() {
        let memfd = crate::sys::test_memfd();
        let name: BufName = "X".parse().expect("valid");
        assert!(matches!(
            set_name(std::os::fd::AsFd::as_fd(&memfd), &name),
            Err(Error::Unsupported(_))
        ));
    }
}
