//! `/proc/<pid>/maps`: `procfs::maps::for_each_dmabuf` and `parse_line`.
//!
//! Asserts: the fast whole-file search (substring search, then parse the lines it lands on)
//! reports exactly what parsing every line would; names are borrowed from the input and stay
//! within one line; a mapping printed back the way the kernel prints it parses to the same values.
#![no_main]

use dmabufd::procfs::maps::{self, DmaBufMap};
use dmabufd_fuzz::is_within;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fast = Vec::new();
    maps::for_each_dmabuf(data, |m| fast.push(m));
    let slow: Vec<DmaBufMap<'_>> =
        data.split(|&b| b == b'\n').filter_map(maps::parse_line).collect();
    assert_eq!(fast, slow);
    for m in &fast {
        assert!(is_within(m.name, data) && !m.name.contains(&b'\n'));
        let line = format!(
            "{:x}-{:x} rw-s {:08x} 00:0b {}                          /dmabuf:",
            m.start, m.end, m.offset, m.inode
        );
        let line = [line.as_bytes(), m.name].concat();
        assert_eq!(maps::parse_line(&line).as_ref(), Some(m));
        assert!(m.len() <= m.end && m.is_empty() == (m.end <= m.start));
    }
});
