//! `/proc/<pid>/fdinfo/<n>`: `procfs::fdinfo::parse`.
//!
//! Asserts: bounded strings, and a round trip: printing the parsed fields the way 6.12 does and
//! parsing that again gives the same fields (nothing the parser keeps depends on lines it skips).
#![no_main]

use dmabufd::procfs::fdinfo::{self, FdInfo};
use dmabufd_fuzz::assert_bounded;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;

fuzz_target!(|data: &[u8]| {
    let info = fdinfo::parse(data);
    for text in [&info.exporter, &info.name].into_iter().flatten() {
        assert_bounded(text, data);
        assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
    }
    assert_eq!(fdinfo::parse(&print(&info)), info, "round trip of {info:?}");
});

fn print(info: &FdInfo) -> Vec<u8> {
    let mut out = String::from("pos:\t0\nflags:\t02000002\nmnt_id:\t16\n");
    let number = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
    let _ = writeln!(out, "ino:\t{}", number(info.ino));
    let _ = writeln!(out, "size:\t{}", number(info.size));
    let _ = writeln!(out, "count:\t{}", number(info.count));
    let _ = writeln!(out, "exp_name:\t{}", info.exporter.as_deref().unwrap_or(""));
    if let Some(name) = &info.name {
        let _ = writeln!(out, "name:\t{name}");
    }
    out.into_bytes()
}
