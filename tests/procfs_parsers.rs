//! Parser tests over fixture files of each kernel era, and property tests that no input makes a
//! parser panic.

use dmabufd::procfs::{bpf_iter, bufinfo, dmabuf_rss, fd, fdinfo, maps, status, sysfs};
use proptest::prelude::*;

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn fdinfo_6_12_named() {
    let info = fdinfo::parse(&fixture("fdinfo/6.12-named.txt"));
    assert_eq!(info.ino, Some(1042));
    assert_eq!(info.size, Some(8192));
    assert_eq!(info.count, Some(1));
    assert_eq!(info.exporter.as_deref(), Some("system"));
    assert_eq!(info.name.as_deref(), Some(&b"CAMERA preview"[..]));
}

#[test]
fn fdinfo_6_12_unnamed_has_no_name() {
    let info = fdinfo::parse(&fixture("fdinfo/6.12-unnamed.txt"));
    assert_eq!((info.ino, info.size, info.count), (Some(1043), Some(16384), Some(2)));
    assert_eq!(info.name, None);
}

#[test]
fn fdinfo_without_ino_keeps_trailing_space_in_name() {
    let info = fdinfo::parse(&fixture("fdinfo/5.10-no-ino.txt"));
    assert_eq!(info.ino, None);
    assert_eq!(info.size, Some(4096));
    assert_eq!(info.exporter.as_deref(), Some("qcom,system"));
    assert_eq!(info.name.as_deref(), Some(&b"GL trailing "[..]));
}

#[test]
fn fdinfo_generic_only() {
    assert_eq!(fdinfo::parse(&fixture("fdinfo/4.19-generic-only.txt")), fdinfo::FdInfo::default());
}

#[test]
fn maps_odd_shapes() {
    let bytes = fixture("maps/odd.txt");
    let mut seen = Vec::new();
    maps::for_each_dmabuf(&bytes, |m| {
        seen.push((m.inode, m.offset, m.len(), String::from_utf8_lossy(m.name).into_owned()))
    });
    assert_eq!(
        seen,
        vec![
            (1042, 0, 0x2000, "CAMERA preview".to_string()),
            (1042, 0x1000, 0x1000, "CAMERA preview".to_string()),
            (1043, 0, 0x4000, String::new()),
            (1044, 0x2000, 0x1000, "  two  spaces  ".to_string()),
            (1046, 0, 0x2000, "last, no newline".to_string()),
        ]
    );
}

#[test]
fn bufinfo_6_12() {
    let info = bufinfo::parse(&fixture("bufinfo/6.12.txt")).expect("parses");
    let rows: Vec<_> = info
        .rows
        .iter()
        .map(|r| (r.size, r.count, r.exporter.as_str(), r.inode, r.name.as_deref()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (8192, 3, "system", Some(1042), Some(&b"CAMERA preview"[..])),
            (16384, 2, "system", Some(1043), None),
            (12288, 1, "reserved", Some(1047), Some(&b"kernel only"[..])),
        ]
    );
    assert_eq!(info.total_bytes, Some(36864));
    assert_eq!(info.exported_bytes(), 36864);
}

#[test]
fn bufinfo_4_19_without_inode_column() {
    let info = bufinfo::parse(&fixture("bufinfo/4.19.txt")).expect("parses");
    assert_eq!(info.rows.len(), 2);
    assert!(info.rows.iter().all(|r| r.inode.is_none() && r.name.is_none() && r.exporter == "ion"));
    assert_eq!(info.exported_bytes(), 69632);
}

#[test]
fn bufinfo_without_total_line_sums_rows() {
    let block = "\tAttached Devices:\nTotal 0 devices attached\n\n";
    let text =
        format!("00004096\t0\t0\t1\tsystem\t7\tx\n{block}00008192\t0\t0\t1\tsystem\t8\ty\n{block}");
    let info = bufinfo::parse(text.as_bytes()).expect("parses");
    assert_eq!(info.total_bytes, None);
    assert_eq!(info.exported_bytes(), 12288);
}

