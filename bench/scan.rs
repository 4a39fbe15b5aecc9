//! Scan benchmark: whole commands, as a user runs them, on the workload shapes of issue #13, in
//! the VM.
//!
//! Run with `bench/run-scan-bench` (boots the VM, see BENCHMARKS.md). For each shape and process
//! count the driver builds the workload (workload.rs: forked children holding 64 KiB system-heap
//! buffers), checks that every command finds exactly the buffers and references it holds, then
//! times each command of the table in commands.rs in its own child process, stdout on
//! /dev/null: one untimed warm-up round, then `--runs` rounds interleaved across commands, so
//! that load changes on the host hit every command alike. Reported per command: median wall
//! time, us per fd in /proc, peak RSS (`ru_maxrss` from `wait4`) and the speedup against AOSP's
//! dmabuf_dump (or, when it is not on PATH, against the port of its strategy in port.rs). With
//! `--before PATH`, every dmabufctl row is timed again with that build, in the same rounds.

#[path = "scan/commands.rs"]
mod commands;
#[path = "scan/pages.rs"]
mod pages;
#[path = "scan/port.rs"]
mod port;
#[path = "scan/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use commands::{Check, Program, Row, Sample, Tools, ROWS};
use workload::{Shape, Workload};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("port") => {
            let (fds, maps, buffers) = port::scan();
            println!("refs {fds} {maps} {buffers}");
        }
        Some("run") => commands::launch(&args[1..]),
        Some("pages") => pages::capture(&args[1..]),
        _ => driver(&parse_config(&args)),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: dmabufd-bench-scan [--shape dense,phone,inherited] [--procs 50,300,1000] \
         [--runs 5] [--warm-up 1] [--commands LABEL,LABEL] [--dmabufctl PATH] [--before PATH]"
    );
    std::process::exit(2)
}

struct Config {
    shapes: Vec<Shape>,
    procs: Vec<usize>,
    runs: usize,
    /// Untimed rounds before them (the check already ran each scan once).
    warm_up: usize,
    /// Only the rows with these labels (commands.rs), e.g. to keep a large run short.
    commands: Option<Vec<String>>,
    /// The dmabufctl to time (default: the one on PATH), e.g. another build to compare with.
    dmabufctl: Option<PathBuf>,
    /// Another dmabufctl build whose rows are timed too, in the same rounds as the first's:
    /// two builds compared in separate runs differ by as much as the host's load does.
    before: Option<PathBuf>,
}

fn parse_config(args: &[String]) -> Config {
    let mut c = Config {
        shapes: vec![Shape::Dense, Shape::Phone, Shape::Inherited],
        procs: vec![50, 300, 1000],
        runs: 5,
        warm_up: 1,
        commands: None,
        dmabufctl: None,
        before: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--shape" => c.shapes = list(value, Shape::parse),
            "--procs" => c.procs = list(value, |v| v.parse().ok()),
            "--runs" => c.runs = value.parse().unwrap_or_else(|_| usage()),
            "--warm-up" => c.warm_up = value.parse().unwrap_or_else(|_| usage()),
            "--commands" => c.commands = Some(list(value, |v| Some(v.to_string()))),
            "--dmabufctl" => c.dmabufctl = Some(value.into()),
            "--before" => c.before = Some(value.into()),
            _ => usage(),
        }
    }
    c
}

fn list<T>(value: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    value.split(',').map(|v| parse(v).unwrap_or_else(|| usage())).collect()
}

