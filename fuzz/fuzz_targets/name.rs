//! Purpose names: `name::validate` and `BufName::new` (CLI `--name`, AIDL `name`).
//!
//! Asserts against a direct statement of the rules, in their documented order: empty, longer
//! than 31 bytes, NUL or control character (first offending offset), not UTF-8. Accepted names
//! are the input unchanged, 1..=31 bytes, free of control characters, and reach the kernel as
//! the same bytes NUL-terminated.
#![no_main]

use dmabufd::error::NameError;
use dmabufd::name::{self, BufName, MAX_NAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let expected = if data.is_empty() {
        Err(NameError::Empty)
    } else if data.len() > MAX_NAME_LEN {
        Err(NameError::TooLong { len: data.len(), max: 31 })
    } else if let Some(offset) = data.iter().position(|&b| b < 0x20 || b == 0x7f) {
        Err(match data[offset] {
            0 => NameError::Nul(offset),
            byte => NameError::Control { offset, byte },
        })
    } else {
        std::str::from_utf8(data).map_err(|_| NameError::NotUtf8)
    };
    assert_eq!(MAX_NAME_LEN, 31);
    assert_eq!(name::validate(data), expected);
    match BufName::new(data) {
        Ok(buf) => {
            assert_eq!(Ok(buf.as_str()), expected);
            assert!((1..=31).contains(&buf.as_str().len()));
            assert!(!buf.as_str().bytes().any(|b| b < 0x20 || b == 0x7f));
            assert_eq!(buf.as_c_str().to_bytes(), data);
            assert_eq!(buf.to_string(), buf.as_str());
        }
        Err(e) => assert_eq!(Err(e), expected),
    }
});
