//! dmabufd: named dma-buf allocation and exact dma-buf accounting.
//!
//! The library does all the work; the `dmabufd` service and the `dmabufctl` CLI are thin front
//! ends over it. Layers, bottom up:
//!
//! * [`sys`]: the only module that issues syscalls and ioctls; safe, typed wrappers.
//! * [`heap`], [`name`], [`buffer`]: heap discovery, allocation, naming, CPU access.
//! * [`procfs`]: pure parsers over bytes of `/proc`, debugfs and sysfs files.
//! * [`kernel_buffers`]: the kernel's own list of every exported buffer (debugfs, sysfs).
//! * [`scan`]: walks `/proc`, around two reads of that list, into a [`account::Model`].
//! * [`bpf`]: the same model from BPF iterators (feature `bpf`), and the choice of source.
//! * [`account`]: the views (per buffer, process, uid, name, exporter, totals), exact bytes.
//! * [`coverage`]: what a report could not see (unreadable processes, unknown holders, sources).
//! * [`text`]: names as exact bytes, and the one escaping every text output applies.
//! * [`report`]: tables, CSV and JSON renderings of those views.
//! * [`snapshot`]: a report with when and where it was taken, as JSON and read back; the
//!   per-group totals that [`diff`] compares and [`top`] shows.
//! * [`diff`]: what grew, shrank, appeared and vanished between two snapshots.
//! * [`top`]: the frames of `dmabufctl top` (groups sorted, with change since start and since
//!   the last frame).
//! * [`openmetrics`]: the same views as an OpenMetrics exposition, for Prometheus.
//! * [`ledger`]: who asked for which live buffer (allocation attribution).
//! * [`memtrack`]: the memtrack HAL's records of a pid, per type.
//! * [`handoff`]: the ledger joined with a scan: who asked for each buffer against who holds it.
//! * `service`: the binder adapter (feature `binder`).

#![warn(missing_docs)]

pub mod account;
pub mod bpf;
pub mod buffer;
pub mod cli;
pub mod coverage;
pub mod diff;
pub mod error;
pub mod handoff;
pub mod heap;
pub mod idmap;
pub mod kernel_buffers;
pub mod ledger;
pub mod logging;
pub mod memtrack;
pub mod name;
pub mod openmetrics;
pub mod pid_counts;
pub mod procfs;
pub mod report;
pub mod scan;
#[cfg(feature = "binder")]
pub mod service;
pub mod snapshot;
pub mod sys;
pub mod text;
pub mod top;
pub mod units;

pub use error::{Error, Result};
