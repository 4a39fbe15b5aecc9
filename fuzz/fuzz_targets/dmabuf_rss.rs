//! `/proc/<pid>/dmabuf_{rss,rss_hwm,pss}`: `procfs::dmabuf_rss`.
//!
//! Asserts: a counter is accepted only as plain decimal with surrounding whitespace, and
//! round-trips through its decimal text.
#![no_main]

use dmabufd::procfs::dmabuf_rss;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = dmabuf_rss::parse(data) {
        let digits = data.trim_ascii();
        assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
        assert_eq!(dmabuf_rss::parse(format!("{bytes}\n").as_bytes()), Some(bytes));
    }
});
