//! Asked-by versus held-by, the service's history and whole names, over kernel binder in the VM
//! (tests/vm/run). Runs as root, with the private service manager of tests/vm_support.
//!
//! `harness = false`, like vm_service: the binary doubles as its clients (`vm_handoff client
//! ROLE ...`, started with a uid set), each naming itself after what it plays (PR_SET_NAME).

mod vm_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use dmabufd::buffer::DmaBuf;
use dmabufd::handoff::{Handoff, Handoffs, Holder, UidBalance};
use dmabufd::ledger::Entry;
use dmabufd::service::compat::aidl::IAccounting::ALL;
use dmabufd::service::compat::aidl::IAllocator as codes;
use dmabufd::service::compat::aidl::Report::Report;
use dmabufd::service::compat::ALLOCATOR_INSTANCE;
use dmabufd::service::convert;
use dmabufd::service::history::{Mark, View};
use vm_support::fdpass::{recv_fd, send_fd};
use vm_support::{
    accounting, allocator, client, code, read_line, request, wait_freed, Config, Stack, Test,
};

const CONFIG: Config = Config { heap_dir: "/tmp/vm_handoff-heaps", quota: 64 << 20 };
const SOCKET: &str = "/tmp/vm_handoff.sock";
const CAMERA: u32 = 1047;
const COMPOSITOR: u32 = 1000;
const MIB: u64 = 1 << 20;

/// Names the calling process (its main thread's comm, what /proc/<pid>/status shows).
fn play(role: &str) {
    let name = std::ffi::CString::new(role).expect("no NUL");
    rustix::thread::set_name(&name).expect("PR_SET_NAME");
}

/// The kernel's name of a dma-buf fd of this process, from its fdinfo.
fn kernel_name(fd: &OwnedFd) -> String {
    let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).expect("fdinfo");
    let line = fdinfo.lines().find_map(|l| l.strip_prefix("name:\t")).unwrap_or_default();
    line.to_owned()
}

/// Client role `camera SIZE NAME`: allocates through the service, connects to [`SOCKET`],
/// sends the fd, closes its own, prints `inode`, then waits for stdin to close.
fn client_camera(args: &[String]) {
    play("cameraserver");
    let [size, name] = args else { panic!("camera SIZE NAME") };
    let allocation = allocator()
        .allocate(&request("system", size.parse().expect("size"), name))
        .expect("allocate");
    let fd: OwnedFd = allocation.fd.expect("fd").into();
    let sock = UnixStream::connect(SOCKET).expect("connect to the compositor");
    send_fd(&sock, fd.as_fd());
    drop(fd);
    println!("{}", allocation.inode);
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Client role `compositor`: listens on [`SOCKET`], prints `listening`, accepts; on the stdin
/// line `recv` receives an fd (until then it is in flight), maps it, prints its inode, then
/// holds it until stdin closes.
fn client_compositor() {
    play("surfaceflinger");
    let _ = std::fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET).expect("bind");
    // The camera runs as another uid.
    std::fs::set_permissions(SOCKET, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    println!("listening");
    std::io::stdout().flush().expect("flush");
    let (sock, _) = listener.accept().expect("accept");
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).expect("stdin");
    assert_eq!(line.trim(), "recv");
    let buf = DmaBuf::from_fd(recv_fd(sock.as_fd())).expect("a dma-buf");
    let map = buf.map().expect("map");
    println!("{}", buf.inode());
    std::io::stdout().flush().expect("flush");
    let _ = stdin.read_to_end(&mut Vec::new());
    drop(map);
}

