//! Change over time on a real kernel (run inside the VM by tests/vm/run, as root): snapshots
//! with `dmabufctl dump -o json` and `--watch`, `dmabufctl diff` between them, and
//! `dmabufctl top --batch` frames, all over buffers this test allocated, so every grew, shrank,
//! appeared and vanished value and every group's Rss is known exactly.
//!
//! The tests take one lock: each asserts per-uid and per-process totals of this process that
//! another test's buffers would change.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use serde_json::Value;

mod data_bins;
#[path = "vm_support/exporter.rs"]
#[allow(dead_code)]
mod exporter;

const KIB: u64 = 1024;
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn dmabufctl_path() -> PathBuf {
    data_bins::project_bin("dmabufctl", option_env!("CARGO_BIN_EXE_dmabufctl"))
}

fn dmabufctl(args: &[&str]) -> Output {
    Command::new(dmabufctl_path()).args(args).output().expect("run dmabufctl")
}

/// Runs dmabufctl, which must succeed, and returns its stdout.
fn stdout_of(args: &[&str]) -> String {
    let out = dmabufctl(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn inode(fd: &OwnedFd) -> u64 {
    rustix::fs::fstat(fd.as_fd()).expect("fstat").st_ino
}

/// A file of this test's own under the guest's /tmp.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new("/tmp/vm_history");
    std::fs::create_dir_all(dir).expect("mkdir");
    dir.join(name)
}

fn snapshot_to(name: &str) -> String {
    let path = scratch(name);
    std::fs::write(&path, stdout_of(&["dump", "--source", "procfs", "-o", "json"]))
        .expect("write snapshot");
    path.to_str().expect("UTF-8 path").to_string()
}

/// The diff entry of `kind` with `key`, if listed.
fn entry<'a>(diff: &'a Value, kind: &str, key: &str) -> Option<&'a Value> {
    diff["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["kind"] == kind && e["key"] == key)
}

/// `(change, before, after, delta, buffers_before, buffers_after)` of an entry that must be there.
fn change(diff: &Value, kind: &str, key: &str) -> (String, u64, u64, i64, u64, u64) {
    let e = entry(diff, kind, key).unwrap_or_else(|| panic!("no {kind} {key} in {diff:#}"));
    (
        e["change"].as_str().expect("change").to_string(),
        e["before"].as_u64().expect("before"),
        e["after"].as_u64().expect("after"),
        e["delta"].as_i64().expect("delta"),
        e["buffers_before"].as_u64().expect("buffers_before"),
        e["buffers_after"].as_u64().expect("buffers_after"),
    )
}

/// Two snapshots around freeing one buffer and allocating two: the diff lists exactly those
/// changes per name, buffer, process and uid, with exact bytes; an unchanged buffer is not
/// listed; the threshold drops the smaller change; the table shows the same numbers.
#[test]
fn diff_between_two_snapshots_is_exact() {
    let _serial = serial();
    let me = std::process::id().to_string();
    let kept = exporter::dma_buf("hist kept", 1024 * KIB);
    let freed = exporter::dma_buf("hist freed", 256 * KIB);
    let (kept_ino, freed_ino) = (inode(&kept), inode(&freed));
    let before = snapshot_to("before.json");

    drop(freed);
    let new = [exporter::dma_buf("hist new", 512 * KIB), exporter::dma_buf("hist new", 512 * KIB)];
    let after = snapshot_to("after.json");

    let diff: Value =
        serde_json::from_str(&stdout_of(&["diff", &before, &after, "-o", "json"])).expect("JSON");
    let (k, m) = (256 * KIB, 1024 * KIB);
    assert_eq!(change(&diff, "name", "hist freed"), ("vanished".into(), k, 0, -(k as i64), 1, 0));
    assert_eq!(change(&diff, "name", "hist new"), ("appeared".into(), 0, m, m as i64, 0, 2));
    assert_eq!(entry(&diff, "name", "hist kept"), None, "unchanged: {diff:#}");
    let freed_key = freed_ino.to_string();
    assert_eq!(change(&diff, "buffer", &freed_key), ("vanished".into(), k, 0, -(k as i64), 1, 0));
    for b in &new {
        let key = inode(b).to_string();
        assert_eq!(
            change(&diff, "buffer", &key),
            ("appeared".into(), 0, 512 * KIB, 512 * KIB as i64, 0, 1)
        );
        assert_eq!(entry(&diff, "buffer", &key).unwrap()["label"], format!("{key} hist new"));
    }
    assert_eq!(entry(&diff, "buffer", &kept_ino.to_string()), None);
    // This process held kept + freed (1.25 MiB), then kept + new (2 MiB); so did its uid, root,
    // whose other processes in the guest hold no dma-buf.
    let grew = ("grew".to_string(), m + k, 2 * m, (m - k) as i64, 2, 3);
    assert_eq!(change(&diff, "process", &me), grew);
    assert_eq!(entry(&diff, "process", &me).unwrap()["label"], format!("vm_history:{me}"));
    assert_eq!(change(&diff, "app", "0"), grew);
    assert_eq!(diff["before"]["source"], "procfs");
    assert_eq!(diff["before"]["format_version"], 1);

    let filtered: Value = serde_json::from_str(&stdout_of(&[
        "diff",
        &before,
        &after,
        "-o",
        "json",
        "--threshold",
        "300K",
    ]))
    .expect("JSON");
    assert_eq!(entry(&filtered, "name", "hist freed"), None, "256 KiB < 300K: {filtered:#}");
    assert_eq!(change(&filtered, "name", "hist new").0, "appeared");
    assert_eq!(filtered["threshold"], 300 * KIB);

    let table = stdout_of(&["diff", &before, &after]);
    let row = |first: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("{first}: {table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        row("hist new "),
        ["hist", "new", "appeared", "0", "kB", "1024", "kB", "+1024", "kB", "0", "->", "2"]
    );
    assert_eq!(
        row("hist freed "),
        ["hist", "freed", "vanished", "256", "kB", "0", "kB", "-256", "kB", "1", "->", "0"]
    );
    drop((kept, new));
}

