//! `/proc/<pid>/fd/<n>` link targets: `procfs::fd::classify_link`.
//!
//! Asserts: a dma-buf link is exactly `/dmabuf:` + the name it returns (borrowed from the input),
//! the anonymous form only for its exact text, and nothing else is taken for a dma-buf.
#![no_main]

use dmabufd::procfs::fd::{classify_link, Link};
use dmabufd_fuzz::is_within;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| match classify_link(data) {
    Some(Link::DmaBuf { name }) => {
        assert!(is_within(name, data));
        assert_eq!([b"/dmabuf:".as_slice(), name].concat(), data);
    }
    Some(Link::AnonDmaBuf) => assert_eq!(data, b"anon_inode:dmabuf"),
    None => assert!(!data.starts_with(b"/dmabuf:") && data != b"anon_inode:dmabuf"),
});
