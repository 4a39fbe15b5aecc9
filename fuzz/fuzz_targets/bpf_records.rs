//! The BPF iterators' records: `bpf::records::parse`, `bpf::tally::tally` and the incremental
//! `bpf::tally::Counter` a pass is read through.
//!
//! Asserts: parsing never reads past the input, records come out in whole lengths (the next
//! starts where the last ended, and an error ends the stream), names, exporters and command
//! names are borrowed from the input and stop at their NUL; the tally fails exactly when
//! parsing does, a reference names an undescribed buffer or process, or an fd, cut or void of
//! a walked table comes before any table, and every count it makes
//! is of some record; and the input fed to a `Counter` in two reads, split anywhere (a record
//! cut in two carried into the second read, as `bpf::Iterators::run` does), counts the same.
#![no_main]

use dmabufd::bpf::records::{self, Record};
use dmabufd::bpf::tally::{self, Counter, TallyError};
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
    let refs = parsed
        .iter()
        .filter(|r| matches!(r, Record::Fd(_) | Record::Vma(_) | Record::TableFd(_)))
        .count();
    for r in &parsed {
        match r {
            Record::Buffer(b) => {
                assert!(is_within(b.name, data) && is_within(b.exporter, data));
                assert!(!b.name.contains(&0) && !b.exporter.contains(&0));
                assert!(b.name.len() <= records::NAME_LEN);
                assert!(b.exporter.len() <= records::EXPORTER_LEN);
            }
            Record::Process(p) => {
                assert!(is_within(p.comm, data) && !p.comm.contains(&0));
                assert!(p.comm.len() <= records::COMM_LEN);
            }
            Record::Fd(_)
            | Record::Vma(_)
            | Record::Table(_)
            | Record::TableFd(_)
            | Record::TableCut(_)
            | Record::TableVoid(_) => {}
        }
    }
    let whole = tally::tally(data);
    match &whole {
        Ok(t) => {
            assert!(!failed);
            let counted: u64 = t
                .buffers
                .values()
                .flat_map(|b| b.fd_refs.values().chain(b.map_refs.values()))
                .map(|&n| u64::from(n))
                .sum();
            assert!(counted <= refs as u64);
        }
        Err(TallyError::Record(_)) => assert!(failed),
        Err(TallyError::Undescribed(inode)) => assert!(parsed.iter().any(|r| match r {
            Record::Fd(f) => f.inode == *inode,
            Record::Vma(v) => v.inode == *inode,
            Record::TableFd(f) => f.inode == *inode,
            _ => false,
        })),
        Err(TallyError::UndescribedProcess(tgid)) => assert!(parsed.iter().any(|r| match r {
            Record::Fd(f) => f.tgid == *tgid,
            Record::Vma(v) => v.tgid == *tgid,
            Record::Table(t) => t.tgid == *tgid,
            _ => false,
        })),
        Err(TallyError::NoTable) => {
            let walked = |r: &Record| {
                matches!(r, Record::TableFd(_) | Record::TableCut(_) | Record::TableVoid(_))
            };
            assert!(parsed.iter().any(walked))
        }
    }
    if let Ok(t) = whole {
        let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
        let mut counter = Counter::default();
        let used = counter.add(&data[..split]).expect("a prefix of good records counts");
        let rest = [&data[used..split], &data[split..]].concat();
        assert_eq!(counter.add(&rest).expect("the rest counts"), rest.len());
        assert_eq!(counter.finish(), Ok(t), "split at {split}");
    }
});
