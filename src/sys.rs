//! The one module that talks to the kernel: dma-buf heap and dma-buf ioctls, `fstat`, `fstatfs`,
//! shared mappings, the `/proc` walk's directory, link and file reads, `kcmp` (whether two
//! threads share an fd table) and `uname`.
//!
//! It is written against the part of rustix that is the same in every copy AOSP ships (0.38.31
//! and 1.1.4, each with the features AOSP's build enables: see docs/aosp.md), and goes to libc
//! directly where those copies differ (the ioctl API) or lack a feature (`param`): that keeps one
//! source for Cargo and Soong builds.
//!
//! Everything here is a thin, safe wrapper that returns the kernel's own [`Errno`]: the callers
//! ([`crate::heap`], [`crate::name`], [`crate::buffer`]) know what was being attempted and turn an
//! errno into the right [`crate::Error`]; kernel tests use these wrappers directly to observe the
//! exact errno the kernel produced.
//!
//! Ioctl numbers are computed by pure `const fn`s over the generic `_IOC` layout (shared by x86,
//! arm, riscv and the other "asm-generic" architectures) so that host tests can check the exact
//! values for both pointer widths, not just the one the tests were built for.

use std::ffi::{c_void, CStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::mm::{MapFlags, ProtFlags};

pub use rustix::fs::RawDir;
pub use rustix::io::Errno;

/// Result of a raw kernel call: the value or the kernel's errno.
pub type SysResult<T> = std::result::Result<T, Errno>;

/// `f_type` reported by `fstatfs` for a dma-buf fd (`DMA_BUF_MAGIC`, "DMAB").
pub const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// `DMA_BUF_NAME_LEN`: the kernel's name buffer, including the terminating NUL.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// `_IOC` direction bit: userspace writes to the kernel.
const IOC_WRITE: u32 = 1;
/// `_IOC` direction bit: userspace reads from the kernel.
const IOC_READ: u32 = 2;

/// `_IOC(dir, ty, nr, size)` for the asm-generic layout: nr bits 0-7, type bits 8-15, size bits
/// 16-29, direction bits 30-31. `size` is masked to 14 bits exactly as the C macro does.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | (((size as u32) & 0x3fff) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `_IOW(ty, nr, T)` where `size_of::<T>() == size`.
pub const fn iow(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(ty, nr, T)` where `size_of::<T>() == size`.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// `struct dma_heap_allocation_data` from `<linux/dma-heap.h>`. Same 24-byte layout on 32- and
/// 64-bit userspace (all fields are fixed width, no padding).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct DmaHeapAllocationData {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}

/// `struct dma_buf_sync` from `<linux/dma-buf.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DmaBufSync {
    flags: u64,
}

/// `DMA_HEAP_IOCTL_ALLOC = _IOWR('H', 0, struct dma_heap_allocation_data)`.
pub const DMA_HEAP_IOCTL_ALLOC: u32 = iowr(b'H', 0, size_of::<DmaHeapAllocationData>());

/// `DMA_BUF_IOCTL_SYNC = _IOW('b', 0, struct dma_buf_sync)`.
pub const DMA_BUF_IOCTL_SYNC: u32 = iow(b'b', 0, size_of::<DmaBufSync>());

/// `DMA_BUF_SET_NAME_A = _IOW('b', 1, u32)`: what 32-bit userspace computes for the original
/// `_IOW('b', 1, const char *)`.
pub const DMA_BUF_SET_NAME_A: u32 = iow(b'b', 1, size_of::<u32>());

/// `DMA_BUF_SET_NAME_B = _IOW('b', 1, u64)`: what 64-bit userspace computes for the original
/// `_IOW('b', 1, const char *)`.
pub const DMA_BUF_SET_NAME_B: u32 = iow(b'b', 1, size_of::<u64>());

/// The `DMA_BUF_SET_NAME` number a userspace with `pointer_bytes`-wide pointers uses: the
/// original definition encodes `sizeof(const char *)`, so it is A on 32-bit and B on 64-bit.
/// Kernels since 5.10 accept both; 5.3 to 5.9 accept only the native one.
pub const fn set_name_opcode(pointer_bytes: usize) -> u32 {
    iow(b'b', 1, pointer_bytes)
}

/// `DMA_BUF_SET_NAME` for this build's pointer width.
pub const DMA_BUF_SET_NAME: u32 = set_name_opcode(size_of::<*const u8>());

/// `DMA_BUF_SYNC_READ`: the CPU will read.
pub const DMA_BUF_SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`: the CPU will write.
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_RW`.
pub const DMA_BUF_SYNC_RW: u64 = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
/// `DMA_BUF_SYNC_START`: begin of a CPU access window.
pub const DMA_BUF_SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`: end of a CPU access window.
pub const DMA_BUF_SYNC_END: u64 = 4;

/// Which `DMA_BUF_SET_NAME` number to issue. Only kernel tests need the non-native one (to show
/// the kernel accepts both); everything else uses [`set_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetNameIoctl {
    /// [`DMA_BUF_SET_NAME_A`].
    A,
    /// [`DMA_BUF_SET_NAME_B`].
    B,
}

impl SetNameIoctl {
    /// The number this build's pointer width implies ([`DMA_BUF_SET_NAME`]).
    pub const NATIVE: SetNameIoctl =
        if DMA_BUF_SET_NAME == DMA_BUF_SET_NAME_A { SetNameIoctl::A } else { SetNameIoctl::B };
}

/// Direction of CPU access announced with `DMA_BUF_IOCTL_SYNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAccess {
    /// [`DMA_BUF_SYNC_READ`].
    Read,
    /// [`DMA_BUF_SYNC_WRITE`].
    Write,
    /// [`DMA_BUF_SYNC_RW`].
    ReadWrite,
}

impl SyncAccess {
    /// The `DMA_BUF_SYNC_*` access bits.
    pub const fn bits(self) -> u64 {
        match self {
            SyncAccess::Read => DMA_BUF_SYNC_READ,
            SyncAccess::Write => DMA_BUF_SYNC_WRITE,
            SyncAccess::ReadWrite => DMA_BUF_SYNC_RW,
        }
    }
}

/// Whether a sync marks the start or the end of a CPU access window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPhase {
    /// [`DMA_BUF_SYNC_START`].
    Start,
    /// [`DMA_BUF_SYNC_END`].
    End,
}

