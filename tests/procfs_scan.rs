//! The scanner and the views over a captured system (tests/fixtures/system: fake /proc with fd
//! links, fdinfo, maps and status, plus debugfs bufinfo), the `dmabufctl dump` front end over the
//! same capture, and property tests of the Pss arithmetic.

use std::path::PathBuf;
use std::process::Command;

use dmabufd::account::{
    AppView, Buffer, ExporterView, Filter, Grouping, Model, Name, NameView, PidCounts, Process,
    ProcessView, Report,
};
use dmabufd::coverage::Unreadable;
use dmabufd::scan::{scan, ScanOptions};
use proptest::prelude::*;

fn system_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/system")
}

fn scan_fixture(threads: usize) -> Model {
    scan(&ScanOptions { threads, ..ScanOptions::under_root(&system_root()) })
        .expect("fixture scans")
}

fn pv(
    pid: i32,
    uid: u32,
    comm: &str,
    rss: u64,
    pss: u64,
    fd_bytes: u64,
    map_only_bytes: u64,
) -> ProcessView {
    ProcessView { pid, uid, comm: comm.into(), rss, pss, fd_bytes, map_only_bytes }
}

#[test]
fn fixture_model_is_exact() {
    let model = scan_fixture(1);
    assert_eq!(model.unreadable_processes, 1, "pid 400 has no fd directory");
    assert_eq!(model.exported_bytes, Some(1_138_688));
    assert_eq!(model.processes.keys().copied().collect::<Vec<_>>(), vec![100, 200, 300]);
    let gl = &model.buffers[&2001];
    assert_eq!(
        (gl.size, gl.exporter.as_deref(), gl.name.as_ref().and_then(Name::to_str)),
        (65536, Some("system"), Some("GL"))
    );
    assert_eq!(gl.fd_refs, PidCounts::from([(100, 2), (200, 1), (300, 1)]));
    assert_eq!(gl.map_refs, PidCounts::from([(100, 2)]));
    let mapped_only = &model.buffers[&2004];
    assert_eq!(
        (mapped_only.size, mapped_only.size_from_maps),
        (8192, false),
        "true size from bufinfo"
    );
    assert_eq!(mapped_only.name.as_ref().and_then(Name::to_str), Some("mapped only"));
    assert!(mapped_only.fd_refs.is_empty());
    let kernel = &model.buffers[&2005];
    assert!(kernel.fd_refs.is_empty() && kernel.map_refs.is_empty());
    assert_eq!(kernel.exporter.as_deref(), Some("reserved"));
    assert_eq!(model.buffers[&2002].name, None);
}

#[test]
fn thread_count_does_not_change_the_model() {
    assert_eq!(scan_fixture(1), scan_fixture(4));
}

#[test]
fn fixture_views_are_exact() {
    let r = Report::build(&scan_fixture(0), &Filter::default());
    assert_eq!(
        r.processes,
        vec![
            pv(100, 1000, "surfaceflinger", 69632, 25942, 69632, 0),
            pv(200, 1047, "camera", 86016, 42325, 77824, 8192),
            pv(300, 10057, "app", 65536, 21845, 65536, 0),
        ]
    );
    assert_eq!(
        r.apps,
        vec![
            AppView { uid: 1000, rss: 69632, pss: 25942, buffers: 2, complete: true },
            AppView { uid: 1047, rss: 86016, pss: 42325, buffers: 3, complete: true },
            AppView { uid: 10057, rss: 65536, pss: 21845, buffers: 1, complete: true },
        ]
    );
    let name = |n: &str, bytes, buffers| NameView { name: n.into(), bytes, buffers };
    assert_eq!(
        r.names,
        vec![
            name("", 4096, 1),
            name("CAMERA preview", 12288, 1),
            name("GL", 65536, 1),
            name("kernel only", 1_048_576, 1),
            name("mapped only", 8192, 1),
        ]
    );
    assert_eq!(
        r.heaps,
        vec![
            ExporterView { exporter: "reserved".into(), bytes: 1_048_576, buffers: 1 },
            ExporterView { exporter: "system".into(), bytes: 90112, buffers: 4 },
        ]
    );
    assert_eq!(r.totals.userspace_rss, 90112);
    assert_eq!(r.totals.userspace_pss, 90112);
    assert_eq!(r.totals.kernel_only_bytes, 1_048_576);
    assert_eq!(r.totals.exported_bytes, Some(1_138_688));
    assert_eq!(r.buffers.len(), 5);
}

