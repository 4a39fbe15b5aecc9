//! Purpose names for dma-bufs: validation, the kernel's cut, and setting them on a buffer.
//!
//! The kernel stores whatever bytes it is given (up to 31) and prints them verbatim in fdinfo
//! `name:` lines, in `/proc/<pid>/maps` paths (`/dmabuf:<name>`) and in debugfs `bufinfo` rows.
//! A newline or other control character would split or corrupt those lines for every tool that
//! reads them, so this module refuses them before the kernel ever sees the name. Spaces are fine
//! (`CAMERA preview`): every reader takes the rest of the line as the name.
//!
//! Clients name buffers by what they are for, and gralloc's IAllocator passes up to 128 bytes;
//! the kernel keeps 31. So a name may be up to [`MAX_NAME_LEN`] bytes: the kernel gets its
//! [`kernel_prefix`] (the longest prefix of whole characters within [`MAX_KERNEL_NAME_LEN`]
//! bytes) and whoever keeps the full name (the service's ledger) shows it where it knows the
//! buffer. A front end without such a record (`dmabufctl alloc` straight against the kernel)
//! asks [`BufName::require_whole`], so nothing is cut silently.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::BorrowedFd;

use crate::error::NameError;
use crate::sys::{self, Errno};
use crate::{Error, Result};

/// Longest name accepted: what gralloc's IAllocator v2 passes (`BufferDescriptorInfo.name`).
pub const MAX_NAME_LEN: usize = 128;

/// Longest name the kernel keeps: `DMA_BUF_NAME_LEN` minus the terminating NUL.
pub const MAX_KERNEL_NAME_LEN: usize = sys::DMA_BUF_NAME_LEN - 1;

/// A name that passed [`validate`], with the [`kernel_prefix`] the kernel gets stored
/// NUL-terminated, so it can go to the kernel without another copy or allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufName {
    full: [u8; MAX_NAME_LEN],
    len: usize,
    /// The kernel's prefix followed by at least one NUL.
    kernel: [u8; sys::DMA_BUF_NAME_LEN],
}

impl BufName {
    /// Validates raw bytes (the service and CLI may hand over bytes that were never checked to be
    /// UTF-8) and keeps them.
    pub fn new(name: &[u8]) -> std::result::Result<Self, NameError> {
        let text = validate(name)?;
        let mut full = [0u8; MAX_NAME_LEN];
        full[..text.len()].copy_from_slice(text.as_bytes());
        let prefix = kernel_prefix(text);
        let mut kernel = [0u8; sys::DMA_BUF_NAME_LEN];
        kernel[..prefix.len()].copy_from_slice(prefix.as_bytes());
        Ok(BufName { full, len: text.len(), kernel })
    }

    /// The whole name as text.
    pub fn as_str(&self) -> &str {
        // Validation guarantees UTF-8; fall back to "" rather than panic should that ever break.
        std::str::from_utf8(&self.full[..self.len]).unwrap_or_default()
    }

    /// The name as the kernel receives it: [`kernel_prefix`] of the whole name.
    pub fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.kernel).unwrap_or_default()
    }

    /// True when the kernel gets all of the name.
    pub fn is_whole_in_kernel(&self) -> bool {
        self.len <= MAX_KERNEL_NAME_LEN
    }

    /// The name, if the kernel keeps all of it; for front ends that keep no record of the
    /// full name, which would otherwise be cut without anyone knowing.
    pub fn require_whole(self) -> std::result::Result<Self, NameError> {
        if self.is_whole_in_kernel() {
            Ok(self)
        } else {
            Err(NameError::CutByKernel { len: self.len, max: MAX_KERNEL_NAME_LEN })
        }
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

/// What the kernel keeps of a valid name: its longest prefix of whole UTF-8 characters within
/// [`MAX_KERNEL_NAME_LEN`] bytes (a cut inside a character would leave invalid UTF-8 in every
/// kernel listing).
pub fn kernel_prefix(name: &str) -> &str {
    let mut end = name.len().min(MAX_KERNEL_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Checks a proposed name and returns it as text. Rules, in the order they are checked:
/// not empty; at most [`MAX_NAME_LEN`] bytes; no NUL (it would
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
    fn length_limit_is_128_bytes() {
        let max = [b'x'; 128];
        assert_eq!(validate(&max).map(str::len), Ok(128));
        assert_eq!(validate(&[b'x'; 129]), Err(NameError::TooLong { len: 129, max: 128 }));
        // Bytes, not characters: 65 two-byte characters are 130 bytes.
        assert_eq!(
            validate("é".repeat(65).as_bytes()),
            Err(NameError::TooLong { len: 130, max: 128 })
        );
    }

    #[test]
    fn the_kernel_gets_whole_characters_within_31_bytes() {
        assert_eq!(kernel_prefix("GL"), "GL");
        assert_eq!(kernel_prefix(&"x".repeat(128)), "x".repeat(31));
        // 30 ASCII bytes then a 2-byte character: 32 bytes, the character goes.
        let name = format!("{}é", "a".repeat(30));
        assert_eq!(kernel_prefix(&name), "a".repeat(30));
        // 10 three-byte characters are 30 bytes; the eleventh would end at 33.
        assert_eq!(kernel_prefix(&"名".repeat(20)), "名".repeat(10));
        let long = BufName::new("名".repeat(20).as_bytes()).expect("60 bytes");
        assert_eq!(long.as_str(), "名".repeat(20));
        assert_eq!(long.as_c_str().to_bytes(), "名".repeat(10).as_bytes());
        assert!(!long.is_whole_in_kernel());
        assert_eq!(long.require_whole(), Err(NameError::CutByKernel { len: 60, max: 31 }));
        let short = BufName::new(&[b'y'; 31]).expect("valid");
        assert_eq!(short.require_whole(), Ok(short));
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
