//! dma-buf heaps: discovery and named allocation.
//!
//! [`Allocator::allocate`] validates everything it can before touching the kernel (so callers get
//! a precise reason rather than a bare EINVAL), allocates, and names the buffer before returning
//! it: a buffer never exists unnamed outside this function, which is what makes the purpose name
//! trustworthy for accounting.
//!
//! Heap flags are passed through unchanged. Mainline heaps accept only 0 and answer anything else
//! with EINVAL (reported as [`Error::InvalidArgument`]), but vendor heaps on Android define their
//! own flags, and only the heap knows which ones it takes.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::buffer::DmaBuf;
use crate::error::SizeError;
use crate::name::BufName;
use crate::sys::{self, Errno};
use crate::text::escape;
use crate::{units, Error, Result};

/// Where the kernel puts heap devices.
pub const HEAP_DIR: &str = "/dev/dma_heap";

/// Default largest single allocation, 1 GiB. Larger than any one graphics, camera or codec
/// buffer in practice, yet small enough that a typo (`--size 64G`) cannot drive the system heap,
/// which allocates page by page, into the OOM killer. Use [`Allocator::with_dir`] to change it.
/// This is the direct path's cap (`dmabufctl alloc`, run by someone who may open the heap
/// anyway); the service defaults to 256 MiB, a quarter of its default per-uid quota, because it
/// allocates on behalf of any uid.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// One allocation: from which heap, how many bytes, under which purpose name.
#[derive(Debug, Clone, Copy)]
pub struct AllocRequest<'a> {
    /// Heap name, a plain file name under the heap directory (`system`, `reserved`, ...).
    pub heap: &'a str,
    /// Requested bytes; rounded up to whole pages by the kernel.
    pub size: u64,
    /// Purpose name as raw bytes (validated by [`crate::name::validate`]), so front ends can pass
    /// along whatever they received without converting it first.
    pub name: &'a [u8],
    /// Heap-specific flags (0 on mainline heaps).
    pub heap_flags: u64,
}

impl<'a> AllocRequest<'a> {
    /// A request as the wire carries it (AIDL `AllocationRequest`, which has only signed
    /// `long`s): the size must not be negative, the heap flags are the same 64 bits read as
    /// unsigned. The one conversion from the wire, shared by the service and its fuzz target.
    pub fn from_wire(
        heap: &'a str,
        size: i64,
        name: &'a [u8],
        heap_flags: i64,
    ) -> std::result::Result<Self, SizeError> {
        let size = units::size_from_i64(size)?;
        Ok(AllocRequest {
            heap,
            size,
            name,
            heap_flags: u64::from_ne_bytes(heap_flags.to_ne_bytes()),
        })
    }

    /// The inverse of [`AllocRequest::from_wire`] for the signed fields, `(size, heap_flags)`:
    /// what a client puts on the wire. A size above `i64::MAX` cannot travel.
    pub fn wire_size_and_flags(&self) -> std::result::Result<(i64, i64), SizeError> {
        let size = i64::try_from(self.size).map_err(|_| SizeError::Overflow(self.size))?;
        Ok((size, i64::from_ne_bytes(self.heap_flags.to_ne_bytes())))
    }
}

/// A request that passed every check that needs no kernel: what [`Allocator::allocate_checked`]
/// hands to the heap. Front ends get one from [`Allocator::check`] to refuse a bad request with a
/// precise error, and to know what the kernel will charge, before they spend anything (quota, a
/// syscall). The fields are private so that only [`Allocator::check`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct CheckedRequest<'a> {
    heap: &'a str,
    size: u64,
    charged: u64,
    name: BufName,
    heap_flags: u64,
}

impl<'a> CheckedRequest<'a> {
    /// Heap name, a plain file name.
    pub fn heap(&self) -> &'a str {
        self.heap
    }

    /// Requested bytes, not 0.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What the kernel will allocate: the size rounded up to whole pages, at most the maximum.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// The purpose name.
    pub fn name(&self) -> &BufName {
        &self.name
    }

    /// Heap-specific flags, unchanged.
    pub fn heap_flags(&self) -> u64 {
        self.heap_flags
    }
}

/// Allocates named dma-bufs from the heaps in one directory.
#[derive(Debug, Clone)]
pub struct Allocator {
    dir: PathBuf,
    max_size: u64,
}

impl Default for Allocator {
    fn default() -> Self {
        Self::new()
    }
}

impl Allocator {
    /// The system's heaps ([`HEAP_DIR`]) with [`DEFAULT_MAX_SIZE`].
    pub fn new() -> Self {
        Self::with_dir(HEAP_DIR, DEFAULT_MAX_SIZE)
    }