/// Opens a heap device. Read-only is enough for `DMA_HEAP_IOCTL_ALLOC` and is what Android's
/// libdmabufheap does; `O_CLOEXEC` so a forking service never leaks heap fds.
pub fn open_heap(path: &Path) -> SysResult<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
}

/// `DMA_HEAP_IOCTL_ALLOC` of `len` bytes with `fd_flags = O_RDWR | O_CLOEXEC`: read-write so the
/// buffer can be mapped writable, close-on-exec so it never leaks into children by accident.
/// `heap_flags` are passed through unchanged (mainline heaps accept only 0).
pub fn heap_alloc(heap: BorrowedFd<'_>, len: u64, heap_flags: u64) -> SysResult<OwnedFd> {
    let mut data = DmaHeapAllocationData {
        len,
        fd: 0,
        fd_flags: (OFlags::RDWR | OFlags::CLOEXEC).bits(),
        heap_flags,
    };
    // SAFETY: the opcode is `_IOWR('H', 0, struct dma_heap_allocation_data)` and `data` has that
    // struct's exact layout; the kernel reads and writes only within it.
    unsafe { ioctl(heap, DMA_HEAP_IOCTL_ALLOC, std::ptr::from_mut(&mut data).cast())? };
    let raw = i32::try_from(data.fd).map_err(|_| Errno::BADF)?;
    // SAFETY: on success the kernel installed a new fd in our table and handed ownership to us;
    // nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `DMA_BUF_SET_NAME` with this build's native number.
pub fn set_name(buf: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    set_name_using(buf, name, SetNameIoctl::NATIVE)
}

/// `DMA_BUF_SET_NAME_A` or `_B`. The name is not validated here: kernel tests pass names the
/// library would refuse to see what the kernel itself does.
pub fn set_name_using(buf: BorrowedFd<'_>, name: &CStr, which: SetNameIoctl) -> SysResult<()> {
    let request = match which {
        SetNameIoctl::A => DMA_BUF_SET_NAME_A,
        SetNameIoctl::B => DMA_BUF_SET_NAME_B,
    };
    // SAFETY: both numbers take a pointer to a NUL-terminated string that the kernel only reads
    // (strndup_user), and `name` outlives the call.
    unsafe { ioctl(buf, request, name.as_ptr().cast_mut().cast()) }.map(drop)
}

/// `DMA_BUF_IOCTL_SYNC`: brackets CPU access so the exporter can flush or invalidate caches.
pub fn sync(buf: BorrowedFd<'_>, phase: SyncPhase, access: SyncAccess) -> SysResult<()> {
    let phase = match phase {
        SyncPhase::Start => DMA_BUF_SYNC_START,
        SyncPhase::End => DMA_BUF_SYNC_END,
    };
    let mut arg = DmaBufSync { flags: phase | access.bits() };
    // SAFETY: the opcode is `_IOW('b', 0, struct dma_buf_sync)` and `arg` has its layout; the
    // kernel only reads it.
    unsafe { ioctl(buf, DMA_BUF_IOCTL_SYNC, std::ptr::from_mut(&mut arg).cast()) }.map(drop)
}

/// `ioctl(2)` with a pointer argument, over libc: rustix's ioctl API changed between the 0.38 and
/// 1.x copies AOSP ships, and the `_IOC` numbers are computed above anyway.
///
/// # Safety
///
/// `arg` must point to what `request` makes the kernel read or write, valid for the call.
unsafe fn ioctl(fd: BorrowedFd<'_>, request: u32, arg: *mut c_void) -> SysResult<i32> {
    // The request is `unsigned long` in glibc and `int` in bionic and musl; both take the same
    // 32 bits, so the cast only changes the type.
    // SAFETY: the caller guarantees that `arg` is what `request` expects; `fd` is open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

/// The calling thread's `errno` after a failed libc call.
fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// The effective uid of this process: the uid `/proc`'s permission checks compare with.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This system's page size (`sysconf(_SC_PAGESIZE)`; AOSP's rustix 0.38 has no `param`).
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // POSIX guarantees the page size; 4096 is every Linux architecture's smallest.
    usize::try_from(size).unwrap_or(4096)
}

/// `O_RDONLY | O_DIRECTORY | O_CLOEXEC`: a directory opened only for `*at` lookups.
const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// Opens the directory `path` for `*at` lookups.
pub fn open_dir(path: &Path) -> SysResult<OwnedFd> {
    rustix::fs::openat(CWD, path, DIR_FLAGS, Mode::empty())
}

/// Opens the directory `path` relative to `dir` for `*at` lookups.
pub fn open_dir_at(dir: BorrowedFd<'_>, path: &CStr) -> SysResult<OwnedFd> {
    rustix::fs::openat(dir, path, DIR_FLAGS, Mode::empty())
}

/// Opens the file `path` relative to `dir` read-only.
pub fn open_file_at(dir: BorrowedFd<'_>, path: &CStr) -> SysResult<OwnedFd> {
    rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
}

/// `readlinkat` into `buf`: the length of the link text, truncated to `buf.len()` as the kernel
/// does. Over libc because rustix 0.38 and 1.x take different buffer types here.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `name` is NUL-terminated and `buf` is writable for `buf.len()` bytes, the most the
    // kernel writes; it writes no NUL.
    let n = unsafe {
        libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    usize::try_from(n).map_err(|_| last_errno())
}

/// `fstatat` of `name` relative to `dir`, following links (a `/proc/<pid>/fd/<n>` entry is the
/// open file), reduced to inode, size and device.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<FileStat> {
    FileStat::new(rustix::fs::statat(dir, name, AtFlags::empty())?)
}

