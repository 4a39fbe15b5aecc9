//! Tally benchmark: counting the BPF task passes' records into buffers and holders, on the host,
//! and with `--through-table` everything `dmabufctl dump` does with what the kernel wrote.
//!
//! `cargo bench --bench tally [-- --clients 300 --bufs 900 --runs 11 --dense|--phone
//! --through-table]`. The records are the ones `dmabuf_tables` and `dmabuf_vma_refs` write for
//! the "inherited maps" shape of issue #13 (the kernel's buffer list describes every buffer): a
//! compositor holds and maps every buffer, each client holds `bufs / clients` of them by fd and
//! maps all of them, so the mapping pass is `(clients + 1) * bufs` records (270,900 for the
//! defaults, 11 MB). With `--phone` the clients map none; with `--dense` each client holds and
//! maps 16 buffers of its own and holds 6 shared by all (and by the driver), so buffers are many
//! and holders few. They are fed to [`Counter`] 32 KiB at a time, as `bpf::scan` reads them. In
//! the VM the counting was a third of that pass (the kernel's walk the rest), so it is measured
//! here alone, where it repeats.
//!
//! `--through-table` times instead the whole of a pinned scan's work in userspace: the buffer
//! list parsed from `iter/dmabuf`'s records, the passes counted, the report built and the
//! default table written (to a sink). Under emulation (the VM) time follows instructions, so
//! `valgrind --tool=callgrind` on this is how its cost was found and cut (BENCHMARKS.md).
//! Prints the median of `runs` timed rounds after one untimed warm-up.

use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use dmabufd::account::{Filter, Grouping, Model, Report};
use dmabufd::bpf::records;
use dmabufd::bpf::tally::Counter;
use dmabufd::kernel_buffers::KernelBuffers;
use dmabufd::report::{self, Units, View};

/// Pid of the compositor; clients follow it.
const COMPOSITOR: u32 = 1000;
const SIZE: u64 = 64 * 1024;
/// What `bpf::scan` reads at a time.
const READ: usize = 32 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Inherited,
    Phone,
    Dense,
}

fn main() {
    let mut clients = 300u32;
    let mut bufs = 900u64;
    let mut runs = 11usize;
    let mut shape = Shape::Inherited;
    let mut through_table = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok());
        let ok = match arg.as_str() {
            "--clients" => value().map(|v| clients = v.max(1) as u32).is_some(),
            "--bufs" => value().map(|v| bufs = v.max(1)).is_some(),
            "--runs" => value().map(|v| runs = v.max(1) as usize).is_some(),
            "--dense" => {
                shape = Shape::Dense;
                true
            }
            "--phone" => {
                shape = Shape::Phone;
                true
            }
            "--through-table" => {
                through_table = true;
                true
            }
            // `cargo bench` passes `--bench`.
            "--bench" => true,
            _ => false,
        };
        if !ok {
            eprintln!(
                "usage: tally [--clients N] [--bufs N] [--runs N] [--dense|--phone] \
                 [--through-table] (got {arg:?})"
            );
            std::process::exit(2);
        }
    }
    let ((fds, vmas), maps) = match shape {
        Shape::Dense => {
            bufs = u64::from(clients) * DENSE_OWN + DENSE_SHARED;
            (dense_holders(clients), u64::from(clients) * DENSE_OWN)
        }
        Shape::Phone => (inherited(clients, bufs, false), bufs),
        Shape::Inherited => (inherited(clients, bufs, true), u64::from(clients + 1) * bufs),
    };
    let list_records = buffer_list(bufs);
    let list = KernelBuffers::from_records(&list_records).expect("well-formed records");
    let mut times = Vec::with_capacity(runs);
    for round in 0..=runs {
        let start = Instant::now();
        if through_table {
            dump(&list_records, [&fds, &vmas]);
        } else {
            let tally = black_box(count(&list, [&fds, &vmas]));
            let mapped: u64 = tally
                .buffers
                .values()
                .flat_map(|b| b.map_refs.values())
                .map(|&n| u64::from(n))
                .sum();
            assert_eq!(mapped, maps, "every mapping counted");
        }
        if round > 0 {
            times.push(start.elapsed());
        }
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    println!("| records | bytes | median ms | ns/record |");
    println!("|---:|---:|---:|---:|");
    let records =
        [&fds, &vmas].map(|pass| records::parse(pass).count()).iter().sum::<usize>() as f64;
    println!(
        "| {records} | {} | {:.2} | {:.1} |",
        fds.len() + vmas.len(),
        ms(median),
        median.as_nanos() as f64 / records
    );
}