#[test]
fn status_uid_and_comm() {
    let s = status::parse(&fixture("status/normal.txt")).expect("parses");
    assert_eq!((s.comm.as_str(), s.uid), ("surfaceflinger", 1000));
    let s = status::parse(&fixture("status/odd-name.txt")).expect("parses");
    assert_eq!((s.comm.as_str(), s.uid), ("cam era\\nx", 10057));
    assert_eq!(status::parse(b"Name:\tx\n"), None);
    assert_eq!(status::parse(b"Uid:\t1\t1\t1\t1\n"), None);
}

#[test]
fn sysfs_attributes() {
    assert_eq!(sysfs::parse_size(b"65536\n"), Some(65536));
    assert_eq!(sysfs::parse_size(b"-1\n"), None);
    assert_eq!(sysfs::parse_exporter(b"system\n").as_deref(), Some("system"));
    assert_eq!(sysfs::parse_exporter(b"\n"), None);
    assert_eq!(sysfs::parse_inode_dir(b"2001"), Some(2001));
    assert_eq!(sysfs::parse_inode_dir(b"uevent"), None);
}

/// Android common kernels' per-process counters, as a 4 KiB buffer held by one process and a
/// 8 KiB one shared by three leaves them (Pss 4096 + 8192 / 3 rounded down).
#[test]
fn android_dmabuf_counters() {
    assert_eq!(dmabuf_rss::parse(&fixture("android/dmabuf_rss")), Some(4096));
    assert_eq!(dmabuf_rss::parse(&fixture("android/dmabuf_rss_hwm")), Some(1_052_672));
    assert_eq!(dmabuf_rss::parse(&fixture("android/dmabuf_pss")), Some(2730));
}