/// Link count of `name` relative to `dir` (`fstatat`, following links). For a `/proc/<pid>/task`
/// directory it is 2 plus the number of threads.
pub fn link_count_at(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<u64> {
    let st = rustix::fs::statat(dir, name, AtFlags::empty())?;
    #[allow(clippy::useless_conversion)] // `st_nlink`'s width differs by architecture.
    Ok(u64::from(st.st_nlink))
}

/// One `read` appended to `buf`'s spare capacity (which the caller reserves): the byte count, 0
/// at end of file. Over libc because rustix 0.38 and 1.x spell a read into uninitialised memory
/// differently (`io::read_uninit` and `buffer::spare_capacity`).
pub fn read_append(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> SysResult<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the kernel writes at most `spare.len()` bytes into the spare capacity, which is
    // allocated and not aliased while `buf` is borrowed mutably.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    let n = usize::try_from(n).map_err(|_| last_errno())?;
    // SAFETY: the kernel initialised exactly `n <= spare.len()` bytes after the old length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Identity of an open file as the dma-buf code needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// `st_ino`: for a dma-buf, the buffer's unique inode (the key in fdinfo, maps, bufinfo).
    pub inode: u64,
    /// `st_size`: for a dma-buf, the buffer size after the kernel's page rounding.
    pub size: u64,
    /// `st_dev`: every dma-buf (since Linux 5.3) lives on one pseudo file system, so this is
    /// the same for all of them and tells them from files that only look like one.
    pub dev: u64,
}

impl FileStat {
    fn new(st: rustix::fs::Stat) -> SysResult<Self> {
        // A negative size never comes from a real file; treat it as a broken fd.
        let size = u64::try_from(st.st_size).map_err(|_| Errno::INVAL)?;
        #[allow(clippy::useless_conversion)] // `st_ino`/`st_dev` widths differ by architecture.
        Ok(FileStat { inode: u64::from(st.st_ino), size, dev: u64::from(st.st_dev) })
    }
}

/// If `name` relative to `dir` (followed: a `/proc/<pid>/fd/<n>` or `map_files/<range>` entry is
/// the open or mapped file) is a dma-buf by its file system's magic, its stat; `None` for any
/// other file. Both answers come from one `O_PATH` open, which neither opens the file for I/O
/// nor can be fooled by the fd being closed and reused in between.
pub fn dma_buf_stat_at(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<Option<FileStat>> {
    let file = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    if !is_dma_buf(file.as_fd())? {
        return Ok(None);
    }
    fstat(file.as_fd()).map(Some)
}

/// Whether `fd` stays open across `exec` (clears or sets `FD_CLOEXEC`): how tests and the
/// benchmark hand a buffer or pipe to a child they start.
pub fn set_inheritable(fd: BorrowedFd<'_>, inherit: bool) -> SysResult<()> {
    let flags = if inherit { rustix::io::FdFlags::empty() } else { rustix::io::FdFlags::CLOEXEC };
    rustix::io::fcntl_setfd(fd, flags)
}

/// `fstat`, reduced to inode and size.
pub fn fstat(fd: BorrowedFd<'_>) -> SysResult<FileStat> {
    FileStat::new(rustix::fs::fstat(fd)?)
}

/// Makes the C allocator hand large freed blocks back to the kernel instead of keeping them,
/// for a long-running service whose working set spikes (a 100,000-entry query) and falls back.
/// glibc otherwise raises its mmap and trim thresholds after each large free (up to 32 and
/// 64 MiB), and `malloc_trim` never trims the top of a thread's arena: measured, 27 MB stayed
/// held with 148 KB in use. Fixing the mmap threshold at 256 KiB turns that adjustment off.
/// And every thread allocates from one arena, the main one: `malloc_trim` gives back the free
/// top of the main arena only, and a thread arena's top is trimmed only by a free of 64 KiB or
/// more, so after 100,000 small entries died the binder and scan threads' arenas still kept
/// about 6 MiB resident (measured, BENCHMARKS.md). Call it before any thread starts.
/// bionic: `M_DECAY_TIME` 1, release freed pages promptly. Elsewhere nothing.
pub fn return_large_frees_to_the_kernel() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// glibc's `M_MMAP_THRESHOLD`.
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        /// glibc's `M_ARENA_MAX`.
        const M_ARENA_MAX: std::ffi::c_int = -8;
        // SAFETY: mallopt takes no pointers; it sets one of glibc's tunables.
        unsafe { mallopt(M_MMAP_THRESHOLD, 256 << 10) };
        // SAFETY: as above.
        unsafe { mallopt(M_ARENA_MAX, 1) };
    }
    #[cfg(target_os = "android")]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// bionic's `M_DECAY_TIME`.
        const M_DECAY_TIME: std::ffi::c_int = -100;
        // SAFETY: mallopt takes no pointers; it sets one of bionic's tunables.
        unsafe { mallopt(M_DECAY_TIME, 1) };
    }
}