    /// Heaps in `dir` (tests use a directory of fake heap files), refusing sizes above `max_size`.
    pub fn with_dir(dir: impl Into<PathBuf>, max_size: u64) -> Self {
        Allocator { dir: dir.into(), max_size }
    }

    /// Names of the available heaps, sorted. A missing heap directory means a kernel without
    /// heaps: no heaps, not an error.
    pub fn heaps(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", self.dir.display()), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("reading {}", self.dir.display()), e))?;
            // A non-UTF-8 heap name could not be asked for by name anyway.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Checks a request without any I/O. Errors are reported in this order: heap name, purpose
    /// name, size. [`Allocator::allocate`] starts with this, so a front end that calls it first
    /// refuses exactly what the allocator would, then hands the result to
    /// [`Allocator::allocate_checked`].
    pub fn check<'a>(&self, req: &AllocRequest<'a>) -> Result<CheckedRequest<'a>> {
        let heap = validate_heap_name(req.heap)?;
        let name = BufName::new(req.name)?;
        let charged = self.check_size(req.size)?;
        Ok(CheckedRequest { heap, size: req.size, charged, name, heap_flags: req.heap_flags })
    }

    /// Validates the request ([`Allocator::check`]), allocates from the heap and names the buffer.
    pub fn allocate(&self, req: &AllocRequest<'_>) -> Result<DmaBuf> {
        self.allocate_checked(&self.check(req)?)
    }

    /// Allocates a request [`Allocator::check`] already passed (a front end that checked first,
    /// to reserve quota, does not pay for the checks twice) and names the buffer.
    pub fn allocate_checked(&self, req: &CheckedRequest<'_>) -> Result<DmaBuf> {
        let heap = req.heap;
        let path = self.dir.join(heap);
        let heap_fd = match sys::open_heap(&path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(self.unknown_heap(heap)),
            Err(Errno::ACCESS | Errno::PERM) => {
                return Err(Error::PermissionDenied(format!("opening {}", path.display())))
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let fd =
            sys::heap_alloc(heap_fd.as_fd(), req.size, req.heap_flags).map_err(|e| match e {
                // The file exists but is no heap (a stray file in a test directory, a new kind of
                // device node): as far as allocation goes, there is no such heap.
                Errno::NOTTY => self.unknown_heap(heap),
                other => alloc_error(other, heap, req.size, req.heap_flags),
            })?;
        let buf = DmaBuf::from_kernel(fd)?;
        buf.set_name(&req.name)?;
        Ok(buf)
    }

    /// Size rules, cheapest first. Rounding is checked with this system's page size because that
    /// is what the kernel rounds to; a size that would wrap must never reach it (it would wrap to
    /// 0 there). Returns the rounded size, what the kernel will allocate.
    fn check_size(&self, size: u64) -> std::result::Result<u64, SizeError> {
        if size == 0 {
            return Err(SizeError::Zero);
        }
        let rounded = units::round_up_to_page(size)?;
        if rounded > self.max_size {
            return Err(SizeError::TooLarge { size, max: self.max_size });
        }
        Ok(rounded)
    }

    fn unknown_heap(&self, heap: &str) -> Error {
        // Listing is best effort: the error is about the heap, not about the directory.
        let available = self.heaps().unwrap_or_default();
        Error::UnknownHeap { heap: heap.to_string(), available }
    }
}

/// Maps a `DMA_HEAP_IOCTL_ALLOC` errno to the library's error. ENOMEM is what heaps that can fail
/// cleanly report (CMA, carveouts); the system heap on 6.12 never does: a request beyond what it
/// can find invokes the OOM killer on the caller instead, which is why sizes are capped.
pub fn alloc_error(errno: Errno, heap: &str, size: u64, heap_flags: u64) -> Error {
    match errno {
        Errno::NOMEM => Error::OutOfMemory { heap: heap.to_string(), size },
        Errno::INVAL => Error::InvalidArgument(format!(
            "heap \"{}\" refused {size} bytes with heap flags {heap_flags:#x}",
            escape(heap.as_bytes())
        )),
        other => Error::io(
            format!("DMA_HEAP_IOCTL_ALLOC on heap \"{}\"", escape(heap.as_bytes())),
            other,
        ),
    }
}

/// Longest file name Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// A heap name must be a plain file name, so that no request can reach outside the heap
/// directory (`../../dev/mem`) or open the directory itself, and no longer than a file name can
/// be: otherwise opening it fails with ENAMETOOLONG, an I/O error instead of a refused argument.
pub fn validate_heap_name(heap: &str) -> Result<&str> {
    if heap.len() > NAME_MAX {
        return Err(Error::InvalidArgument(format!(
            "heap name is {} bytes; file names are at most {NAME_MAX}",
            heap.len()
        )));
    }
    if heap.is_empty() || heap == "." || heap == ".." || heap.contains('/') || heap.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "heap name \"{}\" is not a plain file name",
            escape(heap.as_bytes())
        )));
    }
    Ok(heap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NameError;

    /// A directory with fake heap files, removed on drop.
    struct FakeHeaps(PathBuf);

    impl FakeHeaps {
        fn new(tag: &str, heaps: &[&str]) -> Self {
            let dir =
                std::env::temp_dir().join(format!("dmabufd-heap-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create fake heap dir");
            for heap in heaps {
                std::fs::write(dir.join(heap), b"").expect("create fake heap");
            }
            FakeHeaps(dir)
        }
    }

    impl Drop for FakeHeaps {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn req<'a>(heap: &'a str, size: u64, name: &'a str) -> AllocRequest<'a> {
        AllocRequest { heap, size, name: name.as_bytes(), heap_flags: 0 }
    }

    #[test]
    fn heaps_are_listed_sorted() {
        let dir = FakeHeaps::new("list", &["system", "reserved", "system-uncached"]);
        let alloc = Allocator::with_dir(&dir.0, DEFAULT_MAX_SIZE);
        assert_eq!(alloc.heaps().expect("list"), ["reserved", "system", "system-uncached"]);
    }

    #[test]
    fn missing_heap_dir_means_no_heaps() {
        let alloc = Allocator::with_dir("/nonexistent/dma_heap", DEFAULT_MAX_SIZE);
        assert_eq!(alloc.heaps().expect("list"), Vec::<String>::new());
        let err = alloc.allocate(&req("system", 4096, "X")).expect_err("no heaps");
        assert!(
            matches!(err, Error::UnknownHeap { ref heap, ref available } if heap == "system" && available.is_empty())
        );
        assert_eq!(err.to_string(), "unknown heap \"system\"; available heaps: none");
    }

    #[test]
    fn unknown_heap_lists_available_heaps() {
        let dir = FakeHeaps::new("unknown", &["system", "reserved"]);
        let alloc = Allocator::with_dir(&dir.0, DEFAULT_MAX_SIZE);
        let err = alloc.allocate(&req("carveout", 4096, "X")).expect_err("unknown heap");
        match &err {
            Error::UnknownHeap { heap, available } => {
                assert_eq!(heap, "carveout");
                assert_eq!(available, &["reserved", "system"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.to_string(), "unknown heap \"carveout\"; available heaps: reserved, system");
    }

    #[test]
    fn a_file_that_is_no_heap_device_is_an_unknown_heap() {
        let dir = FakeHeaps::new("notty", &["system"]);
        let alloc = Allocator::with_dir(&dir.0, DEFAULT_MAX_SIZE);
        let err = alloc.allocate(&req("system", 4096, "X")).expect_err("regular file");
        assert!(matches!(err, Error::UnknownHeap { .. }), "{err:?}");
    }

    #[test]
    fn heap_names_must_be_plain_file_names() {
        for bad in ["", ".", "..", "../system", "/dev/dma_heap/system", "a/b", "system/", "a\0b"] {
            assert!(matches!(validate_heap_name(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        for good in ["system", "system-uncached", "reserved", "...", ".hidden", "linux,cma"] {
            assert_eq!(validate_heap_name(good).ok(), Some(good));
        }
        let longest = "h".repeat(NAME_MAX);
        assert_eq!(validate_heap_name(&longest).ok(), Some(longest.as_str()));
        // Found by the alloc_request fuzz target: one byte more made opening fail with
        // ENAMETOOLONG, reported as an I/O error.
        let dir = FakeHeaps::new("long", &["system"]);
        let alloc = Allocator::with_dir(&dir.0, DEFAULT_MAX_SIZE);
        let too_long = "h".repeat(NAME_MAX + 1);
        match alloc.allocate(&req(&too_long, 4096, "X")) {
            Err(Error::InvalidArgument(msg)) => {
                assert_eq!(msg, "heap name is 256 bytes; file names are at most 255")
            }
            other => panic!("unexpected {other:?}"),
        }
        // Checked before anything is opened: even an existing directory entry cannot be escaped to.
        let dir = FakeHeaps::new("escape", &["system"]);
        let alloc = Allocator::with_dir(dir.0.join("sub"), DEFAULT_MAX_SIZE);
        assert!(matches!(
            alloc.allocate(&req("../system", 4096, "X")),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn size_rules() {
        let page = units::page_size();
        let alloc = Allocator::with_dir("/nonexistent", 1 << 20);
        let size_err = |size| match alloc.allocate(&req("system", size, "X")) {
            Err(Error::Size(e)) => Some(e),
            _ => None,
        };
        assert_eq!(size_err(0), Some(SizeError::Zero));
        assert_eq!(
            size_err((1 << 20) + 1),
            Some(SizeError::TooLarge { size: (1 << 20) + 1, max: 1 << 20 })
        );
        assert_eq!(size_err(u64::MAX), Some(SizeError::Overflow(u64::MAX)));
        assert_eq!(size_err(u64::MAX - page + 2), Some(SizeError::Overflow(u64::MAX - page + 2)));
        // At the limit, and rounding up to it: past validation (the heap does not exist).
        assert_eq!(size_err(1 << 20), None);
        assert_eq!(size_err((1 << 20) - page + 1), None);
        let unlimited = Allocator::with_dir("/nonexistent", u64::MAX);
        assert!(matches!(
            unlimited.allocate(&req("system", u64::MAX - page + 1, "X")),
            Err(Error::UnknownHeap { .. })
        ));
    }

    #[test]
    fn alloc_errno_mapping() {
        assert!(matches!(
            alloc_error(Errno::NOMEM, "system", 4096, 0),
            Error::OutOfMemory { ref heap, size: 4096 } if heap == "system"
        ));
        assert_eq!(
            alloc_error(Errno::INVAL, "system", 4096, 1).to_string(),
            "invalid argument: heap \"system\" refused 4096 bytes with heap flags 0x1"
        );
        assert!(matches!(alloc_error(Errno::INTR, "system", 4096, 0), Error::Io { .. }));
    }

    #[test]
    fn check_reports_the_first_broken_rule_and_the_charged_size() {
        let page = units::page_size();
        let alloc = Allocator::with_dir("/nonexistent", 1 << 20);
        let ok = alloc
            .check(&AllocRequest { heap: "system", size: page + 1, name: b"CAM", heap_flags: 7 })
            .expect("valid");
        assert_eq!(
            (ok.heap, ok.size, ok.charged, ok.name.as_str(), ok.heap_flags),
            ("system", page + 1, 2 * page, "CAM", 7)
        );
        assert!(matches!(alloc.check(&req("../x", 0, "")), Err(Error::InvalidArgument(_))));
        assert!(matches!(alloc.check(&req("system", 0, "")), Err(Error::Name(NameError::Empty))));
        assert!(matches!(alloc.check(&req("system", 0, "X")), Err(Error::Size(SizeError::Zero))));
    }

    #[test]
    fn wire_form_keeps_every_flag_bit_and_refuses_negative_sizes() {
        for flags in [0, 1, i64::MAX, i64::MIN, -1] {
            let req = AllocRequest::from_wire("system", 4096, b"X", flags).expect("valid");
            assert_eq!(req.heap_flags, u64::from_ne_bytes(flags.to_ne_bytes()));
            assert_eq!(req.wire_size_and_flags(), Ok((4096, flags)));
        }
        let top = AllocRequest::from_wire("system", 1, b"X", i64::MIN).expect("valid");
        assert_eq!(top.heap_flags, 1 << 63);
        assert_eq!(
            AllocRequest::from_wire("system", -1, b"X", 0).map(|r| r.size),
            Err(SizeError::Negative(-1))
        );
        let huge = AllocRequest { heap: "system", size: u64::MAX, name: b"X", heap_flags: 0 };
        assert_eq!(huge.wire_size_and_flags(), Err(SizeError::Overflow(u64::MAX)));
        let max = AllocRequest::from_wire("system", i64::MAX, b"X", 0).expect("valid");
        assert_eq!(max.wire_size_and_flags(), Ok((i64::MAX, 0)));
    }

    #[test]
    fn names_are_validated_before_the_heap_is_opened() {
        let alloc = Allocator::with_dir("/nonexistent", DEFAULT_MAX_SIZE);
        assert!(matches!(
            alloc.allocate(&req("system", 4096, "")),
            Err(Error::Name(NameError::Empty))
        ));
        assert!(matches!(
            alloc.allocate(&req("system", 4096, "a\nb")),
            Err(Error::Name(NameError::Control { offset: 1, byte: b'\n' }))
        ));
    }
}
