//! Allocation requests as the service receives them (AIDL `AllocationRequest`: heap, size, name,
//! heap flags), through the same validation the service runs, up to but not including the
//! `DMA_HEAP_IOCTL_ALLOC` ioctl: `AllocRequest::from_wire`, then `heap::Allocator::check` (heap
//! name, purpose name, size rules), then `Allocator::allocate` against an empty heap directory,
//! which must stop at opening the heap.
//!
//! Asserts: the verdict equals the rules restated directly (first broken rule wins, in the
//! documented order); the wire form round-trips (`wire_size_and_flags`), so heap flags keep all
//! 64 bits; an accepted request keeps its heap, name and flags unchanged, names a plain
//! file, and charges whole pages, at least the size, less than one page more, at most the
//! maximum; `allocate` refuses exactly what `check` refuses and otherwise reports the heap
//! unknown (never an I/O error, never reaching outside the heap directory).
#![no_main]

use std::sync::OnceLock;

use dmabufd::error::SizeError;
use dmabufd::heap::{self, AllocRequest, Allocator, DEFAULT_MAX_SIZE};
use dmabufd::{name, units, Error};
use dmabufd_fuzz::AllocInput;
use libfuzzer_sys::fuzz_target;

/// An allocator over an empty directory: every valid request fails at open with "unknown heap".
fn allocator() -> &'static Allocator {
    static ALLOCATOR: OnceLock<Allocator> = OnceLock::new();
    ALLOCATOR.get_or_init(|| {
        let dir = std::env::temp_dir().join("dmabufd-fuzz-no-heaps");
        std::fs::create_dir_all(&dir).expect("create the empty heap directory");
        Allocator::with_dir(dir, DEFAULT_MAX_SIZE)
    })
}

fuzz_target!(|data: &[u8]| {
    let input = AllocInput::decode(data);
    // AIDL strings arrive as UTF-16 and are decoded before the service sees them.
    let Ok(heap) = std::str::from_utf8(input.heap) else {
        return;
    };
    let req = match AllocRequest::from_wire(heap, input.size, input.name, input.heap_flags) {
        Ok(req) => req,
        Err(e) => {
            assert!(input.size < 0);
            assert_eq!(e, SizeError::Negative(input.size));
            return;
        }
    };
    assert_eq!(req.wire_size_and_flags(), Ok((input.size, input.heap_flags)));
    let size = req.size;
    let page = units::page_size();
    let checked = allocator().check(&req);
    let expected = expected_refusal(heap, input.name, size, page);
    match &checked {
        Ok(c) => {
            assert!(expected.is_none(), "{req:?} accepted, expected {expected:?}");
            assert_eq!((c.heap(), c.size(), c.heap_flags()), (heap, size, req.heap_flags));
            assert_eq!(c.name().as_str().as_bytes(), input.name);
            assert!(c.charged() % page == 0 && c.charged() >= size && c.charged() - size < page);
            assert!(c.charged() <= DEFAULT_MAX_SIZE);
            assert!(!heap.is_empty() && heap != "." && heap != "..");
            assert!(!heap.contains('/') && !heap.contains('\0'));
        }
        Err(e) => assert_eq!(Some(format!("{e:?}")), expected, "{req:?}"),
    }
    match (allocator().allocate(&req), checked) {
        (Ok(buf), _) => panic!("allocated {buf:?} from an empty heap directory"),
        (Err(e), Err(refusal)) => assert_eq!(format!("{e:?}"), format!("{refusal:?}")),
        (Err(Error::UnknownHeap { heap: h, available }), Ok(_)) => {
            assert_eq!(h, heap);
            assert!(available.is_empty());
        }
        (Err(e), Ok(_)) => {
            panic!("{req:?}: valid request failed with {e:?}, not as an unknown heap")
        }
    }
});

/// The rules of `Allocator::check`, stated directly; `None` when the request is valid.
fn expected_refusal(heap: &str, name: &[u8], size: u64, page: u64) -> Option<String> {
    if let Err(e) = heap::validate_heap_name(heap) {
        return Some(format!("{e:?}"));
    }
    if let Err(e) = name::validate(name) {
        return Some(format!("{:?}", Error::Name(e)));
    }
    let rounded = u128::from(size).div_ceil(u128::from(page)) * u128::from(page);
    let size_error = if size == 0 {
        Some(SizeError::Zero)
    } else if rounded > u128::from(u64::MAX) {
        Some(SizeError::Overflow(size))
    } else if rounded > u128::from(DEFAULT_MAX_SIZE) {
        Some(SizeError::TooLarge { size, max: DEFAULT_MAX_SIZE })
    } else {
        None
    };
    size_error.map(|e| format!("{:?}", Error::Size(e)))
}
