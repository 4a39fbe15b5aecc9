//! rsbinder 0.12 (Cargo builds). Keep in step with `aosp.rs`: same items, same order.

use std::time::{Duration, Instant};

use ::rsbinder::entry::KernelEndpoint;
use ::rsbinder::{Client, Endpoint};
pub use ::rsbinder::{
    ExceptionCode, FromIBinder, Interface, ParcelFileDescriptor, Status, StatusCode, Strong,
};

use super::{Caller, Transport, Unreachable, ACCOUNTING_INSTANCE, ALLOCATOR_INSTANCE};

/// The stubs `build.rs` generated from `aidl/` (`rsbinder-aidl`, file `dmabufd_aidl.rs`).
// Generated code carries no docs; the `.aidl` files under `aidl/` document the interface.
#[allow(missing_docs)]
mod generated {
    ::rsbinder::include_aidl!("dmabufd_aidl");
}

/// The AIDL package `vendor.dmabufd`: one module per type, as in the AOSP Rust backend.
pub use generated::vendor::dmabufd as aidl;

use aidl::IAccounting::{BnAccounting, IAccounting};
use aidl::IAllocator::{BnAllocator, IAllocator};

/// What an AIDL method returns (AOSP's `binder::Result`; rsbinder calls it `BinderResult`).
pub type Result<T> = ::rsbinder::BinderResult<T>;

/// A service-specific error carrying one of the `IAllocator::ERROR_*` codes.
pub fn service_error(code: i32, message: &str) -> Status {
    Status::new_service_specific_error(code, Some(message.to_owned()))
}

/// The `ERROR_*` code of a failed call, if the service sent one, and its message.
pub fn service_error_of(status: &Status) -> Option<(i32, String)> {
    (status.exception_code() == ExceptionCode::ServiceSpecific)
        .then(|| (status.service_specific_error(), status.message().unwrap_or_default().to_owned()))
}

/// Who is calling, inside a method being served.
pub fn caller() -> Caller {
    Caller { uid: ::rsbinder::get_calling_uid(), pid: ::rsbinder::get_calling_pid() }
}

/// Wraps an [`IAllocator`] implementation into a binder object.
pub fn new_allocator(service: impl IAllocator + Sync + 'static) -> Strong<dyn IAllocator> {
    BnAllocator::new_binder(service)
}

/// Wraps an [`IAccounting`] implementation into a binder object.
pub fn new_accounting(service: impl IAccounting + Sync + 'static) -> Strong<dyn IAccounting> {
    BnAccounting::new_binder(service)
}

/// Registers both instances and serves them on `threads` binder threads until the process ends.
pub fn serve(
    transport: &Transport,
    threads: u32,
    allocator: Strong<dyn IAllocator>,
    accounting: Strong<dyn IAccounting>,
) -> std::result::Result<(), StatusCode> {
    match transport {
        Transport::Kernel(device) => {
            let mut endpoint = KernelEndpoint::default().with_threads(threads);
            if let Some(device) = device {
                endpoint = endpoint.with_driver(device);
            }
            ::rsbinder::serve(endpoint)?
                .add(ALLOCATOR_INSTANCE, allocator.as_binder())?
                .add(ACCOUNTING_INSTANCE, accounting.as_binder())?
                .run()
        }
        #[cfg(feature = "rpc")]
        Transport::Rpc(socket) => {
            let _server = ::rsbinder::serve(rpc_uri(socket))?
                .with(|o| {
                    o.threads = Some(threads);
                    o.fd_modes = Some(vec![::rsbinder::rpc::FileDescriptorTransportMode::Unix]);
                })
                .add(ALLOCATOR_INSTANCE, allocator.as_binder())?
                .add(ACCOUNTING_INSTANCE, accounting.as_binder())?
                .spawn()?;
            // Clients of every uid must be able to connect; the service does its own checks on
            // the peer credentials.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))?;
            loop {
                std::thread::park();
            }
        }
        #[cfg(not(feature = "rpc"))]
        Transport::Rpc(_) => Err(StatusCode::InvalidOperation),
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
        Transport::Kernel(device) => {
            let client = Client::open_with(Endpoint::kernel(), |o, _| o.driver = device.clone())
                .map_err(failed)?;
            // `Client::get` waits forever for a name that never comes: poll with a deadline.
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(service) = client.try_get::<T>(instance).map_err(failed)? {
                    return Ok(service);
                }
                if Instant::now() >= deadline {
                    return Err(failed(StatusCode::TimedOut));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        #[cfg(feature = "rpc")]
        Transport::Rpc(socket) => Client::open_with(rpc_uri(socket), |o, _| {
            o.fd_mode = Some(::rsbinder::rpc::FileDescriptorTransportMode::Unix);
            o.timeout = Some(timeout);
        })
        .and_then(|client| client.get::<T>(instance))
        .map_err(failed),
        #[cfg(not(feature = "rpc"))]
        Transport::Rpc(_) => {
            Err(crate::Error::Unsupported("binder RPC (this build lacks feature `rpc`)"))
        }
    }
}

/// The android-13+ wire: the profile that can carry fds (`SCM_RIGHTS`) to and from AOSP peers.
#[cfg(feature = "rpc")]
fn rpc_uri(socket: &std::path::Path) -> ::rsbinder::Uri {
    ::rsbinder::Uri::new(Endpoint::unix(socket)).with_wire(
        ::rsbinder::entry::WireProfile::Android13Plus(::rsbinder::entry::WireVersion::MAX),
    )
}

fn connect_error(instance: &str, code: StatusCode) -> crate::Error {
    let why = match code {
        StatusCode::NoInit => Unreachable::NoDriver,
        StatusCode::TimedOut => Unreachable::TimedOut,
        StatusCode::NameNotFound => Unreachable::NotRegistered,
        StatusCode::PermissionDenied => Unreachable::Denied,
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
                _args: &[String],
            ) -> ::rsbinder::Result<()> {
                self.write_dump(writer).map_err(|_| ::rsbinder::StatusCode::FailedTransaction)
            }
        }
    };
}
pub(crate) use impl_interface_with_dump;
