//! The procfs parsers over what each kernel the VM suite boots really prints: tests/fixtures/<kernel>/
//! was captured by `tests/vm/capture-fixtures <kernel>` (vm_compat's `fixtures` role: a buffer
//! named "CAMERA preview" of 2 pages and an unnamed one of 1 page, each mapped once, first page).
//! Each kernel's files must agree with each other: the inode fdinfo, maps and bufinfo name is the
//! same buffer.

use dmabufd::procfs::{bufinfo, fd, fdinfo, maps};

const PAGE: u64 = 4096;

/// One kernel's capture and what that kernel is known to do.
struct Kernel {
    dir: &'static str,
    /// fdinfo has `ino:` (5.14 and later).
    fdinfo_ino: bool,
    /// Exporter of the buffers: the system heap, or vgem's PRIME exports ("drm").
    exporter: &'static str,
    /// The mappings name the dma-buf in maps (vgem's do not before 5.14).
    maps: bool,
}

const KERNELS: [Kernel; 4] = [
    Kernel { dir: "5.10", fdinfo_ino: false, exporter: "drm", maps: false },
    Kernel { dir: "6.1", fdinfo_ino: true, exporter: "drm", maps: true },
    Kernel { dir: "6.12", fdinfo_ino: true, exporter: "system", maps: true },
    Kernel { dir: "latest", fdinfo_ino: true, exporter: "system", maps: true },
];

fn fixture(kernel: &Kernel, file: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{}/{file}", env!("CARGO_MANIFEST_DIR"), kernel.dir);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// A parsed name as bytes, whatever text type the parser hands out.
fn bytes<T: AsRef<[u8]> + ?Sized>(name: Option<&T>) -> Option<&[u8]> {
    name.map(AsRef::as_ref)
}

/// Inodes of the named and the unnamed buffer, from bufinfo (the only two buffers there).
fn inodes(kernel: &Kernel) -> (u64, u64) {
    let info = bufinfo::parse(&fixture(kernel, "bufinfo.txt")).expect("bufinfo parses");
    assert_eq!(info.rows.len(), 2, "{}: {:?}", kernel.dir, info.rows);
    let ino = |named: bool| {
        let row = info.rows.iter().find(|r| r.name.is_some() == named).expect("row");
        row.inode.unwrap_or_else(|| panic!("{}: bufinfo row without inode", kernel.dir))
    };
    (ino(true), ino(false))
}

#[test]
fn maps_of_each_kernel() {
    for k in &KERNELS {
        let (named_ino, unnamed_ino) = inodes(k);
        let text = fixture(k, "maps.txt");
        let mut seen = Vec::new();
        maps::for_each_dmabuf(&text, |m| seen.push((m.inode, m.len(), m.name.to_vec())));
        seen.sort();
        let mut expected =
            vec![(named_ino, PAGE, b"CAMERA preview".to_vec()), (unnamed_ino, PAGE, vec![])];
        expected.sort();
        if !k.maps {
            expected.clear();
        }
        assert_eq!(seen, expected, "{}", k.dir);
    }
}

#[test]
fn fdinfo_of_each_kernel() {
    for k in &KERNELS {
        let (named_ino, unnamed_ino) = inodes(k);
        let named = fdinfo::parse(&fixture(k, "fdinfo-named.txt"));
        assert_eq!(named.ino, k.fdinfo_ino.then_some(named_ino), "{}", k.dir);
        assert_eq!(named.size, Some(2 * PAGE), "{}", k.dir);
        assert_eq!(named.exporter.as_deref(), Some(k.exporter), "{}", k.dir);
        assert_eq!(bytes(named.name.as_deref()), Some(&b"CAMERA preview"[..]), "{}", k.dir);
        let unnamed = fdinfo::parse(&fixture(k, "fdinfo-unnamed.txt"));
        assert_eq!(unnamed.ino, k.fdinfo_ino.then_some(unnamed_ino), "{}", k.dir);
        assert_eq!(unnamed.size, Some(PAGE), "{}", k.dir);
        assert_eq!(bytes(unnamed.name.as_deref()), None, "{}", k.dir);
    }
}

#[test]
fn fd_links_of_each_kernel() {
    for k in &KERNELS {
        let text = fixture(k, "fd-links.txt");
        let links: Vec<_> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(links.len(), 2, "{}", k.dir);
        assert_eq!(
            fd::classify_link(links[0]),
            Some(fd::Link::DmaBuf { name: b"CAMERA preview" }),
            "{}",
            k.dir
        );
        assert_eq!(fd::classify_link(links[1]), Some(fd::Link::DmaBuf { name: b"" }), "{}", k.dir);
    }
}

#[test]
fn bufinfo_of_each_kernel() {
    for k in &KERNELS {
        let (named_ino, unnamed_ino) = inodes(k);
        let info = bufinfo::parse(&fixture(k, "bufinfo.txt")).expect("bufinfo parses");
        let row = |ino| {
            info.rows
                .iter()
                .find(|r| r.inode == Some(ino))
                .unwrap_or_else(|| panic!("{}: no bufinfo row for {ino}", k.dir))
        };
        let named = row(named_ino);
        assert_eq!((named.size, named.exporter.as_str()), (2 * PAGE, k.exporter), "{}", k.dir);
        assert_eq!(bytes(named.name.as_deref()), Some(&b"CAMERA preview"[..]), "{}", k.dir);
        let unnamed = row(unnamed_ino);
        assert_eq!((unnamed.size, bytes(unnamed.name.as_deref())), (PAGE, None), "{}", k.dir);
        let sum: u64 = info.rows.iter().map(|r| r.size).sum();
        assert_eq!(info.total_bytes, Some(sum), "{}", k.dir);
    }
}