/// Client role `alloc SIZE NAME`: allocates through the service, prints `inode`, holds the
/// buffer until stdin closes.
fn client_alloc(args: &[String]) {
    let [size, name] = args else { panic!("alloc SIZE NAME") };
    let allocation = allocator()
        .allocate(&request("system", size.parse().expect("size"), name))
        .expect("allocate");
    println!("{}", allocation.inode);
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Client role `history`: what a uid off the allowlist may do with the history.
fn client_history() {
    let acct = accounting();
    assert_eq!(code(acct.resetHistory()), codes::ERROR_PERMISSION_DENIED);
    let own = convert::history_from_aidl(acct.getHistory().expect("getHistory"));
    let uids: Vec<u32> = own.uids.keys().copied().collect();
    println!("{uids:?} {} {}", own.names.len(), own.samples.len());
}

/// The whole asked-by versus held-by view of `uid` (ALL: -1), every page.
fn handoffs(uid: i64) -> Handoffs {
    let acct = accounting();
    let (mut view, mut cursor) = (Handoffs::default(), 0);
    loop {
        let page = acct.getHandoffPage(uid, cursor).expect("getHandoffPage");
        cursor = page.cursor;
        convert::append_handoff_page(&mut view, page);
        if cursor == 0 {
            return view;
        }
    }
}

/// Polls `handoffs(uid)` until `done` says so (scans are shared for up to a few hundred ms),
/// for at most 5 s; returns the last view either way, for the exact assertions.
fn handoffs_until(uid: i64, done: impl Fn(&Handoffs) -> bool) -> Handoffs {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let view = handoffs(uid);
        if done(&view) || Instant::now() > deadline {
            return view;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn history() -> View {
    convert::history_from_aidl(accounting().getHistory().expect("getHistory"))
}

// ---------------------------------------------------------------------------------------------

/// The camera asks, hands the fd over a socket and closes its own: while the fd is in flight
/// only the kernel holds the buffer; once received, the compositor does. Asked-by stays the
/// camera throughout.
fn camera_hands_a_buffer_to_the_compositor(_: &mut Stack) {
    let (mut compositor, mut from_compositor) = client(COMPOSITOR, "compositor", &[]);
    assert_eq!(read_line(&mut from_compositor), "listening");
    let before = Entry::now_millis();
    let (mut camera, mut from_camera) =
        client(CAMERA, "camera", &[&MIB.to_string(), "CAMERA preview"]);
    let inode: u64 = read_line(&mut from_camera).parse().expect("inode");
    let after = Entry::now_millis();
    let asked = |view: &Handoffs| -> Entry {
        let h = view.buffers.iter().find(|h| h.asked.inode == inode).expect("the buffer");
        h.asked.clone()
    };

    // In flight: sent, not yet received.
    let view =
        handoffs_until(i64::from(CAMERA), |v| v.buffers.iter().all(|h| h.holders.is_empty()));
    let entry = asked(&view);
    assert!((before..=after).contains(&entry.time_millis), "{entry:?}");
    let expected_entry = Entry {
        inode,
        size: MIB,
        name: "CAMERA preview".into(),
        heap: "system".into(),
        uid: CAMERA,
        pid: camera.id() as i32,
        time_millis: entry.time_millis,
        attributed: true,
    };
    assert_eq!(view.buffers, vec![Handoff { asked: expected_entry.clone(), holders: vec![] }]);
    assert!(view.buffers[0].is_kernel_only());
    let balance = |uid, asked, held| UidBalance {
        uid,
        asked_bytes: asked * MIB,
        asked_buffers: asked as u32,
        held_bytes: held * MIB,
        held_buffers: held as u32,
    };
    assert_eq!(view.uids, vec![balance(CAMERA, 1, 0)]);

    // Received and mapped by the compositor.
    writeln!(compositor.stdin.as_mut().expect("stdin"), "recv").expect("tell the compositor");
    assert_eq!(read_line(&mut from_compositor), inode.to_string());
    let view =
        handoffs_until(i64::from(CAMERA), |v| v.buffers.iter().all(|h| !h.holders.is_empty()));
    let holder = Holder {
        pid: compositor.id() as i32,
        uid: COMPOSITOR,
        comm: "surfaceflinger".into(),
        fds: 1,
        maps: 1,
    };
    assert_eq!(view.buffers, vec![Handoff { asked: expected_entry, holders: vec![holder] }]);
    assert_eq!(view.uids, vec![balance(COMPOSITOR, 0, 1), balance(CAMERA, 1, 0)]);
    assert!(view.taken_millis >= after);
    // The whole view (ALL) has it too, and so do the CLI and dumpsys.
    assert!(handoffs(i64::from(ALL)).buffers.iter().any(|h| h.asked.inode == inode));
    let row = format!("surfaceflinger[{}] uid 1000 (1 fd, 1 map)", compositor.id());
    let out = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["--service", "holders", "--uid", "1047"])
        .env("DMABUFD_BINDER_DEVICE", vm_support::DEVICE)
        .output()
        .expect("dmabufctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = text.lines().find(|l| l.starts_with("CAMERA preview")).expect("the buffer's row");
    let cells: Vec<&str> = line.split_whitespace().collect();
    let (inode_text, pid_text) = (inode.to_string(), camera.id().to_string());
    assert_eq!(
        cells[2..7],
        [inode_text.as_str(), "1048576", "system", "1047", &pid_text],
        "{text}"
    );
    assert!(line.ends_with(&row), "{text}");
    assert!(
        text.lines().any(|l| l.split_whitespace().eq(["1047", "1048576", "1", "0", "0"])),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.split_whitespace().eq(["1000", "0", "0", "1048576", "1"])),
        "{text}"
    );
    let dump = Command::new("rsb_service")
        .args(["--device", "vndbinder", "dump", ALLOCATOR_INSTANCE])
        .output()
        .expect("rsb_service dump");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("asked-by versus held-by") && dump.contains(&row), "{dump}");

    drop(camera.stdin.take());
    drop(compositor.stdin.take());
    assert!(camera.wait().expect("camera").success());
    assert!(compositor.wait().expect("compositor").success());
    wait_freed(inode);
    let view = handoffs_until(i64::from(CAMERA), |v| v.buffers.is_empty());
    assert_eq!(view.buffers, vec![], "a freed buffer is no handoff");
}

/// High-water marks after known allocations and frees, then a reset; off the allowlist only
/// the caller's own mark and no reset.
fn history_high_water_marks_and_reset(_: &mut Stack) {
    const UID: u32 = 10_077;
    accounting().resetHistory().expect("reset as root");
    let start = Entry::now_millis();
    let (a, mut out_a) = client(UID, "alloc", &[&MIB.to_string(), "hist-a"]);
    let inode_a: u64 = read_line(&mut out_a).parse().expect("inode");
    let (b, mut out_b) = client(UID, "alloc", &[&(2 * MIB).to_string(), "hist-b"]);
    let inode_b: u64 = read_line(&mut out_b).parse().expect("inode");
    let peaked = Entry::now_millis();
    let v = history();
    assert!(v.since_millis <= start);
    let mark = &v.uids[&UID];
    assert_eq!((mark.peak_bytes, mark.current_bytes), (3 * MIB, 3 * MIB));
    assert!((start..=peaked).contains(&mark.peak_millis), "{mark:?}");
    let names =
        |v: &View, name: &str| v.names.get(&name.into()).map(|m| (m.peak_bytes, m.current_bytes));
    assert_eq!(names(&v, "hist-a"), Some((MIB, MIB)));
    assert_eq!(names(&v, "hist-b"), Some((2 * MIB, 2 * MIB)));
    assert!(v.samples.iter().any(|s| s.time_millis >= start));

    // Both freed: the peak stays, the current bytes drop once the query prunes.
    for (mut child, inode) in [(a, inode_a), (b, inode_b)] {
        drop(child.stdin.take());
        assert!(child.wait().expect("client").success());
        wait_freed(inode);
    }
    let v = history();
    assert_eq!(
        v.uids[&UID],
        Mark { peak_bytes: 3 * MIB, peak_millis: mark.peak_millis, current_bytes: 0 }
    );
    assert_eq!(names(&v, "hist-b"), Some((2 * MIB, 0)));

    let (mut c, mut out_c) = client(UID, "alloc", &[&MIB.to_string(), "hist-a"]);
    let inode_c: u64 = read_line(&mut out_c).parse().expect("inode");
    let v = history();
    assert_eq!((v.uids[&UID].peak_bytes, v.uids[&UID].current_bytes), (3 * MIB, MIB));
    assert_eq!(names(&v, "hist-a"), Some((MIB, MIB)));

    // Reset: peaks start from what is alive; marks of nothing alive go.
    let reset_at = Entry::now_millis();
    accounting().resetHistory().expect("reset as root");
    let v = history();
    assert!(v.since_millis >= reset_at);
    assert_eq!((v.uids[&UID].peak_bytes, v.uids[&UID].current_bytes), (MIB, MIB));
    assert_eq!(names(&v, "hist-a"), Some((MIB, MIB)));
    assert_eq!(names(&v, "hist-b"), None);
    assert!(v.samples.iter().all(|s| s.time_millis >= reset_at));

    let (mut own, mut out) = client(UID, "history", &[]);
    assert_eq!(read_line(&mut out), format!("[{UID}] 0 0"));
    assert!(own.wait().expect("history client").success());
    drop(c.stdin.take());
    assert!(c.wait().expect("client").success());
    wait_freed(inode_c);
}

/// A whole report of the service, every page.
fn report() -> Report {
    let acct = accounting();
    let (mut report, mut cursor) = (Report::default(), 0);
    loop {
        let page = acct.getReportPage(i64::from(ALL), ALL, cursor).expect("getReportPage");
        convert::append_page(&mut report, page.report);
        cursor = page.cursor;
        if cursor == 0 {
            return report;
        }
    }
}

/// 129 bytes are refused with ERROR_INVALID_NAME; 128 bytes reach the kernel as their first 31
/// and the ledger and every report as all 128; a cut never splits a character.
fn whole_names_up_to_128_bytes(_: &mut Stack) {
    let alloc = allocator();
    let long = "N".repeat(129);
    assert_eq!(code(alloc.allocate(&request("system", 4096, &long))), codes::ERROR_INVALID_NAME);
    let cases = [
        (format!("camera.preview:{}", "0123456789".repeat(12))[..128].to_owned(), None),
        // 30 ASCII bytes and a 2-byte character: the character would end at byte 32.
        (format!("{}é-rest", "a".repeat(30)), Some("a".repeat(30))),
        // Three-byte characters: 10 fit in 31 bytes.
        ("名".repeat(20), Some("名".repeat(10))),
    ];
    for (name, kernel) in cases {
        let kernel = kernel.unwrap_or_else(|| name[..31].to_owned());
        let allocation = alloc.allocate(&request("system", 4096, &name)).expect("allocate");
        let fd: OwnedFd = allocation.fd.expect("fd").into();
        assert_eq!(kernel_name(&fd), kernel, "{name}");
        let ledger = accounting().getLedgerPage(i64::from(ALL), 0).expect("ledger");
        let entry = ledger.entries.iter().find(|e| e.inode == allocation.inode).expect("entry");
        assert_eq!(entry.name, name);
        let r = report();
        let buffer = r.buffers.iter().find(|b| b.inode == allocation.inode).expect("in the report");
        assert_eq!(
            (buffer.name.as_str(), buffer.nameBytes.as_slice()),
            (name.as_str(), name.as_bytes())
        );
        assert!(r.names.iter().any(|n| n.name == name && n.buffers == 1), "{:?}", r.names);
        // dmabufctl --service renders the whole name; the direct path, which reads the
        // kernel, shows the kernel's.
        let out = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
            .args(["--service", "dump", "--by", "name"])
            .env("DMABUFD_BINDER_DEVICE", vm_support::DEVICE)
            .output()
            .expect("dmabufctl");
        assert!(
            String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with(&name)),
            "{out:?}"
        );
        let holders = handoffs(i64::from(ALL));
        let h = holders
            .buffers
            .iter()
            .find(|h| h.asked.inode as i64 == allocation.inode)
            .expect("handoff");
        assert_eq!(h.asked.name, name.as_str().into());
        let inode = allocation.inode as u64;
        drop(fd);
        wait_freed(inode);
    }
    // Straight against the kernel nothing would keep the rest: refused, not cut.
    let out = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["alloc", "--heap", "system", "--size", "4096", "--name", &"x".repeat(32)])
        .output()
        .expect("dmabufctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("name is 32 bytes; the kernel keeps 31"), "{err}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        match args.get(2).map(String::as_str) {
            Some("camera") => client_camera(&args[3..]),
            Some("compositor") => client_compositor(),
            Some("alloc") => client_alloc(&args[3..]),
            Some("history") => client_history(),
            other => panic!("unknown client role {other:?}"),
        }
        return;
    }
    let tests: [(&str, Test); 3] = [
        ("camera_hands_a_buffer_to_the_compositor", camera_hands_a_buffer_to_the_compositor),
        ("history_high_water_marks_and_reset", history_high_water_marks_and_reset),
        ("whole_names_up_to_128_bytes", whole_names_up_to_128_bytes),
    ];
    vm_support::run_suite(&tests, CONFIG);
}