/// Asks the C allocator to give memory it holds free back to the kernel, after a large working
/// set (a ledger or report of 100,000 entries) was dropped: otherwise the freed pages stay in
/// the process's RSS until it happens to reuse them. glibc: `malloc_trim(0)`; bionic:
/// `mallopt(M_PURGE, 0)`; elsewhere nothing. Best effort: returns nothing to check.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers; it walks glibc's own arenas under their locks.
        unsafe { malloc_trim(0) };
    }
    #[cfg(target_os = "android")]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// bionic's `M_PURGE`: release the free pages of every arena.
        const M_PURGE: std::ffi::c_int = -101;
        // SAFETY: mallopt takes no pointers; M_PURGE only releases pages bionic holds free.
        unsafe { mallopt(M_PURGE, 0) };
    }
}

/// Whether `fd` is a dma-buf: its file system is the dma-buf pseudo file system.
pub fn is_dma_buf(fd: BorrowedFd<'_>) -> SysResult<bool> {
    let st = rustix::fs::fstatfs(fd)?;
    #[allow(clippy::useless_conversion)] // `f_type`'s width differs by architecture.
    let fs_type = i128::from(st.f_type);
    Ok(fs_type == i128::from(DMA_BUF_MAGIC))
}

/// What a [`SharedMap`] may do with its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAccess {
    /// `PROT_READ`: enough to be counted as a holder, and to read.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// Why a [`SharedMap`] copy was refused before touching memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// `len` bytes at `offset` do not fit in a mapping of `map_len` bytes.
    OutOfBounds {
        /// Start of the requested range, from the start of the mapping.
        offset: usize,
        /// Length of the requested range.
        len: usize,
        /// Length of the mapping.
        map_len: usize,
    },
    /// A write to a [`MapAccess::ReadOnly`] mapping (it would fault).
    ReadOnly,
}

