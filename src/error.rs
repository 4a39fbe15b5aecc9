//! The library's one error type.
//!
//! A single enum, rather than one per module, because every front end (CLI exit codes, AIDL
//! service-specific codes) must map each failure to exactly one documented class, and that
//! mapping is easiest to keep total when there is one `match` over one type.

use std::io;

use crate::text::escape;

/// Why a size argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// A zero-byte buffer cannot be allocated.
    #[error("size must be greater than 0")]
    Zero,
    /// Rounded up to whole pages, the size is above the allocator's cap (the system heap
    /// OOM-kills rather than failing, so sizes are capped before they reach it).
    #[error("size {size} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Requested bytes, before rounding.
        size: u64,
        /// The cap in bytes, compared against the rounded size.
        max: u64,
    },
    /// Rounding up to whole pages (or converting to the AIDL `long`) would wrap; carries the
    /// size that would.
    #[error("size {0} overflows when rounded up to whole pages")]
    Overflow(u64),
    /// The argument text as given, which is not a byte count.
    #[error("size {0:?} is not a number of bytes (suffixes K, M, G allowed)")]
    Unparsable(String),
    /// The negative number as given, before any K/M/G multiplier.
    #[error("size {0} is negative")]
    Negative(i64),
}

/// Why a buffer name was refused. Names end up verbatim in fdinfo `name:` lines and in
/// `/proc/<pid>/maps` paths, so anything that would break those line formats is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty name would be indistinguishable from an unnamed buffer.
    #[error("name is empty")]
    Empty,
    /// Longer than any name a client passes (gralloc's 128 bytes).
    #[error("name is {len} bytes; at most {max} are allowed")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// Most bytes accepted.
        max: usize,
    },
    /// Longer than the kernel keeps, where nothing else would keep the whole name (allocating
    /// straight from a heap, without the service's ledger).
    #[error("name is {len} bytes; the kernel keeps {max} and nothing here would keep the rest (allocate through the service to keep up to 128)")]
    CutByKernel {
        /// Length of the name in bytes.
        len: usize,
        /// Most bytes the kernel keeps.
        max: usize,
    },
    /// The kernel would silently cut the name at the NUL; carries its byte offset.
    #[error("name contains a NUL byte at offset {0}")]
    Nul(usize),
    /// A control byte (newline, tab, ...) would break the line formats the name appears in.
    #[error("name contains control character {byte:#04x} at offset {offset}")]
    Control {
        /// Byte offset of the first control byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// Every reader, AIDL `String`s included, must be able to carry the name.
    #[error("name is not valid UTF-8")]
    NotUtf8,
}

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A size argument was refused (bad input).
    #[error("invalid size: {0}")]
    Size(#[from] SizeError),
    /// A buffer name was refused (bad input).
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
    /// Any other bad input; the text says which argument and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No such file under the heap directory.
    #[error("unknown heap \"{}\"; available heaps: {}", escape(heap.as_bytes()), if available.is_empty() { "none".to_string() } else { escape(available.join(", ").as_bytes()).into_owned() })]
    UnknownHeap {
        /// The heap name as requested.
        heap: String,
        /// Heaps that do exist, so the message is enough to retry (empty if unlistable).
        available: Vec<String>,
    },
    /// Not available here (a kernel interface, or a feature this build lacks); the text says
    /// which.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// `DMA_BUF_SET_NAME` returned EBUSY.
    #[error("buffer is busy (renaming while devices are attached is refused by this kernel)")]
    Busy,
    /// The heap returned ENOMEM.
    #[error("out of memory allocating {size} bytes from heap \"{}\"", escape(heap.as_bytes()))]
    OutOfMemory {
        /// The heap asked.
        heap: String,
        /// Requested bytes, before rounding to pages.
        size: u64,
    },
    /// The service refused an allocation that would take the caller's uid over its quota.
    #[error("quota exceeded: uid {uid} holds {outstanding} bytes, limit {limit}")]
    QuotaExceeded {
        /// The caller's uid.
        uid: u32,
        /// Bytes the uid already holds (live allocations plus reservations), before this one.
        outstanding: u64,
        /// The uid's quota in bytes.
        limit: u64,
    },
    /// A paging cursor of the service names no open snapshot (finished, expired, evicted, or
    /// another caller's or query's).
    #[error("cursor {0:#x} names no open snapshot (expired or finished); start again from 0")]
    CursorExpired(u64),
    /// A reply that binder could not deliver in one transaction (an unpaged V1 query).
    #[error("reply of {items} items exceeds one {limit}-byte page; use the paged query")]
    ReplyTooLarge {
        /// Items the whole reply would carry.
        items: usize,
        /// Largest reply the service sends.
        limit: usize,
    },
    /// The kernel or the service's policy refused; the text says what was refused.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Any other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. which file was being read.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A failure the dmabufd service reported to a client: its `IAllocator.ERROR_*` code and
    /// message (the service's own rendering of one of the variants above).
    #[error("{message}")]
    Service {
        /// The `IAllocator.ERROR_*` code.
        code: i32,
        /// The service's message, shown as is.
        message: String,
    },
}

/// Result alias used throughout the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Process exit status for bad input, as with most Unix tools (and clap's own usage errors).
/// Here rather than in a front end because both `dmabufctl` and `dmabufd` exit with it.
pub const EXIT_USAGE: i32 = 2;
/// Process exit status when a valid request failed.
pub const EXIT_FAILURE: i32 = 1;

impl Error {
    /// The process exit status for this failure: bad input is the caller's to fix
    /// ([`EXIT_USAGE`]), anything else is the system's ([`EXIT_FAILURE`]).
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Size(_)
            | Error::Name(_)
            | Error::InvalidArgument(_)
            | Error::UnknownHeap { .. } => EXIT_USAGE,
            // The service's ERROR_INVALID_ARGUMENT, ERROR_UNKNOWN_HEAP and ERROR_INVALID_NAME.
            Error::Service { code: 1..=3, .. } => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// Wraps an I/O error with what was being done, so a one-line message is enough to act on.
    pub fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io { context: context.into(), source: source.into() }
    }
}
