//! `dmabufd-bench-scan pages DIR PROGRAM ARGS...`: runs a command and, at its exit, records
//! which pages of its executable's code it touched, for `scripts/hot-text` (the layout that
//! puts a dump's code together, docs/bpf.md).
//!
//! The command runs under ptrace, stopped as it exits (`PTRACE_O_TRACEEXIT`), when its address
//! space is whole: its `/proc/<pid>/pagemap` then says which pages of the code mapping are
//! present. With `fault_around_bytes` at one page and every function page-aligned (the build
//! the script makes), a present page is a function that ran. Writes `DIR/<pid>`: the command
//! line, then the page numbers in hex.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};

pub fn capture(args: &[String]) {
    let [dir, command @ ..] = args else {
        eprintln!("usage: dmabufd-bench-scan pages DIR PROGRAM [ARGS...]");
        std::process::exit(2)
    };
    let argv: Vec<CString> =
        command.iter().map(|a| CString::new(a.as_bytes()).expect("no NUL in args")).collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: fork in a single-threaded process; the child only calls async-signal-safe
    // functions (ptrace, execvp, _exit) before it execs.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; `ptrs` is a NUL-terminated array of NUL-terminated strings.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::execvp(ptrs[0], ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // The child stops with SIGTRAP once it has execed.
    // SAFETY: waitpid and ptrace on the child this process forked and traces.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_TRACEEXIT);
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
    }
    let exit_stop = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);
    loop {
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let mut signal = 0;
        if libc::WIFSTOPPED(status) {
            if status >> 8 == exit_stop {
                record(dir, pid, command);
            } else {
                signal = libc::WSTOPSIG(status);
            }
        }
        // SAFETY: as above; the signal that stopped the child is passed on.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal) };
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 1 };
    std::process::exit(code);
}

/// Writes the present pages of `pid`'s first executable mapping (its program's code).
fn record(dir: &str, pid: i32, command: &[String]) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let Some(code) = maps.lines().find(|l| l.split_whitespace().nth(1) == Some("r-xp")) else {
        return;
    };
    let range = code.split_whitespace().next().expect("a range");
    let (start, end) = range.split_once('-').expect("start-end");
    let [start, end] = [start, end].map(|a| u64::from_str_radix(a, 16).expect("hex address"));
    let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).expect("pagemap");
    let mut out = format!("{}\n", command.join(" "));
    let page_size = dmabufd::sys::page_size() as u64;
    for page in start / page_size..end / page_size {
        let mut entry = [0u8; 8];
        pagemap.seek(SeekFrom::Start(page * 8)).expect("seek");
        pagemap.read_exact(&mut entry).expect("pagemap entry");
        if u64::from_le_bytes(entry) >> 63 == 1 {
            out.push_str(&format!("{page:x}\n"));
        }
    }
    std::fs::write(format!("{dir}/{pid}"), out).expect("writing the pages");
}