/// A `MAP_SHARED` mapping, unmapped on drop, in crosvm's `MemoryMapping` shape: the pages are
/// shared with other processes and devices that may write them at any time, so no Rust reference
/// to them is ever handed out (a `&[u8]` would promise they do not change, a `&mut [u8]` that
/// nothing else sees them). Bytes are copied in and out instead, with bounds checked against the
/// mapping. CPU-access sync belongs to [`crate::buffer::Mapping`].
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
    access: MapAccess,
}

// SAFETY: the mapping is plain memory owned by this value; every access copies through raw
// pointers (or atomics) and takes `&self`, exactly as it could from any thread.
unsafe impl Send for SharedMap {}
// SAFETY: as for `Send`: no method relies on being the only thread touching the pages, since
// other processes touch them anyway.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps the first `len` bytes of `fd`, readable and writable, shared with every other
    /// mapping of the file (that is what makes the pages count in everyone's Rss).
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> SysResult<Self> {
        Self::new_range(fd, 0, len, MapAccess::ReadWrite)
    }

    /// Maps `len` bytes of `fd` from byte `offset` (a multiple of the page size) with `access`.
    /// A partial mapping (`offset > 0` or `len` short of the file) shows in `/proc/<pid>/maps`
    /// with that offset and extent.
    pub fn new_range(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        access: MapAccess,
    ) -> SysResult<Self> {
        if len == 0 {
            return Err(Errno::INVAL);
        }
        let prot = match access {
            MapAccess::ReadOnly => ProtFlags::READ,
            MapAccess::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        };
        // SAFETY: a fresh mapping at an address the kernel picks cannot alias any Rust object.
        let addr = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, offset)?
        };
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or(Errno::INVAL)?;
        Ok(SharedMap { ptr, len, access })
    }

    /// Start address of the mapping, as `/proc/<pid>/maps` shows it; for comparison only.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings are refused by [`SharedMap::new`]; here for API symmetry with
    /// `len` (clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the mapping may do.
    pub fn access(&self) -> MapAccess {
        self.access
    }

    /// Copies `dst.len()` bytes at `offset` into `dst`.
    pub fn read_to(&self, offset: usize, dst: &mut [u8]) -> Result<(), MapError> {
        let src = self.range(offset, dst.len())?;
        // SAFETY: `range` checked that `src..src + dst.len()` lies in the mapping, readable while
        // `self` lives; `dst` is a distinct Rust buffer. The source may change under the copy
        // (other processes, devices); any byte value is a valid `u8`, so that is only stale data.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the mapping at `offset`.
    pub fn write_from(&self, offset: usize, src: &[u8]) -> Result<(), MapError> {
        let dst = self.writable_range(offset, src.len())?;
        // SAFETY: `writable_range` checked the range lies in a writable part of the mapping that
        // lives as long as `self`; no Rust reference points into it, so nothing observes the
        // write except through raw copies like this one.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), MapError> {
        let dst = self.writable_range(offset, len)?;
        // SAFETY: as in `write_from`: an in-bounds, writable range no Rust reference points into.
        unsafe { std::ptr::write_bytes(dst, byte, len) };
        Ok(())
    }

    /// The mapping as 64-bit atomics (`len / 8` of them), for counters that several processes
    /// update through their own mappings of one file; `None` for a read-only mapping.
    pub fn as_atomic_u64s(&self) -> Option<&[AtomicU64]> {
        self.writable_range(0, self.len).ok()?;
        // SAFETY: the mapping is page-aligned (so 8-byte aligned), readable and writable, and
        // lives as long as the returned borrow; `AtomicU64` allows shared mutation through `&`,
        // has `u64`'s layout, and every bit pattern is a valid value.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len / 8) })
    }

    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, MapError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: `offset <= self.len`, so the result stays within (or one past) the
                // mapping.
                Ok(unsafe { self.ptr.as_ptr().add(offset) })
            }
            _ => Err(MapError::OutOfBounds { offset, len, map_len: self.len }),
        }
    }

    fn writable_range(&self, offset: usize, len: usize) -> Result<*mut u8, MapError> {
        if self.access == MapAccess::ReadOnly {
            return Err(MapError::ReadOnly);
        }
        self.range(offset, len)
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and this is the only owner.
        // munmap of a valid range cannot fail; nothing useful to do if it did.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// What `uname(2)` tells of this system that a snapshot records: which kernel, which machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uname {
    /// Kernel release (`uname -r`), e.g. `6.12.57+deb13-amd64`.
    pub release: String,
    /// Host name (`uname -n`).
    pub nodename: String,
}