fn driver(cfg: &Config) {
    let tools = Tools::find(cfg.dmabufctl.clone());
    let before = cfg.before.clone().map(|path| Tools::find(Some(path)));
    let kernel = dmabufd::sys::uname().map_or_else(|_| "?".into(), |u| u.release);
    println!(
        "dmabufd scan benchmark: whole commands, stdout to /dev/null, median of {} interleaved \
         rounds after {} warm-up; {} CPUs, kernel {kernel}",
        cfg.runs,
        cfg.warm_up,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    // A command's peak RSS cannot read lower than the launcher's (commands.rs).
    let floor = tools.time(&["true".into()]).map_or(0, |s| s.peak_rss_kib);
    println!("peak RSS floor (`true` through the launcher): {floor} KiB");
    for row in ROWS {
        if let Err(why) = tools.argv(row) {
            println!("* not timed: {}: {why}", row.label);
        }
    }
    let mut failed = false;
    for &shape in &cfg.shapes {
        // Printed once the shape is done, so that progress on stderr never splits the table.
        let mut table = vec![
            format!("\n{} shape:\n", shape.name()),
            "| procs | fds | dma-buf maps | command | source | median s | us/fd | peak RSS KiB | speedup |".into(),
            "|---:|---:|---:|---|---|---:|---:|---:|---:|".into(),
        ];
        let mut notes = Vec::new();
        for &n in &cfg.procs {
            let start = Instant::now();
            let workload = Workload::start(shape, n);
            let (procs, fds) = count_fds();
            eprintln!(
                "bench: {} x {n} up in {:.1}s; {}",
                shape.name(),
                start.elapsed().as_secs_f64(),
                memory()
            );
            let truth = workload.truth;
            // Each row that can run here and finds exactly what the workload holds.
            let mut rows = Vec::new();
            let chosen =
                |row: &Row| cfg.commands.as_ref().is_none_or(|c| c.iter().any(|l| l == row.label));
            // Each chosen row, and each dmabufctl row again with the build before.
            let runs = ROWS.iter().filter(|row| chosen(row)).flat_map(|row| {
                let again = before.as_ref().filter(|_| row.program == Program::Dmabufctl);
                std::iter::once((&tools, row, row.label.to_string()))
                    .chain(again.map(|other| (other, row, format!("{} [before]", row.label))))
            });
            for (tools, row, label) in runs {
                let Ok(argv) = tools.argv(row) else { continue };
                match tools.check(row, &argv, &truth) {
                    Ok(source) => rows.push((tools, row, label, argv, source)),
                    Err(why) => {
                        failed = true;
                        notes.push(format!("* wrong answer, not timed: {n} procs, {label}: {why}"));
                    }
                }
            }
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); rows.len()];
            for round in 0..cfg.warm_up + cfg.runs {
                for (i, (tools, row, _, argv, _)) in rows.iter().enumerate() {
                    let sample = tools.around(row, || tools.time(argv)).expect("timed run");
                    if round >= cfg.warm_up {
                        samples[i].push(sample);
                    }
                }
                eprintln!(
                    "bench: {} x {n}: round {} of {} done",
                    shape.name(),
                    round + 1,
                    cfg.warm_up + cfg.runs
                );
            }
            let medians: Vec<Duration> = samples.iter().map(|s| median(s)).collect();
            // The first row that scans (start-up rows are floors, not references).
            let reference = rows
                .iter()
                .zip(&medians)
                .find(|((_, row, _, _, _), _)| row.check != Check::StartUp)
                .map_or(Duration::default(), |(_, m)| *m);
            for ((_, _, label, _, source), (s, m)) in rows.iter().zip(samples.iter().zip(&medians))
            {
                let peak = s.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
                table.push(format!(
                    "| {procs} | {fds} | {} | {} | {source} | {:.3} | {:.1} | {peak} | {:.1}x |",
                    truth.map_refs,
                    label,
                    m.as_secs_f64(),
                    m.as_secs_f64() * 1e6 / fds as f64,
                    reference.as_secs_f64() / m.as_secs_f64(),
                ));
            }
            drop(workload);
        }
        println!("{}", table.join("\n"));
        for note in notes {
            println!("\n{note}");
        }
    }
    if failed {
        eprintln!("bench: some command did not find what the workload holds (see above)");
        std::process::exit(1);
    }
}

fn median(samples: &[Sample]) -> Duration {
    let mut walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    walls.sort_unstable();
    walls.get(walls.len() / 2).copied().unwrap_or_default()
}

/// The guest's memory now, for runs near its limit: MemAvailable and Slab of MemTotal.
fn memory() -> String {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mib = |key: &str| {
        let line = info.lines().find_map(|l| l.strip_prefix(key))?;
        Some(line.split_whitespace().next()?.parse::<u64>().ok()? / 1024)
    };
    let [total, available, slab] = ["MemTotal:", "MemAvailable:", "Slab:"].map(mib);
    format!("MiB available {available:?}, slab {slab:?} of {total:?}")
}

/// Processes and fds in /proc right now (what every scanner has to walk).
fn count_fds() -> (usize, usize) {
    let mut procs = 0;
    let mut fds = 0;
    for e in std::fs::read_dir("/proc").expect("/proc").filter_map(|e| e.ok()) {
        if e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()) {
            procs += 1;
            fds += std::fs::read_dir(e.path().join("fd")).map_or(0, |d| d.count());
        }
    }
    (procs, fds)
}
