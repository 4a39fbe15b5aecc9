//! Size arguments (`dmabufctl alloc --size`, service `--quota`/`--max-size`): `units::parse_size`.
//!
//! Asserts against a direct statement of the documented grammar: accepted exactly when the text
//! is plain decimal digits with an optional K/M/G (any case) suffix and the value fits in u64,
//! with value = digits << 10/20/30; negatives are reported as such; a refusal quotes the input
//! as given (bounded by it); an accepted value round-trips through its decimal text.
#![no_main]

use dmabufd::error::SizeError;
use dmabufd::units::parse_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // clap hands over `String`s only.
    };
    let result = parse_size(text);
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let expected = plain
        .then(|| digits.parse::<u128>().ok())
        .flatten()
        .map(|v| v << shift)
        .and_then(|v| u64::try_from(v).ok());
    match result {
        Ok(value) => {
            assert_eq!(Some(value), expected, "{text:?}");
            assert_eq!(parse_size(&value.to_string()), Ok(value));
        }
        Err(SizeError::Negative(n)) => {
            assert!(n <= 0 && text.starts_with('-'), "{text:?} -> {n}");
            assert_eq!(expected, None);
        }
        Err(SizeError::Unparsable(quoted)) => {
            assert_eq!(quoted, text);
            assert_eq!(expected, None, "{text:?} refused");
        }
        Err(other) => panic!("{text:?}: unexpected {other:?}"),
    }
});