/// `uname(2)`; fields that are not UTF-8 are read lossily (they only label a snapshot).
pub fn uname() -> SysResult<Uname> {
    // SAFETY: `utsname` is plain old data (arrays of c_char): all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the duration of the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(last_errno());
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(Uname { release: field(&uts.release), nodename: field(&uts.nodename) })
}

/// `KCMP_FILES` from `<linux/kcmp.h>`.
const KCMP_FILES: libc::c_int = 2;

/// Whether tasks `a` and `b` (thread or process ids) share one fd table: `kcmp(KCMP_FILES)`.
/// Needs ptrace-read access to both (what reading their `fd/` needs) and CONFIG_KCMP (ENOSYS
/// without). A task that has exited has no table, so it shares none.
pub fn same_fd_table(a: i32, b: i32) -> SysResult<bool> {
    // SAFETY: kcmp takes five integer arguments and touches no memory of ours for KCMP_FILES.
    let ret = unsafe {
        libc::syscall(libc::SYS_kcmp, a as libc::pid_t, b as libc::pid_t, KCMP_FILES, 0u64, 0u64)
    };
    match ret {
        0 => Ok(true),
        1 | 2 => Ok(false),
        _ => Err(last_errno()),
    }
}

/// `DRM_IOCTL_BASE`, the ioctl type of every DRM ioctl.
const DRM_IOCTL_BASE: u8 = b'd';

/// `struct drm_mode_create_dumb` from `<drm/drm_mode.h>` (32 bytes on every ABI).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct DrmModeCreateDumb {
    height: u32,
    width: u32,
    bpp: u32,
    flags: u32,
    handle: u32,
    pitch: u32,
    size: u64,
}

/// `struct drm_prime_handle` from `<drm/drm.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct DrmPrimeHandle {
    handle: u32,
    flags: u32,
    fd: i32,
}

/// `struct drm_gem_close` from `<drm/drm.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct DrmGemClose {
    handle: u32,
    pad: u32,
}

