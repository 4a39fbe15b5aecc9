//! The binder service: a thin adapter from AIDL calls to the library.

/// Runs the `dmabufd` service and returns its exit status.
pub fn main() -> i32 {
    crate::logging::init("dmabufd");
    log::error!("TODO service");
    1
}
