//! Children of a VM suite: the test binary re-executed in a role (named by an environment
//! variable), which holds buffers, reports their inodes on one `ready` line and lives until
//! its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dmabufd::sys::{self, SharedMap};

/// A named buffer from the system heap, else vgem (tests/vm_support/exporter.rs).
pub fn alloc(name: &str, size: u64) -> OwnedFd {
    super::exporter::dma_buf(name, size)
}

pub fn inode(fd: &OwnedFd) -> u64 {
    sys::fstat(fd.as_fd()).expect("fstat").inode
}

/// Starts a thread that gives itself its own fd table (unshare(CLONE_FILES)), allocates `name`
/// there and parks forever; returns that buffer's inode once it is held.
pub fn unshared_thread_buffer(name: &'static str, size: u64) -> u64 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_FILES) gives this thread a copy of the fd table; it takes no
        // pointers.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_FILES) }, 0, "unshare");
        let private = alloc(name, size);
        tx.send(inode(&private)).expect("send");
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("the unsharing thread")
}

/// Starts this binary as a child with `role_var=role` (as root, like this process: the heap
/// device is root's); returns it and the inodes it reports.
pub fn spawn(role_var: &str, role: &str) -> (Child, Vec<u64>) {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(role_var, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
    let inodes = line
        .strip_prefix("ready")
        .unwrap_or_else(|| panic!("child {role} said {line:?}"))
        .split_whitespace()
        .map(|i| i.parse().expect("inode"))
        .collect();
    (child, inodes)
}

/// Closes the child's stdin and reaps it.
pub fn stop(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// Tells the parent the inodes and waits for EOF on stdin.
pub fn ready_then_wait(inodes: &[u64]) -> ! {
    let line: String = inodes.iter().map(|i| format!(" {i}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready{line}").expect("tell the parent");
    out.flush().expect("tell the parent");
    drop(out);
    wait_for_eof()
}

/// Exits once stdin closes (a forked child shares its parent's stdin).
pub fn wait_for_eof() -> ! {
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// The `leader_exits` role: a thread holds buffer `names[0]` (4 pages) by fd and `names[1]` (one
/// page) only mapped, and reports them; the main thread exits, leaving a zombie leader with no
/// fds and no mappings.
pub fn leader_exits(names: [&'static str; 2]) -> ! {
    std::thread::spawn(move || {
        let held = alloc(names[0], 4 * 4096);
        let mapped = alloc(names[1], 4096);
        let map = SharedMap::new(mapped.as_fd(), 4096).expect("mmap");
        let inodes = [inode(&held), inode(&mapped)];
        drop(mapped);
        std::mem::forget(map);
        ready_then_wait(&inodes);
    });
    // SAFETY: SYS_exit ends only the calling thread (what pthread_exit from main does, without
    // unwinding through Rust frames); the process lives on in the other thread.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("SYS_exit returned");
}

/// Waits until process `pid`'s leader is a zombie.
pub fn wait_leader_exited(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .contains("State:\tZ")
    {
        assert!(Instant::now() < deadline, "the leader did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}