#[test]
fn filters_select_processes_but_keep_global_shares() {
    let model = scan_fixture(0);
    let r = Report::build(&model, &Filter { uid: Some(10057), pid: None });
    assert_eq!(r.processes, vec![pv(300, 10057, "app", 65536, 21845, 65536, 0)]);
    assert_eq!(r.buffers.iter().map(|b| b.inode).collect::<Vec<_>>(), vec![2001]);
    assert_eq!(r.buffers[0].holders().len(), 3);
    assert_eq!(
        (r.totals.userspace_rss, r.totals.userspace_pss, r.totals.kernel_only_bytes),
        (65536, 21845, 0)
    );
    assert_eq!(r.totals.exported_bytes, None);
    let r = Report::build(&model, &Filter { uid: None, pid: Some(100) });
    assert_eq!(r.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![100]);
    assert_eq!(r.buffers.iter().map(|b| b.inode).collect::<Vec<_>>(), vec![2001, 2002]);
    let r = Report::build(&model, &Filter { uid: Some(1000), pid: Some(200) });
    assert!(r.processes.is_empty() && r.buffers.is_empty());
}

fn dmabufctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .arg("dump")
        .arg("--proc-root")
        .arg(system_root().join("proc"))
        .args(args)
        .output()
        .expect("runs dmabufctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn dump_default_table_keeps_dmabuf_dump_layout() {
    let (code, out, err) = dmabufctl(&[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "  surfaceflinger:100  ");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["Name", "Rss", "Pss", "nr_procs", "Inode", "Exporter"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["GL", "64", "kB", "21.334", "kB", "3", "2001", "system"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["<unknown>", "4", "kB", "4", "kB", "1", "2002", "system"]
    );
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["PROCESS", "TOTAL", "68", "kB", "25.334", "kB"]
    );
    assert_eq!(lines[5], "----------------------");
    assert_eq!(
        *lines.last().expect("lines"),
        "dmabuf total: 1112 kB kernel_rss: 1024 kB userspace_rss: 88 kB userspace_pss: 88 kB"
    );
    assert!(err.contains("processes skipped: 1 "), "{err}");
}

#[test]
fn dump_bytes_and_pid_filter() {
    let (code, out, _) = dmabufctl(&["--bytes", "200"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("          camera:200  \n"), "{out}");
    let total = out.lines().find(|l| l.contains("PROCESS TOTAL")).expect("total row");
    assert_eq!(
        total.split_whitespace().collect::<Vec<_>>(),
        ["PROCESS", "TOTAL", "86016", "B", "42325", "B"]
    );
    assert_eq!(out.matches("PROCESS TOTAL").count(), 1);
}

#[test]
fn dump_json_has_documented_keys_and_values() {
    let (code, out, _) = dmabufctl(&["-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let gl = v["buffers"]
        .as_array()
        .expect("buffers[]")
        .iter()
        .find(|b| b["inode"] == 2001)
        .expect("GL");
    assert_eq!(gl["size"], 65536);
    assert_eq!(gl["exporter"], "system");
    assert_eq!(gl["name"], "GL");
    assert_eq!(gl["fd_refs"], serde_json::json!({"100": 2, "200": 1, "300": 1}));
    assert_eq!(gl["map_refs"], serde_json::json!({"100": 2}));
    let unnamed = v["buffers"]
        .as_array()
        .expect("buffers[]")
        .iter()
        .find(|b| b["inode"] == 2002)
        .expect("2002");
    assert!(unnamed["name"].is_null());
    assert_eq!(
        v["processes"][1],
        serde_json::json!({"pid": 200, "uid": 1047, "comm": "camera", "rss": 86016, "pss": 42325, "fd_bytes": 77824, "map_only_bytes": 8192})
    );
    assert_eq!(
        v["apps"][0],
        serde_json::json!({"uid": 1000, "rss": 69632, "pss": 25942, "buffers": 2, "complete": true})
    );
    assert_eq!(
        v["names"][1],
        serde_json::json!({"name": "CAMERA preview", "bytes": 12288, "buffers": 1})
    );
    assert_eq!(
        v["totals"],
        serde_json::json!({"exported_bytes": 1138688, "userspace_rss": 90112, "userspace_pss": 90112,
                           "kernel_only_bytes": 1048576, "unreadable_processes": 1})
    );
}

#[test]
fn dump_other_views() {
    let (_, out, _) = dmabufctl(&["--by", "app", "--bytes"]);
    assert_eq!(
        out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>(),
        [
            "Uid Rss Pss Buffers",
            "1000 69632 B 25942 B 2",
            "1047 86016 B 42325 B 3",
            "10057 65536 B 21845 B 1",
            "kernel 1048576 B 1048576 B 1",
        ]
    );
    let (_, out, _) = dmabufctl(&["--by", "name", "-o", "csv"]);
    assert_eq!(out, "name,bytes,buffers\n<unknown>,4096,1\nCAMERA preview,12288,1\nGL,65536,1\nkernel only,1048576,1\nmapped only,8192,1\n");
    let (_, out, _) = dmabufctl(&["--by", "heap", "-o", "csv"]);
    assert_eq!(out, "exporter,bytes,buffers\nreserved,1048576,1\nsystem,90112,4\n");
    let (_, out, _) = dmabufctl(&["-o", "csv", "300"]);
    assert_eq!(out, "pid,comm,uid,name,inode,exporter,rss_bytes,pss_bytes,nr_procs,fd_refs,map_refs\n300,app,10057,GL,2001,system,65536,21845,3,1,0\n");
    let (_, out, _) = dmabufctl(&["-a"]);
    let gl = out.lines().find(|l| l.trim_start().starts_with("2001 ")).expect("grid row");
    assert_eq!(gl.matches("refs").count(), 3);
    assert!(gl.contains("        2(     2) refs"), "{gl}");
    let (_, out, _) = dmabufctl(&["-b"]);
    assert!(out.contains("Total DMA-BUF count: 5, Total DMA-BUF size(bytes): 1138688"), "{out}");
    let (code, _, err) = dmabufctl(&["-a", "-b"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn dump_says_plainly_when_there_are_no_dmabufs() {
    let empty = tempdir();
    std::fs::create_dir_all(empty.join("proc/1/fd")).expect("mkdir");
    std::fs::write(empty.join("proc/1/maps"), "").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["dump", "--proc-root"])
        .arg(empty.join("proc"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("No dma-bufs found"));
    let _ = std::fs::remove_dir_all(&empty);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmabufd-scan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// Random models: sizes, holders, fd and map refs.
fn arb_model() -> impl Strategy<Value = Model> {
    let buffer =
        (1u64..1 << 24, proptest::collection::btree_map(1i32..40, (0u32..3, 0u32..3), 0..12));
    proptest::collection::vec(buffer, 0..30).prop_map(|bufs| {
        let mut model = Model::default();
        for (i, (size, refs)) in bufs.into_iter().enumerate() {
            let inode = i as u64 + 1;
            let mut b = Buffer { inode, size, ..Buffer::default() };
            for (pid, (fds, maps)) in refs {
                let (fds, maps) = if fds + maps == 0 { (1, 0) } else { (fds, maps) };
                if fds > 0 {
                    b.fd_refs.insert(pid, fds);
                }
                if maps > 0 {
                    b.map_refs.insert(pid, maps);
                }
                model
                    .processes
                    .insert(pid, Process { pid, uid: pid as u32 % 4, comm: format!("p{pid}") });
            }
            model.buffers.insert(inode, b);
        }
        model
    })
}

/// [`arb_model`] with names and exporters (absent, empty, shared, not UTF-8), a process that
/// holds nothing and, sometimes, a uid whose processes could not be read.
fn arb_labelled_model() -> impl Strategy<Value = Model> {
    let labels = proptest::collection::vec((0u8..4, 0u8..3), 30);
    (arb_model(), labels, proptest::option::of(0u32..4)).prop_map(|(mut model, labels, hidden)| {
        for (b, (name, exporter)) in model.buffers.values_mut().zip(labels) {
            b.name = [None, Some(&b""[..]), Some(b"GL"), Some(b"\xffGL")][usize::from(name)]
                .map(Name::from);
            b.exporter = [None, Some(""), Some("system")][usize::from(exporter)].map(Into::into);
        }
        model.processes.insert(99, Process { pid: 99, uid: 3, comm: "idle".into() });
        if let Some(uid) = hidden {
            let unreadable = Unreadable { uid, processes: 1, ..Unreadable::default() };
            model.coverage.unreadable.insert(uid, unreadable);
        }
        model
    })
}

fn arb_filter() -> impl Strategy<Value = Filter> {
    let pid = prop_oneof![1i32..40, Just(99)];
    (proptest::option::of(0u32..4), proptest::option::of(pid))
        .prop_map(|(uid, pid)| Filter { uid, pid })
}

proptest! {
    #[test]
    fn pss_sums_exactly_to_referenced_bytes(model in arb_model()) {
        let r = Report::build(&model, &Filter::default());
        let referenced: u64 = model.buffers.values().filter(|b| !b.holders().is_empty()).map(|b| b.size).sum();
        let kernel_only: u64 = model.buffers.values().filter(|b| b.holders().is_empty()).map(|b| b.size).sum();
        prop_assert_eq!(r.processes.iter().map(|p| p.pss).sum::<u64>(), referenced);
        prop_assert_eq!(r.totals.userspace_pss, referenced);
        prop_assert_eq!(r.totals.userspace_rss, referenced);
        prop_assert_eq!(r.totals.kernel_only_bytes, kernel_only);
        prop_assert_eq!(r.apps.iter().map(|a| a.pss).sum::<u64>(), referenced);
        for p in &r.processes {
            prop_assert_eq!(p.fd_bytes + p.map_only_bytes, p.rss);
            prop_assert!(p.pss <= p.rss);
            let shares: u64 = r.buffers.iter().map(|b| b.pss_of(p.pid)).sum();
            prop_assert_eq!(shares, p.pss);
        }
        for b in &r.buffers {
            let n = b.holders().len() as u64;
            for pid in b.holders() {
                let share = b.pss_of(pid);
                prop_assert!(share == b.size / n || share == b.size / n + 1);
            }
        }
    }

    #[test]
    fn filtered_reports_are_slices_of_the_full_one(model in arb_model(), uid in 0u32..4) {
        let full = Report::build(&model, &Filter::default());
        let part = Report::build(&model, &Filter { uid: Some(uid), pid: None });
        let expected: Vec<_> = full.processes.iter().filter(|p| p.uid == uid).cloned().collect();
        prop_assert_eq!(&part.processes, &expected);
        prop_assert_eq!(part.totals.userspace_pss, expected.iter().map(|p| p.pss).sum::<u64>());
    }

    /// A model handed over reports as one lent: the report takes what it would copy, no more;
    /// without grouping, it lacks the per-name and per-heap views and nothing else.
    #[test]
    fn a_consumed_model_reports_as_a_lent_one(model in arb_labelled_model(), filter in arb_filter()) {
        let lent = Report::build(&model, &filter);
        prop_assert_eq!(&Report::from_model(model.clone(), &filter, Grouping::All), &lent);
        let ungrouped = Report::from_model(model, &filter, Grouping::None);
        prop_assert_eq!(ungrouped, Report { names: Vec::new(), heaps: Vec::new(), ..lent });
    }
}

#[test]
fn without_kernel_list_exporters_come_from_fdinfo_and_sizes_from_maps() {
    let opts = ScanOptions {
        debugfs_bufinfo: None,
        sysfs_buffers: None,
        ..ScanOptions::under_root(&system_root())
    };
    let model = scan(&opts).expect("scans");
    assert_eq!(model.exported_bytes, None);
    assert_eq!(
        model.buffers.keys().copied().collect::<Vec<_>>(),
        vec![2001, 2002, 2003, 2004],
        "no kernel-only buffer"
    );
    assert_eq!(model.buffers[&2001].exporter.as_deref(), Some("system"));
    let mapped_only = &model.buffers[&2004];
    assert_eq!(
        (mapped_only.size, mapped_only.size_from_maps, mapped_only.exporter.as_deref()),
        (8192, true, None)
    );
}

#[test]
fn sysfs_stats_stand_in_for_debugfs() {
    let opts = ScanOptions { debugfs_bufinfo: None, ..ScanOptions::under_root(&system_root()) };
    let model = scan(&opts).expect("scans");
    assert_eq!(model.exported_bytes, Some(1_138_688));
    let kernel = &model.buffers[&2005];
    assert_eq!(
        (kernel.size, kernel.exporter.as_deref(), kernel.name.as_ref().and_then(Name::to_str)),
        (1_048_576, Some("reserved"), None)
    );
    assert_eq!(model.buffers[&2004].exporter.as_deref(), Some("system"));
    assert!(!model.buffers[&2004].size_from_maps);
}

/// Sizes are kernel text: absurd ones (a corrupt or fuzzed bufinfo) must not panic or wrap.
#[test]
fn absurd_sizes_saturate() {
    let mut model = Model::default();
    for inode in 1..=3 {
        let mut b = Buffer { inode, size: u64::MAX - 1, ..Buffer::default() };
        if inode < 3 {
            b.fd_refs.insert(7, 1);
        }
        model.buffers.insert(inode, b);
    }
    model.processes.insert(7, Process { pid: 7, uid: 0, comm: "x".into() });
    let r = Report::build(&model, &Filter::default());
    assert_eq!(
        (r.processes[0].rss, r.totals.userspace_rss, r.totals.kernel_only_bytes),
        (u64::MAX, u64::MAX, u64::MAX - 1)
    );
    assert_eq!(r.names[0].bytes, u64::MAX);
    assert!(dmabufd::report::table(
        &r,
        dmabufd::report::View::Processes,
        dmabufd::report::Units::Bytes
    )
    .contains(&u64::MAX.to_string()));
}