/// `DRM_IOCTL_GEM_CLOSE = DRM_IOW(0x09, struct drm_gem_close)`.
pub const DRM_IOCTL_GEM_CLOSE: u32 = iow(DRM_IOCTL_BASE, 0x09, size_of::<DrmGemClose>());

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD = DRM_IOWR(0x2d, struct drm_prime_handle)`.
pub const DRM_IOCTL_PRIME_HANDLE_TO_FD: u32 =
    iowr(DRM_IOCTL_BASE, 0x2d, size_of::<DrmPrimeHandle>());

/// `DRM_IOCTL_PRIME_FD_TO_HANDLE = DRM_IOWR(0x2e, struct drm_prime_handle)`.
pub const DRM_IOCTL_PRIME_FD_TO_HANDLE: u32 =
    iowr(DRM_IOCTL_BASE, 0x2e, size_of::<DrmPrimeHandle>());

/// `DRM_IOCTL_MODE_CREATE_DUMB = DRM_IOWR(0xb2, struct drm_mode_create_dumb)`.
pub const DRM_IOCTL_MODE_CREATE_DUMB: u32 =
    iowr(DRM_IOCTL_BASE, 0xb2, size_of::<DrmModeCreateDumb>());

/// A GEM object made by `DRM_IOCTL_MODE_CREATE_DUMB`, as the kernel sized it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumbBuffer {
    /// GEM handle, valid on the DRM fd that created it.
    pub handle: u32,
    /// Bytes per row.
    pub pitch: u32,
    /// Size in bytes, after the driver's rounding.
    pub size: u64,
}

/// Opens a DRM device node read-write, close-on-exec.
pub fn open_drm(path: &Path) -> SysResult<OwnedFd> {
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
}

/// A DRM ioctl whose argument the kernel reads and writes in place.
///
/// # Safety
///
/// `opcode` must be a number whose argument struct has `T`'s exact layout.
unsafe fn drm_ioctl<T>(dev: BorrowedFd<'_>, opcode: u32, arg: &mut T) -> SysResult<()> {
    // SAFETY: the caller guarantees that `arg` has the layout `opcode` names; it outlives the
    // call.
    unsafe { ioctl(dev, opcode, std::ptr::from_mut(arg).cast()) }.map(drop)
}

/// `DRM_IOCTL_MODE_CREATE_DUMB`: a `width` x `height` buffer of `bpp` bits per pixel. Virtual
/// drivers such as vgem make these without any display hardware, which is what lets kernels
/// without dma-buf heaps still produce dma-bufs (see [`drm_prime_export`]).
pub fn drm_create_dumb(
    dev: BorrowedFd<'_>,
    width: u32,
    height: u32,
    bpp: u32,
) -> SysResult<DumbBuffer> {
    let mut arg = DrmModeCreateDumb { height, width, bpp, ..Default::default() };
    // SAFETY: the opcode is `DRM_IOWR(0xb2, struct drm_mode_create_dumb)` and `arg` has its
    // layout.
    unsafe { drm_ioctl(dev, DRM_IOCTL_MODE_CREATE_DUMB, &mut arg)? };
    Ok(DumbBuffer { handle: arg.handle, pitch: arg.pitch, size: arg.size })
}

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD` with `DRM_CLOEXEC | DRM_RDWR` (the `O_` values): exports GEM
/// object `handle` as a dma-buf that can be mapped writable and never leaks into children.
pub fn drm_prime_export(dev: BorrowedFd<'_>, handle: u32) -> SysResult<OwnedFd> {
    let flags = (OFlags::RDWR | OFlags::CLOEXEC).bits();
    let mut arg = DrmPrimeHandle { handle, flags, fd: -1 };
    // SAFETY: the opcode is `DRM_IOWR(0x2d, struct drm_prime_handle)` and `arg` has its layout.
    unsafe { drm_ioctl(dev, DRM_IOCTL_PRIME_HANDLE_TO_FD, &mut arg)? };
    if arg.fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: on success the kernel installed a new fd in our table and handed ownership to us;
    // nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(arg.fd) })
}

/// `DRM_IOCTL_PRIME_FD_TO_HANDLE`: imports dma-buf `buf` into the device and returns its GEM
/// handle. Importing another exporter's buffer attaches the device to it (`dma_buf_attach`)
/// until the handle is closed with [`drm_gem_close`]; a device's own buffer comes back as the
/// same object, without an attachment.
pub fn drm_prime_import(dev: BorrowedFd<'_>, buf: BorrowedFd<'_>) -> SysResult<u32> {
    let fd = buf.as_raw_fd();
    let mut arg = DrmPrimeHandle { handle: 0, flags: 0, fd };
    // SAFETY: the opcode is `DRM_IOWR(0x2e, struct drm_prime_handle)` and `arg` has its layout.
    unsafe { drm_ioctl(dev, DRM_IOCTL_PRIME_FD_TO_HANDLE, &mut arg)? };
    Ok(arg.handle)
}

/// `DRM_IOCTL_GEM_CLOSE`: drops the device's handle `handle` (and with an imported buffer's last
/// handle, its attachment).
pub fn drm_gem_close(dev: BorrowedFd<'_>, handle: u32) -> SysResult<()> {
    let mut arg = DrmGemClose { handle, pad: 0 };
    // SAFETY: the opcode is `DRM_IOW(0x09, struct drm_gem_close)` and `arg` has its layout; the
    // kernel only reads it.
    unsafe { drm_ioctl(dev, DRM_IOCTL_GEM_CLOSE, &mut arg) }
}

