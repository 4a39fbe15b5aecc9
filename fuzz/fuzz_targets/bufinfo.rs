//! debugfs `dma_buf/bufinfo`: `procfs::bufinfo::parse` and `BufInfo::exported_bytes`.
//!
//! Asserts: at most one row per input line, bounded strings, the total never panics (sizes come
//! from the kernel as text and can be anything), and a round trip: rows and total printed in the
//! 6.12 layout parse to the same values.
#![no_main]

use dmabufd::procfs::bufinfo::{self, BufInfo};
use dmabufd_fuzz::assert_bounded;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;

fuzz_target!(|data: &[u8]| {
    let info = bufinfo::parse(data);
    let lines = data.split(|&b| b == b'\n').count();
    assert!(info.rows.len() <= lines);
    for row in &info.rows {
        assert_bounded(&row.exporter, data);
        if let Some(name) = &row.name {
            assert_bounded(name, data);
        }
    }
    let exported = info.exported_bytes();
    if info.total_bytes.is_none() {
        // The sum of the rows, saturating: a bogus size must not wrap to a small total.
        let max = info.rows.iter().map(|r| r.size).max().unwrap_or(0);
        assert!(exported >= max, "{exported} < {max}");
    }
    assert_eq!(bufinfo::parse(&print(&info)), info, "round trip of {info:?}");
});

fn print(info: &BufInfo) -> Vec<u8> {
    let mut out =
        String::from("\nDma-buf Objects:\nsize\tflags\tmode\tcount\texp_name\tino\tname\n");
    for row in &info.rows {
        let count = row.count.map_or("?".to_string(), |c| format!("{c:08}"));
        let _ = write!(out, "{:08}\t00000002\t00080007\t{count}\t{}", row.size, row.exporter);
        match (row.inode, &row.name) {
            (None, None) => {}
            (Some(ino), None) => {
                let _ = write!(out, "\t{ino:08}\t<none>");
            }
            (ino, Some(name)) => {
                let ino = ino.map_or("?".to_string(), |i| format!("{i:08}"));
                let _ = write!(out, "\t{ino}\t{name}");
            }
        }
        out.push_str("\n\tAttached Devices:\nTotal 0 devices attached\n\n");
    }
    if let Some(total) = info.total_bytes {
        let _ = writeln!(out, "\nTotal {} objects, {total} bytes", info.rows.len());
    }
    out.into_bytes()
}
