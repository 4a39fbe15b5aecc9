//! Bytes that nobody vetted, as text: buffer names kept exact, and the one escaping that every
//! text output applies to them.
//!
//! Any process holding a dma-buf can rename it with any bytes but NUL (up to 31), whatever the
//! service set, and any process can set its own command name. Printed raw, a newline would split
//! a row of a table (and could forge a `PROCESS TOTAL` line), an escape sequence would drive the
//! terminal, a bidirectional override would reorder what the reader sees. So the model keeps a
//! name as the exact bytes the kernel reported ([`Name`]; JSON and the AIDL carry those), and
//! every table, CSV file, ledger listing, dumpsys output and message shows it through [`escape`],
//! documented in docs/dump.md:
//!
//! * `\` becomes `\\`, newline `\n`, tab `\t`, carriage return `\r`;
//! * every other byte of a control character (C0, DEL, C1 `U+0080..U+009F`), of a line or
//!   paragraph separator (`U+2028`, `U+2029`) or of a bidirectional formatting character
//!   (`U+061C`, `U+200E`, `U+200F`, `U+202A..U+202E`, `U+2066..U+2069`), and every byte that is
//!   not part of valid UTF-8, becomes `\xNN` (two lowercase hex digits);
//! * everything else is printed as is.
//!
//! The escaped form is unambiguous (a literal `\x0a` in a name shows as `\\x0a`) and never
//! contains a control character, so a row stays one row.

use std::borrow::Cow;
use std::fmt::{self, Write};
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};

/// The escaped, printable form of `bytes` (see the [module docs](self)); borrowed when nothing
/// needed escaping, which is the case for every name the service sets.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if is_plain(bytes) {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(s);
        }
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(needs_escape) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if needs_escape(c) => {
                    let mut utf8 = [0u8; 4];
                    hex_bytes(&mut out, c.encode_utf8(&mut utf8).as_bytes());
                }
                c => out.push(c),
            }
        }
        hex_bytes(&mut out, chunk.invalid());
    }
    Cow::Owned(out)
}

/// True when `bytes` are their own escaped form, as wide as they are long: printable ASCII,
/// the backslash aside. Most names are, and cheap to tell: a table laying out thousands of them
/// copies these as they are.
pub fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (b' '..=b'~').contains(b) && *b != b'\\')
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn hex_bytes(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\x{b:02x}");
    }
}

/// A buffer's purpose name exactly as the kernel reported it: any bytes, not necessarily UTF-8.
///
/// Displays as the [escaped](escape) form (padding and alignment flags apply to it), which is
/// what text outputs print. Serialises as a JSON string: the name itself when it is valid UTF-8,
/// else the name with each invalid sequence replaced by U+FFFD; [`Name::serialize_fields`] adds
/// the exact bytes beside it in that case.
///
/// Shared, not copied: one name is in the kernel's list, the model, the report and its per-name
/// view, and a scan has thousands.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<[u8]>);

impl Name {
    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The exact bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// True for the empty name.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name as text, if it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The name as text, with U+FFFD for each invalid UTF-8 sequence: for string-only carriers
    /// (JSON strings, AIDL `String`), never for display (use [`Display`](fmt::Display)).
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Serialises `name` as the JSON fields `name` (string, U+FFFD for invalid UTF-8, or null
    /// when absent) and, only when the name is not valid UTF-8, `name_bytes` (its exact bytes as
    /// an array of integers). Used with `#[serde(flatten, serialize_with = ...)]`.
    pub fn serialize_fields<S: Serializer>(name: &Option<Name>, s: S) -> Result<S::Ok, S::Error> {
        Self::fields(name.as_ref(), s)
    }

    /// [`Name::serialize_fields`] for a name that is always present (`""` when unnamed).
    pub fn serialize_field<S: Serializer>(name: &Name, s: S) -> Result<S::Ok, S::Error> {
        Self::fields(Some(name), s)
    }

    fn fields<S: Serializer>(name: Option<&Name>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &name.map(Name::to_string_lossy))?;
        if let Some(name) = name.filter(|n| n.to_str().is_none()) {
            map.serialize_entry("name_bytes", name.as_bytes())?;
        }
        map.end()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(&self.0))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", escape(&self.0))
    }
}

