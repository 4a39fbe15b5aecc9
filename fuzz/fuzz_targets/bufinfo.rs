//! debugfs `dma_buf/bufinfo`: `procfs::bufinfo::parse` and `BufInfo::exported_bytes`.
//!
//! Two inputs from one: the bytes as a whole file, and the bytes as a name (any bytes but NUL,
//! at most 31, as DMA_BUF_SET_NAME allows) inside real 6.12 output between two other rows.
//! Asserts: no panic; a parsed file has at most one row per line, bounded names, a total equal
//! to the sum of its rows, and prints back (6.12 layout) to the same rows; and the embedded
//! name changes no other row, no size, inode, exporter or total, and reads back as itself (or,
//! if it imitates a fence line after a newline, as a prefix of itself).
#![no_main]

use dmabufd::procfs::bufinfo::{self, BufInfo, MAX_NAME_LEN};
use dmabufd_fuzz::{contains, kernel_name};
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = bufinfo::parse(data) {
        let lines = data.split(|&b| b == b'\n').count();
        assert!(info.rows.len() <= lines);
        for row in &info.rows {
            assert!(row.exporter.len() <= 3 * data.len());
            assert!(row.name.as_ref().is_none_or(|n| n.len() <= MAX_NAME_LEN));
        }
        if let Some(total) = info.total_bytes {
            assert_eq!(Some(total), info.rows.iter().try_fold(0u64, |s, r| s.checked_add(r.size)));
        }
        let _ = info.exported_bytes();
        assert_eq!(bufinfo::parse(&print(&info)).as_ref(), Ok(&info), "round trip");
    }
    embedded(&kernel_name(data));
});

/// `name` as the middle of three rows of real 6.12 output.
fn embedded(name: &[u8]) {
    let mut text =
        b"\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n"
            .to_vec();
    let rows: [(u64, u64, &[u8], &[&str]); 3] = [
        (8192, 11, b"CAMERA preview", &[]),
        (4096, 12, name, &["soc:gpu"]),
        (16384, 13, b"<none>", &[]),
    ];
    for (size, inode, name, devices) in rows {
        text.extend(
            format!("{size:08}\t00000002\t00080007\t00000001\tsystem\t{inode:08}\t").bytes(),
        );
        text.extend(if name.is_empty() { b"<none>" } else { name });
        text.extend(b"\n\tAttached Devices:\n");
        for device in devices {
            text.extend(format!("\t{device}\n").bytes());
        }
        text.extend(format!("Total {} devices attached\n\n", devices.len()).bytes());
    }
    text.extend(b"\nTotal 3 objects, 28672 bytes\n");
    let info = bufinfo::parse(&text).expect("real output with any name parses");
    let got: Vec<_> =
        info.rows.iter().map(|r| (r.size, r.inode, r.count, r.exporter.as_str())).collect();
    assert_eq!(
        got,
        [
            (8192, Some(11), 1, "system"),
            (4096, Some(12), 1, "system"),
            (16384, Some(13), 1, "system")
        ]
    );
    assert_eq!(info.total_bytes, Some(28672));
    assert_eq!(info.rows[0].name.as_deref(), Some(&b"CAMERA preview"[..]));
    assert_eq!(info.rows[2].name, None);
    let read = info.rows[1].name.as_deref().unwrap_or_default();
    let want = if name == b"<none>" { &[][..] } else { name };
    if !contains(want, b"\n\t") {
        assert_eq!(read, want);
    } else {
        assert!(want.starts_with(read), "{read:?} is no prefix of {want:?}");
    }
}

fn print(info: &BufInfo) -> Vec<u8> {
    let mut out = b"\nDma-buf Objects:\nsize\tflags\tmode\tcount\texp_name\tino\tname\n".to_vec();
    for row in &info.rows {
        let mut head = String::new();
        let _ =
            write!(head, "{:08}\t00000002\t00080007\t{:08}\t{}", row.size, row.count, row.exporter);
        out.extend(head.bytes());
        if let Some(ino) = row.inode {
            out.extend(format!("\t{ino:08}\t").bytes());
            out.extend(row.name.as_deref().unwrap_or(b"<none>"));
        }
        out.extend(b"\n\tAttached Devices:\nTotal 0 devices attached\n\n");
    }
    if let Some(total) = info.total_bytes {
        out.extend(format!("\nTotal {} objects, {total} bytes\n", info.rows.len()).bytes());
    }
    out
}
