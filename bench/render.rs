//! Render benchmark: table, CSV and JSON of one large synthetic report, on the host.
//!
//! `cargo bench --bench render [-- --clients 300 --bufs 900 --runs 5 --dense]`. The model has
//! the shape of the "inherited maps" workload of issue #13: a compositor holds and maps every
//! buffer, each client holds `bufs / clients` of them by fd and, forked from the compositor, maps
//! all of them. That is `(clients + 1) * bufs` rows in the per-process views (270,900 for the
//! defaults), every buffer with `clients + 1` holders. With `--dense` it is the "dense" shape
//! instead: each client holds and maps 16 buffers of its own and holds 6 shared by all, so rows
//! are many and buffers nearly as many. Prints a Markdown table (BENCHMARKS.md): the median of
//! `runs` timed renders of each output after one untimed warm-up.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use dmabufd::account::{Buffer, Filter, Grouping, Model, PidCounts, Process, Report};
use dmabufd::report::{self, Units, View};
use dmabufd::snapshot;

/// Pid of the compositor; clients follow it.
const COMPOSITOR: i32 = 1000;

fn main() {
    let mut clients = 300usize;
    let mut bufs = 900usize;
    let mut runs = 5usize;
    let mut dense = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let target = match arg.as_str() {
            "--dense" => {
                dense = true;
                continue;
            }
            "--clients" => &mut clients,
            "--bufs" => &mut bufs,
            "--runs" => &mut runs,
            // `cargo bench` passes `--bench`; anything else is a mistake.
            "--bench" => continue,
            other => {
                eprintln!(
                    "usage: render [--clients N] [--bufs N] [--runs N] [--dense] (got {other:?})"
                );
                std::process::exit(2);
            }
        };
        *target = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{arg} needs a number");
            std::process::exit(2);
        });
    }
    let model = if dense {
        dense_holders(clients.max(1))
    } else {
        inherited_maps(clients.max(1), bufs.max(1))
    };
    let report = Report::build(&model, &Filter::default());
    let rows: usize = report.buffers.iter().map(|b| b.holder_count()).sum();
    println!(
        "{} processes, {} buffers, {rows} process x buffer rows, median of {runs} runs\n",
        report.processes.len(),
        report.buffers.len()
    );
    println!("| output | median ms | output bytes |");
    println!("|---|---:|---:|");
    // `dmabufctl dump` hands its model over: each run takes a copy made before the timing.
    let copies = RefCell::new(vec![model.clone(); runs.max(1) + 1]);
    let cases: [(&str, &dyn Fn() -> String); 7] = [
        ("Report::build", &|| {
            format!("{}", Report::build(&model, &Filter::default()).buffers.len())
        }),
        ("Report::from_model, ungrouped (the default table's)", &|| {
            let model = copies.borrow_mut().pop().expect("a copy per run");
            let report = Report::from_model(model, &Filter::default(), Grouping::None);
            format!("{}", report.buffers.len())
        }),
        ("table (default)", &|| report::table(&report, View::Processes, Units::KiB)),
        ("table --bytes", &|| report::table(&report, View::Processes, Units::Bytes)),
        ("table --by name", &|| report::table(&report, View::Names, Units::KiB)),
        ("csv", &|| report::csv(&report, View::Processes)),
        ("json", &|| report::json(&report).expect("json")),
    ];
    for (label, render) in cases {
        let (median, len) = time(runs.max(1), render);
        println!("| {label} | {:.1} | {len} |", median.as_secs_f64() * 1e3);
    }
    // As `dmabufctl dump` writes them: streamed through a 64 KiB buffer, never held whole.
    type Stream<'a> = &'a dyn Fn(&mut BufWriter<Counter>) -> std::io::Result<()>;
    let streamed: [(&str, Stream); 2] = [
        ("table (default), streamed", &|out| {
            report::write_table(out, &report, View::Processes, Units::KiB)
        }),
        ("json, streamed", &|out| {
            snapshot::write_json(out, &report, &snapshot::Meta::now("bench"), true)
        }),
    ];
    for (label, render) in streamed {
        let (median, len) = time(runs.max(1), &|| {
            let mut out = BufWriter::with_capacity(64 * 1024, Counter(0));
            render(&mut out).expect("write");
            out.into_inner().map_or(0, |c| c.0)
        });
        println!("| {label} | {:.1} | {len} |", median.as_secs_f64() * 1e3);
    }
}

/// A sink that counts what it is given.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Median time of `runs` calls after one warm-up, and the output length.
fn time<T: Len>(runs: usize, render: &dyn Fn() -> T) -> (Duration, usize) {
    let len = black_box(render()).len();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(render());
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    (times[times.len() / 2], len)
}

/// What a case made: its text, or the byte count of what it streamed.
trait Len {
    fn len(&self) -> usize;
}

impl Len for String {
    fn len(&self) -> usize {
        self.as_str().len()
    }
}

impl Len for usize {
    fn len(&self) -> usize {
        *self
    }
}

/// Dense: `clients` processes, each holding and mapping 16 buffers of its own and holding the
/// same 6 shared ones.
fn dense_holders(clients: usize) -> Model {
    let pids: Vec<i32> = (1..=clients as i32).map(|i| COMPOSITOR + i).collect();
    let buffer = |inode: u64, name: String, fd_refs, map_refs| Buffer {
        inode,
        size: 64 * 1024,
        exporter: Some("system".into()),
        name: Some(name.into()),
        fd_refs,
        map_refs,
        ..Buffer::default()
    };
    let mut buffers = BTreeMap::new();
    for i in 0..6u64 {
        let holders = pids.iter().map(|&pid| (pid, 1)).collect();
        let shared = buffer(i + 1, format!("bench shared {i}"), holders, PidCounts::new());
        buffers.insert(i + 1, shared);
    }
    for (n, &pid) in pids.iter().enumerate() {
        for i in 0..16u64 {
            let inode = 100 + n as u64 * 16 + i;
            let own = PidCounts::from([(pid, 1)]);
            buffers.insert(inode, buffer(inode, format!("bench {pid} {i}"), own.clone(), own));
        }
    }
    processes_and(buffers, &pids)
}

fn inherited_maps(clients: usize, bufs: usize) -> Model {
    let all_pids: Vec<i32> = (0..=clients as i32).map(|i| COMPOSITOR + i).collect();
    let mut buffers = BTreeMap::new();
    for i in 0..bufs {
        let inode = 5000 + i as u64;
        let owner = COMPOSITOR + 1 + (i % clients) as i32;
        buffers.insert(
            inode,
            Buffer {
                inode,
                size: 64 * 1024,
                exporter: Some("system".into()),
                name: Some(format!("client {owner} surface {i}").into()),
                fd_refs: PidCounts::from([(COMPOSITOR, 1), (owner, 1)]),
                map_refs: all_pids.iter().map(|&pid| (pid, 1)).collect(),
                ..Buffer::default()
            },
        );
    }
    processes_and(buffers, &all_pids)
}

/// The model of `buffers` and their holders `pids` (the compositor named as such).
fn processes_and(buffers: BTreeMap<u64, Buffer>, pids: &[i32]) -> Model {
    let processes = pids
        .iter()
        .map(|&pid| {
            let comm =
                if pid == COMPOSITOR { "surfaceflinger".into() } else { format!("app{pid}") };
            (pid, Process { pid, uid: 10_000 + pid as u32, comm })
        })
        .collect();
    Model {
        exported_bytes: Some(buffers.values().map(|b| b.size).sum()),
        buffers,
        processes,
        unreadable_processes: 0,
        coverage: Default::default(),
    }
}
