//! Scans of `/proc` for reports, shared between callers and rate-limited.
//!
//! A report costs a walk of every process's fds and mappings, and any uid may ask for its own.
//! So one scan serves every query that arrives while it runs or shortly after: callers wait for
//! the scan in progress instead of starting another, and a finished scan is reused until it is
//! [`MIN_AGE`] old or [`DUTY`] times as old as it took to run, whichever is later. However many
//! clients ask, scanning then keeps at most 1/([`DUTY`]+1) of one core busy, and a report is at
//! most that old. One exception keeps the service's own clients consistent: a scan that started
//! before an allocation through the service (a new ledger generation) is never reused, so a
//! client that allocates and then asks sees its buffer. The next scan then waits until the last
//! one would have expired anyway, so forcing scans that way keeps the same bound (the client
//! waits instead of the cores working) and costs the client an allocation each. The ledger's
//! pruning uses these scans too when the kernel lists no buffers, so however often a client
//! asks for its ledger, it costs at most the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::account::Model;
use crate::bpf::{self, SourceChoice};
use crate::scan::ScanOptions;
use crate::Result;

/// A scan is reused for at least this long.
pub const MIN_AGE: Duration = Duration::from_millis(100);
/// ... and for this many times its own duration.
pub const DUTY: u32 = 4;

#[derive(Debug)]
struct Latest {
    model: Arc<Model>,
    /// When the scan started: the data is at least this old.
    started: Instant,
    took: Duration,
    /// The ledger generation when the scan started.
    generation: u64,
}

impl Latest {
    fn fresh(&self, generation: u64) -> bool {
        generation == self.generation && self.started.elapsed() < self.lifetime()
    }

    /// How long the next scan must wait so that scanning keeps within the bound of the
    /// [module docs](self) even when this one may not be reused.
    fn wait(&self) -> Duration {
        self.lifetime().saturating_sub(self.started.elapsed())
    }

    /// How long after its start a scan may be reused.
    fn lifetime(&self) -> Duration {
        MIN_AGE.max(self.took * (DUTY + 1))
    }
}

/// The latest scan and counters of scans run against queries served.
#[derive(Debug, Default)]
pub struct Scans {
    latest: Mutex<Option<Latest>>,
    queries: AtomicU64,
    runs: AtomicU64,
}

impl Scans {
    /// A model of the system, fresh or at most as old as the [module docs](self) say;
    /// `generation` is the ledger's now.
    pub fn model(&self, generation: u64) -> Result<Arc<Model>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        // Held across the scan: concurrent callers wait for it rather than run their own.
        let mut latest = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(l) = latest.as_ref().filter(|l| l.fresh(generation)) {
            return Ok(Arc::clone(&l.model));
        }
        if let Some(l) = latest.as_ref() {
            std::thread::sleep(l.wait());
        }
        // Drop the old model before building the new one: two full models never coexist.
        *latest = None;
        let started = Instant::now();
        let (model, _) = bpf::scan(&ScanOptions::default(), SourceChoice::Auto)?;
        let model = Arc::new(model);
        self.runs.fetch_add(1, Ordering::Relaxed);
        let took = started.elapsed();
        *latest = Some(Latest { model: Arc::clone(&model), started, took, generation });
        Ok(model)
    }

    /// Forgets a model that is no longer fresh, so that its memory does not outlive the buffers
    /// it describes while nobody queries. Returns whether one was dropped.
    pub fn expire(&self) -> bool {
        let Ok(mut latest) = self.latest.try_lock() else {
            // A scan is running: it replaces the model anyway.
            return false;
        };
        let stale = latest.as_ref().is_some_and(|l| !l.fresh(l.generation));
        if stale {
            *latest = None;
        }
        stale
    }

    /// Forgets the latest model whatever its age: many of the buffers it describes died (a
    /// prune dropped their entries), and holding it would keep their memory in the service.
    pub fn forget(&self) {
        if let Ok(mut latest) = self.latest.try_lock() {
            *latest = None;
        }
    }

    /// `(queries served, scans run)` since start-up.
    pub fn counts(&self) -> (u64, u64) {
        (self.queries.load(Ordering::Relaxed), self.runs.load(Ordering::Relaxed))
    }
}
