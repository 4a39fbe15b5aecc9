//! The BPF iterators' records: `bpf::records::parse` and `bpf::tally::tally`.
//!
//! Asserts: parsing never reads past the input, records come out in whole lengths (the next
//! starts where the last ended, and an error ends the stream), names and exporters are borrowed
//! from the input and stop at their NUL; the tally fails exactly when parsing does or a
//! reference names an undescribed buffer, and every count it makes is of some record.
#![no_main]

use dmabufd::bpf::records::{self, Record};
use dmabufd::bpf::tally::{self, TallyError};
use dmabufd_fuzz::is_within;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parsed = Vec::new();
    let mut failed = false;
    for r in records::parse(data) {
        assert!(!failed, "a record after an error");
        match r {
            Ok(r) => parsed.push(r),
            Err(_) => failed = true,
        }
    }
    let refs = parsed.iter().filter(|r| !matches!(r, Record::Buffer(_))).count();
    for r in &parsed {
        if let Record::Buffer(b) = r {
            assert!(is_within(b.name, data) && is_within(b.exporter, data));
            assert!(!b.name.contains(&0) && !b.exporter.contains(&0));
            assert!(b.name.len() <= records::NAME_LEN && b.exporter.len() <= records::EXPORTER_LEN);
        }
    }
    match tally::tally(data) {
        Ok(buffers) => {
            assert!(!failed);
            let counted: u64 = buffers
                .values()
                .flat_map(|b| b.fd_refs.values().chain(b.map_refs.values()))
                .map(|&n| u64::from(n))
                .sum();
            assert!(counted <= refs as u64);
        }
        Err(TallyError::Record(_)) => assert!(failed),
        Err(TallyError::Undescribed(inode)) => assert!(parsed.iter().any(|r| match r {
            Record::Fd(f) => f.inode == inode,
            Record::Vma(v) => v.inode == inode,
            Record::Buffer(_) => false,
        })),
    }
});