/// `dump --watch` writes one snapshot line per interval and stops after `--count`; `diff` takes
/// lines of that file (`FILE@N`, `@-1` the last), refuses the file as a whole, and refuses
/// files that are not snapshots, each with one line on stderr and status 2.
#[test]
fn watch_lines_diff_and_bad_input() {
    let _serial = serial();
    let held = exporter::dma_buf("hist watched", 64 * KIB);
    let path = scratch("watch.jsonl");
    std::fs::write(&path, stdout_of(&["dump", "--watch", "1", "--count", "3"])).expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let times: Vec<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("a JSON line")["snapshot"]["time_unix"]
                .as_u64()
                .expect("time")
        })
        .collect();
    assert!(times[0] < times[2], "one second apart at least: {times:?}");
    let ino = inode(&held);
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["buffers"].as_array().unwrap().iter().any(|b| b["inode"] == ino), "{l}");
    }
    let p = path.to_str().unwrap();
    let diff: Value = serde_json::from_str(&stdout_of(&[
        "diff",
        &format!("{p}@1"),
        &format!("{p}@-1"),
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(entry(&diff, "buffer", &ino.to_string()), None, "nothing changed: {diff:#}");
    assert_eq!(diff["after"]["time_unix"], times[2]);

    let not_json = scratch("not.json");
    std::fs::write(&not_json, "hello\n").unwrap();
    let v9 = scratch("v9.json");
    std::fs::write(&v9, lines[0].replace("\"format_version\":1", "\"format_version\":9")).unwrap();
    let nj = not_json.to_str().unwrap();
    let v9 = v9.to_str().unwrap();
    for (args, want) in [
        (vec!["diff", p, p], format!("dmabufctl: invalid argument: {p}: holds 3 snapshots (dump --watch lines): pick one as FILE@N (1..3, -1 the last)\n")),
        (vec!["diff", nj, p], format!("dmabufctl: invalid argument: {nj}: not a JSON snapshot: expected value at line 1 column 1\n")),
        (vec!["diff", v9, p], format!("dmabufctl: invalid argument: {v9}: snapshot format version 9; this dmabufctl reads version 1\n")),
        (vec!["diff", &format!("{p}@4"), p], format!("dmabufctl: invalid argument: {p}@4: no snapshot @4 here: it holds 3 (1..3, or -1 the last)\n")),
    ] {
        let out = dmabufctl(&args);
        assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()), (Some(2), want));
        assert!(out.stdout.is_empty());
    }
    drop(held);
}

/// One plain frame of `top --batch`: its lines up to the blank line that ends it (the second:
/// one follows the header).
fn read_frame(out: &mut impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    let mut blanks = 0;
    while blanks < 2 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).expect("read top's output") > 0, "top ended: {lines:?}");
        let line = line.trim_end_matches('\n').to_string();
        blanks += usize::from(line.is_empty());
        lines.push(line);
    }
    lines
}

/// The cells of the row of `frame` whose label is `label`.
fn frame_row(frame: &[String], label: &str) -> Vec<String> {
    let line = frame
        .iter()
        .find(|l| l.starts_with(&format!("{label} ")))
        .unwrap_or_else(|| panic!("no {label} row: {frame:#?}"));
    line[label.len()..].split_whitespace().map(str::to_string).collect()
}

/// `top --batch` over live scans: frame 1 shows this test's buffers with exact Rss per name and
/// per process; a buffer allocated between frames shows in frame 2 as growth since the last
/// frame and since start.
#[test]
fn top_batch_frames_show_exact_rss_and_growth() {
    let _serial = serial();
    let me = std::process::id();
    let first = exporter::dma_buf("hist top", 256 * KIB);
    let mut top = Command::new(dmabufctl_path())
        .args(["top", "-b", "-n", "2", "-d", "5", "--by", "name", "--bytes"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dmabufctl top");
    let mut out = BufReader::new(top.stdout.take().expect("stdout"));
    let frame1 = read_frame(&mut out);
    assert!(frame1[0].contains("  frame 1  by name  sort rss"), "{frame1:#?}");
    assert_eq!(frame_row(&frame1, "hist top"), ["262144", "B", "1", "0", "B", "0", "B"]);
    let second = exporter::dma_buf("hist top", 512 * KIB);
    let frame2 = read_frame(&mut out);
    assert!(frame2[0].contains("  frame 2  by name"), "{frame2:#?}");
    assert_eq!(
        frame_row(&frame2, "hist top"),
        ["786432", "B", "2", "+524288", "B", "+524288", "B"]
    );
    assert!(top.wait().expect("wait").success(), "-n 2 ends after two frames");

    let by_process = stdout_of(&["top", "-b", "-n", "1", "--by", "process", "--bytes"]);
    let lines: Vec<String> = by_process.lines().map(str::to_string).collect();
    assert_eq!(
        frame_row(&lines, &format!("vm_history:{me}")),
        ["786432", "B", "2", "0", "B", "0", "B"]
    );
    drop((first, second));
}