/// AOSP's pinned iterator: four lines per buffer, an empty line for an unnamed one.
#[test]
fn bpf_iterator_output() {
    let bytes = fixture("android/dmabuf-iter.txt");
    let rows = bpf_iter::parse(&bytes).expect("parses");
    let got: Vec<_> = rows.iter().map(|r| (r.inode, r.size, r.name, r.exporter)).collect();
    assert_eq!(
        got,
        [
            (1042, 8192, Some(&b"CAMERA preview"[..]), &b"system"[..]),
            (1043, 16384, None, &b"system"[..]),
            (1044, 1_048_576, Some(&b"GL two lines"[..]), &b"qcom,reserved"[..]),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any list of buffers the iterator could print (names without newlines, as the program
    /// makes them) parses back to itself.
    #[test]
    fn bpf_iterator_round_trips(rows in proptest::collection::vec(
        (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..31),
         proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 1..20)), 0..8)) {
        let mut text = Vec::new();
        for (inode, size, name, exporter) in &rows {
            text.extend_from_slice(format!("{inode}\n{size}\n").as_bytes());
            text.extend_from_slice(name);
            text.push(b'\n');
            text.extend_from_slice(exporter);
            text.push(b'\n');
        }
        let parsed = bpf_iter::parse(&text).expect("parses");
        let got: Vec<_> = parsed.iter().map(|r| (r.inode, r.size, r.name.unwrap_or_default().to_vec(), r.exporter.to_vec())).collect();
        prop_assert_eq!(got, rows);
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = fd::classify_link(&bytes);
        let _ = fdinfo::parse(&bytes);
        let _ = status::parse(&bytes);
        let _ = bufinfo::parse(&bytes).map(|i| i.exported_bytes());
        let _ = sysfs::parse_size(&bytes);
        let _ = sysfs::parse_exporter(&bytes);
        let _ = dmabuf_rss::parse(&bytes);
        let _ = bpf_iter::parse(&bytes);
        maps::for_each_dmabuf(&bytes, |m| { let _ = m.len(); });
    }

    /// Random lines built from the formats' own tokens reach deeper paths than random bytes.
    #[test]
    fn parsers_never_panic_on_near_valid_input(parts in proptest::collection::vec(
        prop_oneof![
            Just("/dmabuf:".to_string()), Just("\t".to_string()), Just(" ".to_string()), Just("\n".to_string()),
            Just("-".to_string()), Just("ino:".to_string()), Just("name:".to_string()), Just("Total ".to_string()),
            Just(" bytes".to_string()), Just("Uid:".to_string()), Just("Name:".to_string()),
            "[0-9a-f]{1,20}", "[ -~]{0,8}",
        ], 0..60)) {
        let bytes = parts.concat().into_bytes();
        let _ = fdinfo::parse(&bytes);
        let _ = status::parse(&bytes);
        let _ = bufinfo::parse(&bytes).map(|i| i.exported_bytes());
        maps::for_each_dmabuf(&bytes, |m| { let _ = m.len(); });
    }

    /// Any well-formed dma-buf maps line round-trips, whatever the name.
    #[test]
    fn maps_line_round_trips(start in 0u64..1 << 47, len in 1u64..1 << 20, offset in 0u64..1 << 30,
                             inode in 0u64..u64::MAX, name in "[ -~]{0,31}") {
        let line = format!("{:x}-{:x} rw-s {:08x} 00:0b {inode}          /dmabuf:{name}\n", start, start + len, offset);
        let mut seen = Vec::new();
        maps::for_each_dmabuf(line.as_bytes(), |m| seen.push((m.start, m.len(), m.offset, m.inode, m.name.to_vec())));
        prop_assert_eq!(seen, vec![(start, len, offset, inode, name.into_bytes())]);
    }
}

/// Captured from the VM (Debian 6.12): a process that allocated four buffers, mapped two.
#[test]
fn captured_6_12_bufinfo_and_maps() {
    let info = bufinfo::parse(&fixture("bufinfo/6.12-vm-capture.txt")).expect("parses");
    let rows: Vec<_> =
        info.rows.iter().map(|r| (r.size, r.count, r.inode, r.name.as_deref())).collect();
    assert_eq!(
        rows,
        vec![
            (12288, 1, Some(4), Some(&b"kernel only"[..])),
            (4096, 1, Some(3), Some(&b"mapped only"[..])),
            (16384, 1, Some(2), None),
            (8192, 3, Some(1), Some(&b"CAMERA preview"[..])),
        ]
    );
    assert!(info.rows.iter().all(|r| r.exporter == "system"));
    assert_eq!(info.total_bytes, Some(40960));
    let bytes = fixture("maps/6.12-vm-capture.txt");
    let mut seen = Vec::new();
    maps::for_each_dmabuf(&bytes, |m| seen.push((m.inode, m.offset, m.len(), m.name.to_vec())));
    assert_eq!(
        seen,
        vec![
            (3, 0, 4096, b"mapped only".to_vec()),
            (1, 4096, 4096, b"CAMERA preview".to_vec()),
            (1, 0, 8192, b"CAMERA preview".to_vec()),
        ]
    );
}

/// Any bytes the kernel accepts as a name: not NUL, at most 31.
fn any_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => any::<u8>().prop_filter("no NUL", |b| *b != 0),
            // The bytes of the formats, so that names often look like their lines.
            4 => prop::sample::select(b"\n\t:0123456789 \\".to_vec()),
            1 => Just(b'T'),
        ],
        0..=bufinfo::MAX_NAME_LEN,
    )
    .prop_flat_map(|name| {
        // Sometimes whole lines of the format, cut to fit.
        let pieces: &[&[u8]] = &[
            b"\n\tAttached Devices:\n",
            b"\nTotal 0 devices attached\n\n",
            b"\nTotal 1 objects, 4096 bytes\n",
            b"\n00004096\t00000002\t00080007\t00000001\tsystem\t00000009\t",
            b"\n\tread fence:a b seq 1 signalled",
            b"\nsize:\t1073741824\nino:\t9\n",
            b"\\012",
        ];
        (Just(name), prop::sample::select(pieces.to_vec()), any::<bool>())
    })
    .prop_map(|(mut name, piece, add)| {
        if add {
            name.extend_from_slice(piece);
            name.truncate(bufinfo::MAX_NAME_LEN);
        }
        name
    })
}