/// A plain memfd for unit tests: a real file that is not a dma-buf, and needs no source tree
/// (atest runs unit tests in /data/local/tmp).
#[cfg(test)]
pub(crate) fn test_memfd() -> OwnedFd {
    rustix::fs::memfd_create("not-a-dma-buf", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd")
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn set_name_numbers_per_pointer_width() {
        assert_eq!(DMA_BUF_SET_NAME_A, 0x4004_6201);
        assert_eq!(DMA_BUF_SET_NAME_B, 0x4008_6201);
        assert_eq!(set_name_opcode(4), 0x4004_6201);
        assert_eq!(set_name_opcode(8), 0x4008_6201);
    }

    #[test]
    fn native_set_name_matches_pointer_width() {
        let expected = if cfg!(target_pointer_width = "64") { 0x4008_6201 } else { 0x4004_6201 };
        assert_eq!(DMA_BUF_SET_NAME, expected);
        let native =
            if cfg!(target_pointer_width = "64") { SetNameIoctl::B } else { SetNameIoctl::A };
        assert_eq!(SetNameIoctl::NATIVE, native);
    }

    #[test]
    fn heap_alloc_and_sync_numbers() {
        assert_eq!(size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(DMA_HEAP_IOCTL_ALLOC, 0xc018_4800);
        assert_eq!(DMA_BUF_IOCTL_SYNC, 0x4008_6200);
    }

    #[test]
    fn sync_flag_values() {
        assert_eq!(SyncAccess::Read.bits(), 1);
        assert_eq!(SyncAccess::Write.bits(), 2);
        assert_eq!(SyncAccess::ReadWrite.bits(), 3);
        assert_eq!(DMA_BUF_SYNC_START, 0);
        assert_eq!(DMA_BUF_SYNC_END, 4);
    }

    fn memfd() -> std::fs::File {
        test_memfd().into()
    }

    #[test]
    fn ordinary_files_are_not_dma_bufs() {
        assert_eq!(is_dma_buf(memfd().as_fd()), Ok(false));
    }

    #[test]
    fn fstat_reports_inode_and_size() {
        use std::io::Write;
        let mut file = memfd();
        file.write_all(b"12345").expect("write");
        let meta = file.metadata().expect("metadata");
        let st = fstat(file.as_fd()).expect("fstat");
        assert_eq!(st.size, 5);
        assert_eq!(st.inode, std::os::unix::fs::MetadataExt::ino(&meta));
    }

    fn gettid() -> i32 {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        link.file_name().and_then(|t| t.to_str()?.parse().ok()).expect("<pid>/task/<tid>")
    }

    #[test]
    fn fd_tables_compare() {
        let me = std::process::id() as i32;
        assert_eq!(same_fd_table(me, me), Ok(true));
        let shared = std::thread::spawn(move || same_fd_table(me, gettid())).join();
        assert_eq!(shared.expect("thread"), Ok(true));
        // `join` returns when the kernel clears the thread's tid, which it does before it
        // releases the thread's files: the table goes a moment later.
        let gone = std::thread::spawn(gettid).join().expect("thread");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while same_fd_table(me, gone) == Ok(true) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(same_fd_table(me, gone), Err(Errno::SRCH));
    }

    #[test]
    fn set_name_on_a_memfd_is_enotty() {
        assert_eq!(set_name(memfd().as_fd(), c"X"), Err(Errno::NOTTY));
    }

    #[test]
    fn read_append_fills_spare_capacity() {
        use std::io::{Seek, Write};
        let mut file = memfd();
        file.write_all(b"abc").expect("write");
        file.rewind().expect("rewind");
        let mut buf = Vec::with_capacity(2);
        buf.push(b'>');
        assert_eq!(read_append(file.as_fd(), &mut buf), Ok(1));
        assert_eq!(buf, b">a");
        buf.reserve(16);
        assert_eq!(read_append(file.as_fd(), &mut buf), Ok(2));
        assert_eq!(read_append(file.as_fd(), &mut buf), Ok(0));
        assert_eq!(buf, b">abc");
    }

    #[test]
    fn readlink_at_truncates_like_the_kernel() {
        let dir = open_dir(Path::new("/proc/self")).expect("open /proc/self");
        let mut buf = [0u8; 64];
        let n = readlink_at(dir.as_fd(), c"exe", &mut buf).expect("readlink");
        assert_eq!(buf[0], b'/');
        let mut short = [0u8; 3];
        assert_eq!(readlink_at(dir.as_fd(), c"exe", &mut short), Ok(3));
        assert_eq!(short, buf[..3]);
        assert!(n > 3);
        assert_eq!(readlink_at(dir.as_fd(), c"no-such-link", &mut buf), Err(Errno::NOENT));
    }

    #[test]
    fn drm_numbers() {
        assert_eq!(size_of::<DrmModeCreateDumb>(), 32);
        assert_eq!(size_of::<DrmPrimeHandle>(), 12);
        assert_eq!(DRM_IOCTL_GEM_CLOSE, 0x4008_6409);
        assert_eq!(DRM_IOCTL_PRIME_HANDLE_TO_FD, 0xc00c_642d);
        assert_eq!(DRM_IOCTL_PRIME_FD_TO_HANDLE, 0xc00c_642e);
        assert_eq!(DRM_IOCTL_MODE_CREATE_DUMB, 0xc020_64b2);
    }
}
