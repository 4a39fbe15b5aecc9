//! [`crate::Error`] ↔ the documented `IAllocator.ERROR_*` service-specific codes, and the one
//! place where a failed call is logged ([`map_or_log_err`]).
//!
//! The match is exhaustive on purpose: a new library error variant does not compile until it is
//! given exactly one documented code here.

use super::compat::{self, aidl::IAllocator as codes, Status};
use crate::Error;

/// The one `ERROR_*` code for each kind of failure.
pub fn code_of(e: &Error) -> i32 {
    match e {
        Error::Size(_) | Error::InvalidArgument(_) => codes::ERROR_INVALID_ARGUMENT,
        Error::UnknownHeap { .. } => codes::ERROR_UNKNOWN_HEAP,
        Error::Name(_) => codes::ERROR_INVALID_NAME,
        Error::OutOfMemory { .. } => codes::ERROR_OUT_OF_MEMORY,
        Error::QuotaExceeded { .. } => codes::ERROR_QUOTA_EXCEEDED,
        Error::PermissionDenied(_) => codes::ERROR_PERMISSION_DENIED,
        Error::Unsupported(_) | Error::Busy => codes::ERROR_UNSUPPORTED,
        Error::Io { .. } => codes::ERROR_IO,
        Error::CursorExpired(_) => codes::ERROR_CURSOR_EXPIRED,
        Error::ReplyTooLarge { .. } => codes::ERROR_REPLY_TOO_LARGE,
        // Only a client builds this; a service relaying one passes the code through.
        Error::Service { code, .. } => *code,
    }
}

/// The binder status a failed call replies with: the code plus the error's one-line message.
pub fn to_status(e: &Error) -> Status {
    compat::service_error(code_of(e), &e.to_string())
}

/// The binder edge of every method (keystore2's `map_or_log_err`): a failure is logged with the
/// method and the caller, then replied as its documented status. Refused input is the client's
/// mistake (info); a failing kernel interface is the service's problem (warning).
pub fn map_or_log_err<T>(method: &str, result: crate::Result<T>) -> compat::Result<T> {
    result.map_err(|e| {
        let caller = compat::caller();
        match e {
            Error::Io { .. } | Error::Unsupported(_) => {
                log::warn!("{method} for uid {} pid {}: {e}", caller.uid, caller.pid)
            }
            _ => log::info!("{method} for uid {} pid {} refused: {e}", caller.uid, caller.pid),
        }
        to_status(&e)
    })
}

/// The client side: a failed call as a [`crate::Error`]. Service-specific errors keep their code
/// and message; anything else (dead service, transport failure) is an I/O error.
pub fn from_status(status: &Status) -> Error {
    match compat::service_error_of(status) {
        Some((code, message)) => Error::Service { code, message },
        None => Error::io("binder call to dmabufd", std::io::Error::other(status.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{NameError, SizeError};

    /// Every variant, with its documented code; a status round trip keeps code and message.
    #[test]
    fn each_variant_has_one_documented_code_and_round_trips() {
        let cases: Vec<(Error, i32)> = vec![
            (Error::Size(SizeError::Zero), 1),
            (Error::InvalidArgument("flags".into()), 1),
            (Error::UnknownHeap { heap: "x".into(), available: vec!["system".into()] }, 2),
            (Error::Name(NameError::Empty), 3),
            (Error::OutOfMemory { heap: "system".into(), size: 4096 }, 4),
            (Error::QuotaExceeded { uid: 10, outstanding: 1, limit: 1 }, 5),
            (Error::PermissionDenied("uid 10 may not read uid 0".into()), 6),
            (Error::Unsupported("naming"), 7),
            (Error::Busy, 7),
            (Error::io("reading /proc", std::io::Error::other("boom")), 8),
            (Error::CursorExpired(1 << 32), 9),
            (Error::ReplyTooLarge { items: 100_000, limit: 262_144 }, 10),
            (Error::Service { code: 4, message: "relayed".into() }, 4),
        ];
        for (e, code) in cases {
            assert_eq!(code_of(&e), code, "{e:?}");
            match from_status(&to_status(&e)) {
                Error::Service { code: c, message } => {
                    assert_eq!(c, code);
                    assert_eq!(message, e.to_string());
                }
                other => panic!("{other:?}"),
            }
        }
        // The constants the CLI's exit-status mapping hard-codes as bad input.
        assert_eq!(
            [codes::ERROR_INVALID_ARGUMENT, codes::ERROR_UNKNOWN_HEAP, codes::ERROR_INVALID_NAME],
            [1, 2, 3]
        );
    }
}