/// The kernel's unnamed marker stays ambiguous (it is the kernel's own word).
fn kernel_name(name: &[u8]) -> Option<&[u8]> {
    (!name.is_empty() && name != b"<none>").then_some(name)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Names of any bytes inside real 6.12 bufinfo output: every row keeps its size, inode,
    /// count and exporter, the total stays the kernel's, and a name reads back exactly unless
    /// it imitates a fence line after a newline (then it reads as a prefix of itself).
    #[test]
    fn bufinfo_names_cannot_move_other_fields(
        rows in proptest::collection::vec(
            (1u64..1 << 40, 1u64..1 << 20, 1u64..100, any_name(), 0usize..3), 1..6),
    ) {
        let mut text = b"\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n".to_vec();
        for (size, inode, count, name, devices) in &rows {
            text.extend(format!("{size:08}\t00000002\t00080007\t{count:08}\tsystem\t{inode:08}\t").bytes());
            text.extend(if name.is_empty() { &b"<none>"[..] } else { name });
            text.extend(b"\n\tAttached Devices:\n");
            for d in 0..*devices {
                text.extend(format!("\tsoc:gpu{d}\n").bytes());
            }
            text.extend(format!("Total {devices} devices attached\n\n").bytes());
        }
        let total: u64 = rows.iter().map(|r| r.0).sum();
        text.extend(format!("\nTotal {} objects, {total} bytes\n", rows.len()).bytes());
        let info = bufinfo::parse(&text).expect("the kernel's structure");
        prop_assert_eq!(info.total_bytes, Some(total));
        prop_assert_eq!(info.rows.len(), rows.len());
        for (row, (size, inode, count, name, _)) in info.rows.iter().zip(&rows) {
            prop_assert_eq!((row.size, row.inode, row.count, row.exporter.as_str()), (*size, Some(*inode), *count, "system"));
            let got = row.name.as_deref().unwrap_or_default();
            let want = kernel_name(name).unwrap_or_default();
            if memchr::memmem::find(want, b"\n\t").is_none() {
                prop_assert_eq!(got, want);
            } else {
                prop_assert!(want.starts_with(got), "{:?} is no prefix of {:?}", got, want);
            }
        }
    }

    /// Names of any bytes in real fdinfo output: the kernel's fields are untouched and the name
    /// is exact.
    #[test]
    fn fdinfo_names_are_exact(name in any_name().prop_filter("named", |n| !n.is_empty())) {
        let mut text = fixture("fdinfo/6.12-named.txt");
        let at = memchr::memmem::find(&text, b"\nname:\t").expect("name line") + 7;
        text.truncate(at);
        text.extend(&name);
        text.push(b'\n');
        let info = fdinfo::parse(&text);
        prop_assert_eq!((info.ino, info.size, info.count, info.exporter.as_deref()), (Some(1042), Some(8192), Some(1), Some("system")));
        prop_assert_eq!(info.name, Some(name));
    }

    /// Names of any bytes in real maps output, escaped as the kernel escapes them: the other
    /// mappings parse unchanged and the name unescapes to itself unless it contains `\012`.
    #[test]
    fn maps_names_unescape(name in any_name()) {
        let mut text = fixture("maps/6.12-vm-capture.txt");
        let mut escaped = Vec::new();
        for &b in &name {
            if b == b'\n' { escaped.extend(b"\\012") } else { escaped.push(b) }
        }
        let line = [&b"7fd88f790000-7fd88f792000 rw-s 00000000 00:0b 77                         /dmabuf:"[..], &escaped, b"\n"].concat();
        text.splice(0..0, line);
        let mut seen = Vec::new();
        maps::for_each_dmabuf(&text, |m| seen.push((m.inode, m.offset, m.len(), maps::unescape_name(m.name))));
        prop_assert_eq!(seen.len(), 4);
        prop_assert_eq!(&seen[1..], &[
            (3, 0, 4096, b"mapped only".to_vec()),
            (1, 4096, 4096, b"CAMERA preview".to_vec()),
            (1, 0, 8192, b"CAMERA preview".to_vec()),
        ][..]);
        prop_assert_eq!((seen[0].0, seen[0].1, seen[0].2), (77, 0, 8192));
        if memchr::memmem::find(&name, b"\\012").is_none() {
            prop_assert_eq!(&seen[0].3, &name);
        }
    }
}
