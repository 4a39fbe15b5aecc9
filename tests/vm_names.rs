//! Hostile buffer names in `dmabufctl dump` output, on the real kernel (tests/vm/run).
//!
//! Any holder can rename a buffer with any bytes but NUL, bypassing the library's validation
//! (here: `sys::set_name` straight to the kernel). This test names buffers with a newline and a
//! forged `PROCESS TOTAL` row, tabs, escape sequences, invalid UTF-8, a literal `\012`, CSV
//! metacharacters, and keeps two of them only mapped (their names then come from maps, which
//! escape a newline as `\012`, and from the kernel's buffer list). It then checks the table, CSV
//! and JSON of `dmabufctl dump <own pid>` line by line against values it computes from what it
//! created: one row per buffer, names shown escaped (docs/dump.md), JSON names exact.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::process::Command;

use dmabufd::buffer::DmaBuf;
use dmabufd::sys::{self, MapAccess, SharedMap};
use exporter::Exporter;

// Only the exporter of tests/vm_support (system heap, else vgem): this test needs no service.
#[path = "vm_support/exporter.rs"]
#[allow(dead_code)]
mod exporter;

const DMABUFCTL: &str = env!("CARGO_BIN_EXE_dmabufctl");
const SIZE: u64 = 4096;

/// A buffer this test created, and how dump must show its name.
struct Case {
    inode: u64,
    raw: &'static [u8],
    /// The name as tables and CSV show it.
    shown: &'static str,
    map_only: bool,
}

const CASES: [(&[u8], &str, bool); 8] = [
    (b"x\nPROCESS TOTAL 9999999 kB", "x\\nPROCESS TOTAL 9999999 kB", false),
    (b"a\tb\tc", "a\\tb\\tc", false),
    (b"\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred", false),
    (b"bad\xff\xfeutf8", "bad\\xff\\xfeutf8", false),
    (b"\\012", "\\\\012", false),
    (b"q\"u,o", "q\"u,o", false),
    (b"map\nonly", "map\\nonly", true),
    (b"map\\012", "map\\\\012", true),
];

fn dump(args: &[&str]) -> String {
    let out = Command::new(DMABUFCTL).arg("dump").args(args).output().expect("run dmabufctl");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("dump output is UTF-8 whatever the names hold")
}

#[test]
fn hostile_names_stay_in_their_rows() {
    let exporter = Exporter::detect();
    let mut held: Vec<DmaBuf> = Vec::new();
    let mut maps: Vec<SharedMap> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    for (raw, shown, map_only) in CASES {
        let buf = DmaBuf::from_fd(exporter.dma_buf("placeholder", SIZE)).expect("a dma-buf");
        let name = CString::new(raw).expect("no NUL");
        sys::set_name(buf.as_fd(), &name).expect("the kernel takes any bytes but NUL");
        cases.push(Case { inode: buf.inode(), raw, shown, map_only });
        if map_only {
            maps.push(
                SharedMap::new_range(buf.as_fd(), 0, SIZE as usize, MapAccess::ReadOnly)
                    .expect("mmap"),
            );
        } else {
            held.push(buf);
        }
    }
    cases.sort_by_key(|c| c.inode);
    let pid = std::process::id().to_string();
    let comm = std::fs::read_to_string("/proc/self/comm").expect("comm").trim_end().to_owned();
    let uid = rustix::process::getuid().as_raw();
    let total = SIZE * cases.len() as u64;

    // The default table, exact bytes: one row per buffer, one PROCESS TOTAL row.
    let table = dump(&[&pid, "--bytes"]);
    let mut want = vec![
        format!("{comm:>16}:{pid:<5}"),
        format!(
            "{:>22} {:>16} {:>16} {:>16} {:>16} {:>22}",
            "Name", "Rss", "Pss", "nr_procs", "Inode", "Exporter"
        ),
    ];
    for c in &cases {
        want.push(format!(
            "{:>22} {SIZE:>13} B {SIZE:>13} B {:>16} {:>16}  {:>22}",
            c.shown,
            1,
            c.inode,
            exporter.exp_name()
        ));
    }
    want.push(format!("{:>22} {total:>13} B {total:>13} B {:>16}", "PROCESS TOTAL", ""));
    want.push("----------------------".into());
    want.push(format!(
        "dmabuf total: {total} B kernel_rss: 0 B userspace_rss: {total} B userspace_pss: {total} B"
    ));
    assert_eq!(table.lines().collect::<Vec<_>>(), want, "\n{table}");

    // CSV: a header and one row per buffer; only the comma-and-quote name is quoted.
    let csv = dump(&[&pid, "-o", "csv"]);
    let mut want =
        vec!["pid,comm,uid,name,inode,exporter,rss_bytes,pss_bytes,nr_procs,fd_refs,map_refs"
            .to_owned()];
    for c in &cases {
        let name = if c.shown.contains(',') {
            format!("\"{}\"", c.shown.replace('"', "\"\""))
        } else {
            c.shown.into()
        };
        let (fds, maps) = if c.map_only { (0, 1) } else { (1, 0) };
        want.push(format!(
            "{pid},{comm},{uid},{name},{},{},{SIZE},{SIZE},1,{fds},{maps}",
            c.inode,
            exporter.exp_name()
        ));
    }
    assert_eq!(csv.lines().collect::<Vec<_>>(), want, "\n{csv}");

    // `--by name`: one row per name, each name escaped.
    let by_name = dump(&[&pid, "--by", "name", "--bytes"]);
    let rows: Vec<&str> = by_name.lines().collect();
    assert_eq!(rows.len(), 1 + cases.len(), "\n{by_name}");
    for c in &cases {
        let row = format!("{} ", c.shown);
        assert_eq!(rows.iter().filter(|r| r.starts_with(&row)).count(), 1, "{row}\n{by_name}");
    }

    // JSON keeps the exact bytes: a string when UTF-8, else U+FFFD plus `name_bytes`.
    let json: serde_json::Value = serde_json::from_str(&dump(&[&pid, "-o", "json"])).expect("json");
    let buffers = json["buffers"].as_array().expect("buffers");
    assert_eq!(buffers.len(), cases.len());
    for (b, c) in buffers.iter().zip(&cases) {
        assert_eq!(b["inode"], c.inode);
        match std::str::from_utf8(c.raw) {
            Ok(text) => {
                assert_eq!(b["name"], text);
                assert!(b.get("name_bytes").is_none(), "{b}");
            }
            Err(_) => {
                assert_eq!(b["name"], String::from_utf8_lossy(c.raw).as_ref());
                let bytes: Vec<u64> = c.raw.iter().map(|&x| u64::from(x)).collect();
                assert_eq!(b["name_bytes"], serde_json::json!(bytes));
            }
        }
    }
    let names: Vec<&str> = json["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), cases.len());
    drop((held, maps));
}
