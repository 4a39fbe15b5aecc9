//! AOSP `binder` crate (Soong builds, `--cfg dmabufd_aosp`). Keep in step with `rsbinder.rs`:
//! same items, same order. Not compiled outside an Android tree; written against the
//! `libbinder_rs` API of Android 15/16 (`binder::check_interface` is the newest call used).
//!
//! Assumed Soong names (Android.bp must match):
//! * `aidl_interface { name: "vendor.dmabufd", backend: { rust: { enabled: true } } }` gives the
//!   module `vendor.dmabufd-V3-rust`, whose crate is `vendor_dmabufd` with the package under
//!   `vendor_dmabufd::aidl::vendor::dmabufd`.
//! * The service and CLI crates get `rustlibs: ["libbinder_rs", "vendor.dmabufd-V3-rust"]`,
//!   `features: ["binder"]` and `cfgs: ["dmabufd_aosp"]`; no rsbinder, no `rpc` feature.

use std::time::{Duration, Instant};

use binder::{BinderFeatures, ProcessState, ThreadState};
pub use binder::{
    ExceptionCode, FromIBinder, Interface, ParcelFileDescriptor, Status, StatusCode, Strong,
};

use super::{Caller, Transport, Unreachable, ACCOUNTING_INSTANCE, ALLOCATOR_INSTANCE};

/// The AIDL package `vendor.dmabufd` from the `vendor.dmabufd-V3-rust` module.
pub use vendor_dmabufd::aidl::vendor::dmabufd as aidl;

use aidl::IAccounting::{BnAccounting, IAccounting};
use aidl::IAllocator::{BnAllocator, IAllocator};

/// What an AIDL method returns.
pub type Result<T> = binder::Result<T>;

/// A service-specific error carrying one of the `IAllocator::ERROR_*` codes.
pub fn service_error(code: i32, message: &str) -> Status {
    Status::new_service_specific_error_str(code, Some(message))
}

/// The `ERROR_*` code of a failed call, if the service sent one, and its message.
pub fn service_error_of(status: &Status) -> Option<(i32, String)> {
    (status.exception_code() == ExceptionCode::SERVICE_SPECIFIC)
        .then(|| (status.service_specific_error(), status.get_description()))
}

/// Who is calling, inside a method being served.
pub fn caller() -> Caller {
    Caller { uid: ThreadState::get_calling_uid(), pid: ThreadState::get_calling_pid() }
}

/// Wraps an [`IAllocator`] implementation into a binder object.
pub fn new_allocator(service: impl IAllocator + Sync + 'static) -> Strong<dyn IAllocator> {
    BnAllocator::new_binder(service, BinderFeatures::default())
}

/// Wraps an [`IAccounting`] implementation into a binder object.
pub fn new_accounting(service: impl IAccounting + Sync + 'static) -> Strong<dyn IAccounting> {
    BnAccounting::new_binder(service, BinderFeatures::default())
}

/// Registers both instances and serves them on `threads` binder threads until the process ends.
pub fn serve(
    transport: &Transport,
    threads: u32,
    allocator: Strong<dyn IAllocator>,
    accounting: Strong<dyn IAccounting>,
) -> std::result::Result<(), StatusCode> {
    match transport {
        // libbinder picks the device (/dev/binder for vendor AIDL HALs); it cannot be chosen here.
        Transport::Kernel(None) => {
            ProcessState::set_thread_pool_max_thread_count(threads);
            ProcessState::start_thread_pool();
            binder::add_service(ALLOCATOR_INSTANCE, allocator.as_binder())?;
            binder::add_service(ACCOUNTING_INSTANCE, accounting.as_binder())?;
            ProcessState::join_thread_pool();
            Ok(())
        }
        Transport::Kernel(Some(_)) => Err(StatusCode::BAD_VALUE),
        Transport::Rpc(_) => Err(StatusCode::INVALID_OPERATION),
    }
}

/// Looks `instance` up, waiting up to `timeout` for it to be registered.
pub fn connect<T: FromIBinder + ?Sized>(
    transport: &Transport,
    instance: &str,
    timeout: Duration,
) -> crate::Result<Strong<T>> {
    let failed = |code: StatusCode| connect_error(instance, code);
    match transport {
        Transport::Kernel(None) => {
            ProcessState::start_thread_pool();
            // `wait_for_interface` has no deadline: poll with one, as on rsbinder.
            let deadline = Instant::now() + timeout;
            loop {
                match binder::check_interface::<T>(instance) {
                    Ok(service) => return Ok(service),
                    Err(StatusCode::NAME_NOT_FOUND) => {}
                    Err(code) => return Err(failed(code)),
                }
                if Instant::now() >= deadline {
                    return Err(failed(StatusCode::TIMED_OUT));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Transport::Kernel(Some(_)) => {
            Err(crate::Error::Unsupported("choosing the binder device (libbinder decides)"))
        }
        Transport::Rpc(_) => {
            Err(crate::Error::Unsupported("binder RPC (not available to vendor code)"))
        }
    }
}

fn connect_error(instance: &str, code: StatusCode) -> crate::Error {
    let why = match code {
        StatusCode::NO_INIT => Unreachable::NoDriver,
        StatusCode::TIMED_OUT => Unreachable::TimedOut,
        StatusCode::NAME_NOT_FOUND => Unreachable::NotRegistered,
        StatusCode::PERMISSION_DENIED => Unreachable::Denied,
        other => Unreachable::Other(format!("{other:?}")),
    };
    super::connect_error(instance, why)
}

/// Implements [`Interface`] for a service type whose `write_dump(&self, &mut dyn Write)` answers
/// `dumpsys` (the `dump` signatures differ between the binder crates).
macro_rules! impl_interface_with_dump {
    ($service:ty) => {
        impl $crate::service::compat::Interface for $service {
            fn dump(
                &self,
                writer: &mut dyn ::std::io::Write,
                _args: &[&::std::ffi::CStr],
            ) -> ::std::result::Result<(), ::binder::StatusCode> {
                self.write_dump(writer).map_err(|_| ::binder::StatusCode::FAILED_TRANSACTION)
            }
        }
    };
}
pub(crate) use impl_interface_with_dump;