/// The passes' records counted as `bpf::scan` reads them.
fn count(list: &KernelBuffers, passes: [&[u8]; 2]) -> dmabufd::bpf::tally::Tally {
    let mut counter = Counter::described_by(list);
    for pass in passes {
        let mut held = Vec::with_capacity(READ);
        for chunk in pass.chunks(READ) {
            held.extend_from_slice(chunk);
            let used = counter.add(&held).expect("well-formed records");
            held.drain(..used);
        }
        assert!(held.is_empty(), "a record was left cut");
    }
    counter.finish().expect("well-formed records")
}

/// What `dmabufctl dump` does after the kernel's reads: the list parsed, the passes counted,
/// the default table written. The report is not freed, as the command does not free it. A
/// frame of its own, for `callgrind --toggle-collect=tally::dump`.
#[inline(never)]
fn dump(list: &[u8], passes: [&[u8]; 2]) {
    let list = KernelBuffers::from_records(list).expect("well-formed records");
    let tally = count(&list, passes);
    let model = Model { buffers: tally.buffers, processes: tally.processes, ..Model::default() };
    let report = Report::from_model(model, &Filter::default(), Grouping::None);
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::sink());
    report::write_table(&mut out, &report, View::Processes, Units::KiB).expect("into a sink");
    out.flush().expect("into a sink");
    std::mem::forget(report);
}

/// `iter/dmabuf`'s records for buffers 1 to `bufs`, named `bench <inode>`, of the system heap.
fn buffer_list(bufs: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for inode in 1..=bufs {
        words(&mut out, &[1, 0], &[inode, SIZE]);
        let mut name = format!("bench {inode}").into_bytes();
        name.resize(records::NAME_LEN, 0);
        let mut exporter = b"system".to_vec();
        exporter.resize(records::EXPORTER_LEN, 0);
        out.extend(name.into_iter().chain(exporter));
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

const DENSE_OWN: u64 = 16;
const DENSE_SHARED: u64 = 6;

/// The dense shape's passes: the driver holds the shared buffers (inodes 1 to 6), each client
/// them and its own, mapping its own.
fn dense_holders(clients: u32) -> (Vec<u8>, Vec<u8>) {
    let (mut fds, mut vmas) = (Vec::new(), Vec::new());
    for pid in COMPOSITOR..=COMPOSITOR + clients {
        let table = 0xffff_8880_0000_0000 + u64::from(pid) * 0x1000;
        let own = if pid == COMPOSITOR {
            0..0
        } else {
            let first = DENSE_SHARED + 1 + u64::from(pid - COMPOSITOR - 1) * DENSE_OWN;
            first..first + DENSE_OWN
        };
        process(&mut fds, pid);
        fd_table(&mut fds, pid, table, (1..=DENSE_SHARED).chain(own.clone()));
        if !own.is_empty() {
            process(&mut vmas, pid);
        }
        for inode in own {
            words(&mut vmas, &[3, pid, pid, 0], &[table + 8, inode, SIZE]);
        }
    }
    (fds, vmas)
}

/// The two passes' records, as the kernel writes them: each process described before its
/// first fd or mapping, tasks in pid order. Clients map every buffer when `inherit`, else none.
fn inherited(clients: u32, bufs: u64, inherit: bool) -> (Vec<u8>, Vec<u8>) {
    let (mut fds, mut vmas) = (Vec::new(), Vec::new());
    let per_client = (bufs / u64::from(clients)).max(1);
    for pid in COMPOSITOR..=COMPOSITOR + clients {
        let table = 0xffff_8880_0000_0000 + u64::from(pid) * 0x1000;
        let held: Vec<u64> = if pid == COMPOSITOR {
            (1..=bufs).collect()
        } else {
            let first = u64::from(pid - COMPOSITOR - 1) * per_client;
            (first + 1..=(first + per_client).min(bufs)).collect()
        };
        process(&mut fds, pid);
        fd_table(&mut fds, pid, table, held);
        if inherit || pid == COMPOSITOR {
            process(&mut vmas, pid);
            for inode in 1..=bufs {
                words(&mut vmas, &[3, pid, pid, 0], &[table + 8, inode, SIZE]);
            }
        }
    }
    (fds, vmas)
}

fn process(out: &mut Vec<u8>, pid: u32) {
    words(out, &[4, pid, 10_000 + pid, 0], &[]);
    out.extend_from_slice(&[b'c'; 16]);
}

/// A table walked in the kernel: its header, then an entry per dma-buf fd.
fn fd_table(out: &mut Vec<u8>, pid: u32, table: u64, inodes: impl IntoIterator<Item = u64>) {
    words(out, &[5, pid, pid, 0], &[table]);
    for inode in inodes {
        words(out, &[6, 0], &[inode, SIZE]);
    }
}

fn words(out: &mut Vec<u8>, head: &[u32], rest: &[u64]) {
    out.extend(head.iter().flat_map(|w| w.to_ne_bytes()));
    out.extend(rest.iter().flat_map(|w| w.to_ne_bytes()));
}
