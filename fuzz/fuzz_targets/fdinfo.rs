//! `/proc/<pid>/fdinfo/<n>`: `procfs::fdinfo::parse`.
//!
//! Two inputs from one: the bytes as a whole file, and the bytes as a name (any bytes but NUL,
//! at most 31) in real 6.12 output. Asserts: bounded fields; a round trip (printing the parsed
//! fields the way 6.12 does and parsing that again gives the same fields); and the embedded
//! name leaves every other field as the kernel printed it and reads back exactly.
#![no_main]

use dmabufd::procfs::fdinfo::{self, FdInfo};
use dmabufd_fuzz::{assert_bounded, kernel_name};
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;

fuzz_target!(|data: &[u8]| {
    let info = fdinfo::parse(data);
    if let Some(exporter) = &info.exporter {
        assert_bounded(exporter, data);
        assert!(!exporter.is_empty() && !exporter.contains('\n'), "{exporter:?}");
    }
    if let Some(name) = &info.name {
        assert!(!name.is_empty() && name.len() <= data.len());
    }
    assert_eq!(fdinfo::parse(&print(&info)), info, "round trip of {info:?}");

    let name = kernel_name(data);
    let named = FdInfo {
        ino: Some(1042),
        size: Some(8192),
        count: Some(1),
        exporter: Some("system".into()),
        name: Some(name).filter(|n| !n.is_empty()),
    };
    assert_eq!(fdinfo::parse(&print(&named)), named);
});

fn print(info: &FdInfo) -> Vec<u8> {
    let mut out = String::from("pos:\t0\nflags:\t02000002\nmnt_id:\t16\n");
    let number = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
    let _ = writeln!(out, "ino:\t{}", number(info.ino));
    let _ = writeln!(out, "size:\t{}", number(info.size));
    let _ = writeln!(out, "count:\t{}", number(info.count));
    let _ = writeln!(out, "exp_name:\t{}", info.exporter.as_deref().unwrap_or(""));
    let mut out = out.into_bytes();
    if let Some(name) = &info.name {
        out.extend(b"name:\t");
        out.extend(name);
        out.push(b'\n');
    }
    out
}
