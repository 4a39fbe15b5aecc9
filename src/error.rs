//! The library's one error type.
//!
//! A single enum, rather than one per module, because every front end (CLI exit codes, AIDL
//! service-specific codes) must map each failure to exactly one documented class, and that
//! mapping is easiest to keep total when there is one `match` over one type.

use std::io;

/// Why a size argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size must be greater than 0")]
    Zero,
    #[error("size {size} exceeds the maximum of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("size {0} overflows when rounded up to whole pages")]
    Overflow(u64),
    #[error("size {0:?} is not a number of bytes (suffixes K, M, G allowed)")]
    Unparsable(String),
    #[error("size {0} is negative")]
    Negative(i64),
}

/// Why a buffer name was refused. Names end up verbatim in fdinfo `name:` lines and in
/// `/proc/<pid>/maps` paths, so anything that would break those line formats is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} bytes; the kernel allows at most {max}")]
    TooLong { len: usize, max: usize },
    #[error("name contains a NUL byte at offset {0}")]
    Nul(usize),
    #[error("name contains control character {byte:#04x} at offset {offset}")]
    Control { offset: usize, byte: u8 },
    #[error("name is not valid UTF-8")]
    NotUtf8,
}

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid size: {0}")]
    Size(#[from] SizeError),
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("unknown heap {heap:?}; available heaps: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    UnknownHeap { heap: String, available: Vec<String> },
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("buffer is busy (renaming while devices are attached is refused by this kernel)")]
    Busy,
    #[error("out of memory allocating {size} bytes from heap {heap:?}")]
    OutOfMemory { heap: String, size: u64 },
    #[error("quota exceeded: uid {uid} holds {outstanding} bytes, limit {limit}")]
    QuotaExceeded { uid: u32, outstanding: u64, limit: u64 },
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A failure the dmabufd service reported to a client: its `IAllocator.ERROR_*` code and
    /// message (the service's own rendering of one of the variants above).
    #[error("{message}")]
    Service { code: i32, message: String },
}

/// Result alias used throughout the library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with what was being done, so a one-line message is enough to act on.
    pub fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io { context: context.into(), source: source.into() }
    }
}
