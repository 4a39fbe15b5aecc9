//! `/sys/kernel/dmabuf/buffers/<inode>/{size,exporter_name}`: `procfs::sysfs`.
//!
//! Asserts: numbers are accepted only as plain decimal (with surrounding whitespace for
//! attributes) and round-trip through their decimal text; exporter names are bounded and trimmed.
#![no_main]

use dmabufd::procfs::sysfs;
use dmabufd_fuzz::assert_bounded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(size) = sysfs::parse_size(data) {
        let digits = data.trim_ascii();
        assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
        assert_eq!(sysfs::parse_size(format!("{size}\n").as_bytes()), Some(size));
    }
    match sysfs::parse_inode_dir(data) {
        Some(inode) => {
            assert!(data.iter().all(u8::is_ascii_digit));
            assert_eq!(sysfs::parse_inode_dir(inode.to_string().as_bytes()), Some(inode));
        }
        None => assert!(
            data.is_empty() || !data.iter().all(u8::is_ascii_digit) || data.len() >= 20,
            "all-digit {data:?} refused"
        ),
    }
    if let Some(exporter) = sysfs::parse_exporter(data) {
        assert_bounded(&exporter, data);
        assert_eq!(exporter.trim_ascii(), exporter);
        assert!(!exporter.is_empty());
    }
});
