//! The workload shapes of issue #13, built from forked children of the driver, and what each
//! one holds (the ground truth every scanner is checked against).
//!
//! Every buffer is 64 KiB from the system heap, named `bench ...`. The driver is one of the
//! holders: it is the process that hands shared buffers to its children (dense), and the
//! compositor (phone, inherited). Children are forked, not executed, so that they can inherit
//! the driver's buffers by fd and, in the inherited shape, its mappings; each closes every fd it
//! was not meant to keep (`close_range` over the gaps) and waits to be killed.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};

use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::sys::{MapAccess, SharedMap};
use rustix::pipe::PipeFlags;

/// Size of every buffer.
pub const BUF_SIZE: u64 = 64 * 1024;

/// A workload shape (BENCHMARKS.md, "Issue #13 shapes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// N processes x (16 own buffers by fd and mapping + the same 6 shared buffers by fd),
    /// about 4 other fds each; the driver holds the 6 shared ones too.
    Dense,
    /// N processes x 120 other fds and 3 buffers by fd; the driver, as compositor, holds all 3N
    /// by fd and maps them.
    Phone,
    /// As `Phone`, but each client is forked after the compositor mapped all 3N buffers and
    /// keeps those mappings: (N + 1) x 3N dma-buf lines in `/proc/*/maps`.
    Inherited,
}

impl Shape {
    /// The shape `--shape` names.
    pub fn parse(name: &str) -> Option<Shape> {
        match name {
            "dense" => Some(Shape::Dense),
            "phone" => Some(Shape::Phone),
            "inherited" => Some(Shape::Inherited),
            _ => None,
        }
    }

    /// Its name in `--shape` and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Dense => "dense",
            Shape::Phone => "phone",
            Shape::Inherited => "inherited",
        }
    }
}

const DENSE_OWN: usize = 16;
const DENSE_SHARED: usize = 6;
const DENSE_OTHER: usize = 4;
const PHONE_BUFS: usize = 3;
const PHONE_OTHER: usize = 120;

/// What the workload holds: every scan must find exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    /// Buffers named `bench ...`.
    pub buffers: u64,
    /// Their total size.
    pub bytes: u64,
    /// Sum over buffers and processes of the fds referring to the buffer.
    pub fd_refs: u64,
    /// Sum over buffers and processes of the mappings (VMAs) of the buffer.
    pub map_refs: u64,
}

/// A running workload: the children and the driver's own buffers and mappings. Dropping it
/// kills and reaps the children.
pub struct Workload {
    /// What it holds.
    pub truth: Truth,
    children: Vec<i32>,
    _buffers: Vec<OwnedFd>,
    _maps: Vec<SharedMap>,
}

