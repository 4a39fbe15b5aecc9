//! `dmabufctl dump -o openmetrics` against Prometheus' own checker, `promtool check metrics`
//! (Debian package `prometheus`, installed by scripts/setup): the fixture system's dump, and an
//! exposition of hostile names (quote, backslash, newline, invalid UTF-8, escape sequences) built
//! with the library. The live scrape by a real Prometheus is tests/vm_metrics.rs.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use dmabufd::account::{Buffer, Filter, Model, Name, PidCounts, Process, Report};

/// Runs `promtool check metrics` on `text`; returns its exit status and output.
fn promtool(text: &str) -> (Option<i32>, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus, see scripts/setup)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool exits");
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), said)
}

#[test]
fn fixture_dump_passes_promtool() {
    let proc_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/system/proc");
    let out = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["dump", "-o", "openmetrics", "--proc-root"])
        .arg(proc_root)
        .output()
        .expect("runs dmabufctl");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(text.contains("\ndmabuf_name_bytes{name=\"CAMERA preview\"} 12288\n"), "{text}");
    assert!(text.ends_with("\n# EOF\n"));
    assert_eq!(promtool(&text), (Some(0), String::new()));
}

#[test]
fn hostile_names_pass_promtool() {
    let names: [&[u8]; 7] =
        [b"q\"uote", b"back\\slash", b"new\nline", b"bad\xff\xfe", b"}\n# EOF\n", b"\x1b[31m", b""];
    let mut model = Model::default();
    model.processes.insert(42, Process { pid: 42, uid: 10001, comm: "evil\"}\n# EOF".into() });
    for (i, name) in names.iter().enumerate() {
        let inode = i as u64 + 1;
        let buffer = Buffer {
            inode,
            size: 4096,
            exporter: Some("he\"ap\\\n".into()),
            name: Some(Name::from(*name)),
            fd_refs: PidCounts::from([(42, 1)]),
            ..Buffer::default()
        };
        model.buffers.insert(inode, buffer);
    }
    let text = dmabufd::openmetrics::render(&Report::build(&model, &Filter::default()));
    assert_eq!(text.lines().filter(|l| l.starts_with("# EOF")).count(), 1, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("dmabuf_name_bytes{")).count(), names.len());
    assert_eq!(promtool(&text), (Some(0), String::new()), "{text}");
}

#[test]
fn promtool_can_fail() {
    // The checker is not a rubber stamp: a sample with an unterminated label value is rejected.
    let (status, _) = promtool("# TYPE x gauge\nx{a=\"b} 1\n# EOF\n");
    assert_ne!(status, Some(0));
}
