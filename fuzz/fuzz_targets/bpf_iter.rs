//! AOSP's pinned dma-buf iterator output: `procfs::bpf_iter`.
//!
//! Asserts: every accepted output has four lines per row, its numbers round-trip, exporters are
//! never empty, and every name and exporter is borrowed from the input; re-printing the rows
//! gives back an output that parses to the same rows.
#![no_main]

use dmabufd::procfs::bpf_iter;
use dmabufd_fuzz::is_within;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rows) = bpf_iter::parse(data) else { return };
    let mut again = Vec::new();
    for r in &rows {
        assert!(!r.exporter.is_empty());
        assert!(is_within(r.exporter, data));
        if let Some(name) = r.name {
            assert!(!name.is_empty() && is_within(name, data));
        }
        again.extend_from_slice(format!("{}\n{}\n", r.inode, r.size).as_bytes());
        again.extend_from_slice(r.name.unwrap_or_default());
        again.push(b'\n');
        again.extend_from_slice(r.exporter);
        again.push(b'\n');
    }
    assert_eq!(bpf_iter::parse(&again).expect("re-printed rows parse"), rows);
});
