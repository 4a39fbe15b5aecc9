//! `/proc/<pid>/maps`: `procfs::maps::for_each_dmabuf`, `parse_line` and `unescape_name`.
//!
//! Two inputs from one: the bytes as a whole file, and the bytes as a name (any bytes but NUL,
//! at most 31) escaped as the kernel's `seq_path(..., "\n")` does, in a line among real ones.
//! Asserts: the fast whole-file search (substring search, then parse the lines it lands on)
//! reports exactly what parsing every line would; names are borrowed from the input and stay
//! within one line; a mapping printed back the way the kernel prints it parses to the same
//! values; and the embedded name changes no other mapping and unescapes to itself (unless it
//! holds the text `\012`, which the kernel leaves as it is).
#![no_main]

use dmabufd::procfs::maps::{self, DmaBufMap};
use dmabufd_fuzz::{contains, is_within, kernel_name};
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
        // Printed back on the dma-buf file system's usual device, whatever the input's was.
        let printed = DmaBufMap { dev: maps::encode_dev(0, 0x0b), ..*m };
        assert_eq!(maps::parse_line(&line), Some(printed));
        assert!(m.len() <= m.end && m.is_empty() == (m.end <= m.start));
    }

    let name = kernel_name(data);
    let mut escaped = Vec::new();
    for &b in &name {
        match b {
            b'\n' => escaped.extend(b"\\012"),
            b => escaped.push(b),
        }
    }
    let text = [
        &b"55d0c0a4f000-55d0c0a51000 r--p 00000000 fe:01 1234                       /usr/bin/x\n"[..],
        b"7fd88f782000-7fd88f784000 rw-s 00001000 00:0b 77                         /dmabuf:",
        &escaped,
        b"\n7fd88f784000-7fd88f786000 rw-s 00000000 00:0b 1                          /dmabuf:CAMERA preview\n",
    ]
    .concat();
    let mut seen = Vec::new();
    maps::for_each_dmabuf(&text, |m| {
        seen.push((m.start, m.offset, m.inode, maps::unescape_name(m.name)))
    });
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].0, seen[0].1, seen[0].2), (0x7fd88f782000, 0x1000, 77));
    assert_eq!(seen[1], (0x7fd88f784000, 0, 1, b"CAMERA preview".to_vec()));
    if !contains(&name, b"\\012") {
        assert_eq!(seen[0].3, name);
    }
});