impl Workload {
    /// Builds the shape with `n` client processes; returns once every client holds its part.
    pub fn start(shape: Shape, n: usize) -> Workload {
        // The compositor holds 3N buffers by fd: past the usual soft limit of 1024 from N = 342.
        raise_fd_limit(PHONE_BUFS * n + 64);
        let alloc = Allocator::new();
        let (ready_rx, ready_tx) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe");
        let mut ready_rx = File::from(ready_rx);
        let mut children = Vec::with_capacity(n);
        let mut maps = Vec::new();
        let buffers: Vec<OwnedFd> = match shape {
            Shape::Dense => {
                (0..DENSE_SHARED).map(|i| allocate(&alloc, &format!("bench shared {i}"))).collect()
            }
            Shape::Phone | Shape::Inherited => {
                (0..PHONE_BUFS * n).map(|i| allocate(&alloc, &format!("bench {i}"))).collect()
            }
        };
        if shape == Shape::Inherited {
            maps = buffers.iter().map(map).collect();
        }
        for i in 0..n {
            let keep: Vec<RawFd> = match shape {
                Shape::Dense => buffers.iter().map(AsRawFd::as_raw_fd).collect(),
                Shape::Phone | Shape::Inherited => buffers[PHONE_BUFS * i..PHONE_BUFS * (i + 1)]
                    .iter()
                    .map(AsRawFd::as_raw_fd)
                    .collect(),
            };
            children.push(fork_child(|| {
                close_all_but(&[&keep[..], &[ready_tx.as_raw_fd()]].concat());
                client(shape, i, &ready_tx);
            }));
            let mut byte = [0u8];
            ready_rx.read_exact(&mut byte).expect("client ready");
        }
        if shape == Shape::Phone {
            maps = buffers.iter().map(map).collect();
        }
        let n = n as u64;
        let truth = match shape {
            Shape::Dense => {
                let buffers = DENSE_SHARED as u64 + DENSE_OWN as u64 * n;
                Truth {
                    buffers,
                    bytes: buffers * BUF_SIZE,
                    fd_refs: DENSE_SHARED as u64 * (n + 1) + DENSE_OWN as u64 * n,
                    map_refs: DENSE_OWN as u64 * n,
                }
            }
            Shape::Phone | Shape::Inherited => {
                let buffers = PHONE_BUFS as u64 * n;
                let inherited = if shape == Shape::Inherited { n * buffers } else { 0 };
                Truth {
                    buffers,
                    bytes: buffers * BUF_SIZE,
                    fd_refs: 2 * buffers,
                    map_refs: buffers + inherited,
                }
            }
        };
        Workload { truth, children, _buffers: buffers, _maps: maps }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        for &pid in &self.children {
            // SAFETY: plain syscalls on pids this process forked and has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &self.children {
            // SAFETY: as above; a null status pointer is allowed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

/// One client: what it holds beyond the fds it kept, then `r` on `ready` and sleep until killed.
fn client(shape: Shape, index: usize, ready: &OwnedFd) {
    let alloc = Allocator::new();
    let own: Vec<OwnedFd> = if shape == Shape::Dense {
        (0..DENSE_OWN).map(|b| allocate(&alloc, &format!("bench own {index}.{b}"))).collect()
    } else {
        Vec::new()
    };
    let own_maps: Vec<SharedMap> = own.iter().map(map).collect();
    drop(alloc);
    let other = other_fds(if shape == Shape::Dense { DENSE_OTHER } else { PHONE_OTHER });
    rustix::io::write(ready, b"r").expect("ready");
    let _held = (own, own_maps, other);
    loop {
        // SAFETY: pause has no preconditions; the driver ends this process with SIGKILL.
        unsafe { libc::pause() };
    }
}

fn allocate(alloc: &Allocator, name: &str) -> OwnedFd {
    alloc
        .allocate(&AllocRequest {
            heap: "system",
            size: BUF_SIZE,
            name: name.as_bytes(),
            heap_flags: 0,
        })
        .expect("allocate from the system heap")
        .into_owned_fd()
}

fn map(buf: &OwnedFd) -> SharedMap {
    SharedMap::new_range(buf.as_fd(), 0, BUF_SIZE as usize, MapAccess::ReadOnly).expect("mmap")
}

/// `count` other fds, a phone-like mix: pipes, stream and datagram sockets, files.
fn other_fds(count: usize) -> Vec<OwnedFd> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    while fds.len() < count {
        match fds.len() % 4 {
            0 => {
                let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe");
                fds.extend([r, w]);
            }
            1 => {
                let (a, b) = UnixStream::pair().expect("socketpair");
                fds.extend([a.into(), b.into()]);
            }
            2 => fds.push(UnixDatagram::unbound().expect("socket").into()),
            _ => fds.push(File::open("/proc/self/status").expect("open").into()),
        }
    }
    fds.truncate(count);
    fds
}

/// Runs `child` in a forked process that leaves through `_exit`, never through the caller's
/// frames; returns its pid.
fn fork_child(child: impl FnOnce()) -> i32 {
    // SAFETY: the driver is single-threaded, so no lock is held by a thread the child lacks.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
            // SAFETY: ends the child without running the parent's destructors a second time.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        pid => pid,
    }
}

/// Raises this process's soft fd limit to its hard limit, which must allow `fds`.
fn raise_fd_limit(fds: usize) {
    // SAFETY: getrlimit/setrlimit(2) with a pointer to a live local.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        assert!(limit.rlim_max >= fds as u64, "needs {fds} fds, hard limit {}", limit.rlim_max);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Closes every fd from 3 up except `keep`: the child drops what it inherited and was not
/// meant to hold. The closed fds' `OwnedFd` copies in the child are never dropped (it leaves
/// through `_exit`).
fn close_all_but(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > first {
            // SAFETY: close_range(2) on this process's own fd table.
            unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0) };
        }
        first = fd.saturating_add(1);
    }
}
