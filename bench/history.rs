//! History benchmark: the memory the service's history holds at its bounds, and what recording
//! one allocation in it costs, on the host.
//!
//! `cargo bench --bench history [-- --allocations 200000]`. Feeds a ledger and its history as
//! the service does (`Ledger::commit`, then `History::allocated`; a prune every 256
//! allocations), over uids and names in four shapes: a few of each (what a device has), twice
//! the mark bound of uids, of 128-byte names, and of both (the worst case: every allocation is a
//! new mark, and a full kind has to make room). The time includes the ledger's own commit. Heap bytes are counted by this binary's allocator:
//! the history's own, after the ledger is emptied; and the whole reply of `getHistory`, encoded
//! in a parcel.
//! Prints a Markdown table (BENCHMARKS.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use dmabufd::ledger::{Entry, Ledger};
use dmabufd::service::convert;
use dmabufd::service::history::{History, MAX_MARKS, MAX_SAMPLES};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `layout` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    let mut allocations = 200_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--allocations" => {
                allocations = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                    eprintln!("--allocations needs a number");
                    std::process::exit(2);
                })
            }
            "--bench" => {}
            other => {
                eprintln!("usage: history [--allocations N] (got {other:?})");
                std::process::exit(2);
            }
        }
    }
    println!("{allocations} allocations each; bounds: {MAX_MARKS} marks per kind, {MAX_SAMPLES} samples\n");
    println!("| uids | names (bytes each) | ns per allocation recorded | history heap bytes | getHistory reply bytes |");
    println!("|---|---|---|---|---|");
    let wide = 2 * MAX_MARKS as u64;
    for (uids, names, name_len) in [(4, 8, 16), (wide, 8, 16), (4, wide, 128), (wide, wide, 128)] {
        run(allocations, uids, names, name_len);
    }
}

fn run(allocations: u64, uids: u64, names: u64, name_len: usize) {
    let names: Vec<String> =
        (0..names).map(|i| format!("{i:0>width$}", width = name_len)).collect();
    let before = live();
    let mut history = History::new(0);
    let mut ledger = Ledger::new();
    let start = Instant::now();
    for i in 0..allocations {
        let uid = (i % uids) as u32;
        let name = names[(i % names.len() as u64) as usize].as_str();
        let entry = Entry {
            inode: i,
            size: 4096,
            name: name.into(),
            heap: "system".into(),
            uid,
            pid: 1,
            time_millis: i,
            attributed: true,
        };
        ledger.commit(0, entry);
        history.allocated(&ledger, uid, &name.into(), i);
        if i % 256 == 255 {
            // Every buffer but the last 64 died.
            ledger.retain_live(ledger.generation(), |inode| inode + 64 > i);
            history.pruned(&ledger, i);
        }
    }
    let took = start.elapsed();
    ledger.retain_live(ledger.generation(), |_| false);
    history.pruned(&ledger, allocations);
    drop(ledger);
    let held = live() - before;
    let reply = convert::history_to_aidl(&history.view(None));
    let mut parcel = rsbinder::Parcel::new();
    parcel.write(&reply).expect("encode the reply");
    let wire = parcel.data_size();
    println!(
        "| {uids} | {} ({name_len}) | {:.0} | {held} | {wire} |",
        names.len(),
        took.as_nanos() as f64 / allocations as f64,
    );
}
