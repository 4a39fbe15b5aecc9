//! Purpose names: `name::validate` and `BufName::new` (CLI `--name`, AIDL `name`).
//!
//! Asserts against a direct statement of the rules, in their documented order: empty, longer
//! than 128 bytes, NUL or control character (first offending offset), not UTF-8. Accepted names
//! are the input unchanged, 1..=128 bytes, free of control characters; the kernel gets their
//! longest prefix of whole characters within 31 bytes, NUL-terminated, and `require_whole`
//! accepts exactly the names the kernel keeps whole.
#![no_main]

use dmabufd::error::NameError;
use dmabufd::name::{self, BufName, MAX_KERNEL_NAME_LEN, MAX_NAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let expected = if data.is_empty() {
        Err(NameError::Empty)
    } else if data.len() > MAX_NAME_LEN {
        Err(NameError::TooLong { len: data.len(), max: 128 })
    } else if let Some(offset) = data.iter().position(|&b| b < 0x20 || b == 0x7f) {
        Err(match data[offset] {
            0 => NameError::Nul(offset),
            byte => NameError::Control { offset, byte },
        })
    } else {
        std::str::from_utf8(data).map_err(|_| NameError::NotUtf8)
    };
    assert_eq!((MAX_NAME_LEN, MAX_KERNEL_NAME_LEN), (128, 31));
    assert_eq!(name::validate(data), expected);
    match BufName::new(data) {
        Ok(buf) => {
            assert_eq!(Ok(buf.as_str()), expected);
            assert!((1..=128).contains(&buf.as_str().len()));
            assert!(!buf.as_str().bytes().any(|b| b < 0x20 || b == 0x7f));
            assert_eq!(buf.to_string(), buf.as_str());
            // The kernel's name: a prefix, valid UTF-8, at most 31 bytes, and no whole
            // character more would fit.
            let kernel = buf.as_c_str().to_bytes();
            assert!(data.starts_with(kernel) && kernel.len() <= 31);
            let kernel = std::str::from_utf8(kernel).expect("whole characters");
            let next = buf.as_str()[kernel.len()..].chars().next();
            assert!(next.is_none_or(|c| kernel.len() + c.len_utf8() > 31));
            assert_eq!(kernel, name::kernel_prefix(buf.as_str()));
            match buf.require_whole() {
                Ok(_) => assert_eq!(kernel.len(), data.len()),
                Err(e) => {
                    assert!(data.len() > 31);
                    assert_eq!(e, NameError::CutByKernel { len: data.len(), max: 31 });
                }
            }
        }
        Err(e) => assert_eq!(Err(e), expected),
    }
});