impl From<&[u8]> for Name {
    fn from(bytes: &[u8]) -> Self {
        Name(bytes.into())
    }
}

impl From<Vec<u8>> for Name {
    fn from(bytes: Vec<u8>) -> Self {
        Name(bytes.into())
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(s.as_bytes().into())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(s.into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes() {
        for (raw, shown) in [
            (&b"CAMERA preview"[..], "CAMERA preview"),
            (b"\xc3\xa9-\xe5\x90\x8d", "é-名"),
            (b"a\nPROCESS TOTAL", "a\\nPROCESS TOTAL"),
            (b"\t\r\\", "\\t\\r\\\\"),
            (b"\x1b[31mred", "\\x1b[31mred"),
            (b"\x7f\x01", "\\x7f\\x01"),
            (b"\\012", "\\\\012"),
            (b"CAM\xff\xc3", "CAM\\xff\\xc3"),
            // C1 NEL, line separator, right-to-left override: escaped byte by byte.
            (b"\xc2\x85", "\\xc2\\x85"),
            (b"\xe2\x80\xa8", "\\xe2\\x80\\xa8"),
            (b"\xe2\x80\xaeevil", "\\xe2\\x80\\xaeevil"),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
        assert!(matches!(escape(b"GL"), Cow::Borrowed("GL")));
    }

    #[test]
    fn display_pads_the_escaped_form() {
        let name = Name::from(&b"a\tb"[..]);
        assert_eq!(format!("[{name:>6}]"), "[  a\\tb]");
        assert_eq!(format!("{name:?}"), "\"a\\tb\"");
    }

    #[test]
    fn json_fields() {
        #[derive(serde::Serialize)]
        struct View {
            #[serde(flatten, serialize_with = "Name::serialize_fields")]
            name: Option<Name>,
        }
        let json = |name: Option<&[u8]>| {
            serde_json::to_string(&View { name: name.map(Name::from) }).expect("json")
        };
        assert_eq!(json(None), r#"{"name":null}"#);
        assert_eq!(json(Some(b"a\nb")), r#"{"name":"a\nb"}"#);
        assert_eq!(json(Some(b"A\xff")), "{\"name\":\"A\u{fffd}\",\"name_bytes\":[65,255]}");
    }

    /// What a JSON reader recovers: `name_bytes` when present, else the string's bytes.
    fn bytes_from_json(value: &serde_json::Value) -> Vec<u8> {
        match value.get("name_bytes") {
            Some(serde_json::Value::Array(bytes)) => {
                bytes.iter().map(|b| b.as_u64().expect("byte") as u8).collect()
            }
            _ => value["name"].as_str().expect("name").as_bytes().to_vec(),
        }
    }

    proptest! {
        #[test]
        fn any_name_round_trips_through_json(raw in proptest::collection::vec(1u8..=255, 0..=31)) {
            #[derive(serde::Serialize)]
            struct View {
                #[serde(flatten, serialize_with = "Name::serialize_field")]
                name: Name,
            }
            let json = serde_json::to_string(&View { name: Name::from(raw.clone()) }).expect("json");
            let value: serde_json::Value = serde_json::from_str(&json).expect("parse");
            prop_assert_eq!(bytes_from_json(&value), raw);
        }

        #[test]
        fn escaped_names_hold_no_control_characters(raw in proptest::collection::vec(any::<u8>(), 0..=64)) {
            let shown = escape(&raw);
            prop_assert!(!shown.chars().any(|c| c.is_control() || needs_escape(c) && c != '\\'));
        }

        #[test]
        fn escaping_is_injective(a in proptest::collection::vec(any::<u8>(), 0..=8),
                                 b in proptest::collection::vec(any::<u8>(), 0..=8)) {
            prop_assume!(a != b);
            prop_assert_ne!(escape(&a), escape(&b));
        }
    }
}
