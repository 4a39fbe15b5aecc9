//! `dmabufctl`: argument parsing and dispatch. Each subcommand lives in its own module; this one
//! only turns arguments into calls and failures into one stderr line plus an exit status.
//!
//! Exit statuses: 0 success, 1 the operation failed, 2 bad input (usage, size, name, heap); see
//! [`Error::exit_status`].

mod alloc;
mod bpf;
mod diff;
mod dump;
mod parse;
#[cfg(feature = "binder")]
mod remote;
mod serve;
mod top;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::EXIT_USAGE;
use crate::Error;

/// The whole command line. Fields are the global options.
#[derive(Debug, Parser)]
#[command(
    name = "dmabufctl",
    version,
    about = "Allocate named dma-bufs and account for every dma-buf in the system"
)]
pub struct Cli {
    /// The options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `dmabufctl`'s global options: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Go through the dmabufd binder service instead of the kernel and /proc directly.
    #[arg(long, global = true)]
    pub service: bool,
    /// With --service: reach the service over rsbinder RPC on this unix socket instead of
    /// kernel binder (host testing).
    #[arg(long, global = true, value_name = "SOCKET", requires = "service")]
    pub rpc: Option<PathBuf>,
}

/// The subcommands; each variant's doc comment is its `--help` summary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the dma-buf heaps under /dev/dma_heap.
    Heaps,
    /// Allocate named dma-bufs and print inode, size and name of each.
    Alloc(AllocArgs),
    /// Account for dma-buf usage: per process (default), buffer, app, name or heap.
    Dump(DumpArgs),
    /// Live allocations made through the service and who asked for them (needs --service).
    Ledger(LedgerArgs),
    /// What grew, shrank, appeared and vanished between two snapshots (`dump -o json` files).
    Diff(DiffArgs),
    /// A live view sorted by Rss, with change since start and since the last frame (like top).
    Top(TopArgs),
    /// Serve OpenMetrics over HTTP (`GET /metrics`) for Prometheus: one scan per scrape.
    Serve(ServeArgs),
    /// Asked-by versus held-by: who asked the service for each live buffer and who holds it
    /// now, and per uid bytes asked against bytes held (needs --service).
    Holders(LedgerArgs),
    /// The service's high-water marks per uid and name, and its samples (needs --service).
    History(HistoryArgs),
    /// Load the BPF scan once and pin it in bpffs, so every later `dump` only reads it.
    #[command(subcommand)]
    Bpf(BpfCommand),
}

/// `dmabufctl bpf`: what is pinned at `/sys/fs/bpf/dmabufd/v<layout>`.
#[derive(Debug, Subcommand)]
pub enum BpfCommand {
    /// Load the iterators (root, or CAP_BPF and CAP_PERFMON; BTF; a build with feature `bpf`)
    /// and pin them, replacing an earlier pin; as a boot script would (bpfloader on Android).
    Pin,
    /// Remove the pinned iterators, which unloads them.
    Unpin,
    /// Say what is pinned.
    Status,
}

/// `dmabufctl history`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Start the history afresh (uids on the service's allowlist only), then print it.
    #[arg(long)]
    pub reset: bool,
    /// Output format (table or json).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `dmabufctl alloc`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct AllocArgs {
    /// Heap name under /dev/dma_heap.
    #[arg(long)]
    pub heap: String,
    /// Bytes per buffer; K, M and G suffixes (powers of 1024) accepted.
    #[arg(long)]
    pub size: String,
    /// Purpose name: 1 to 128 bytes with --service (the kernel keeps the first 31, whole
    /// characters; the service's ledger and reports the whole name), at most 31 without; no
    /// control characters.
    #[arg(long)]
    pub name: String,
    /// Heap flags (must be 0 on mainline heaps).
    #[arg(long, default_value_t = 0)]
    pub flags: u64,
    /// Number of buffers.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Also map each buffer (and touch its pages), so it shows in `/proc/<pid>/maps`.
    #[arg(long)]
    pub map: bool,
    /// Keep the buffers alive this many seconds before exiting, so other tools can see them.
    #[arg(long, value_name = "SECONDS")]
    pub hold: Option<u64>,
}

/// How `dump` and `ledger` print their results (the variant docs are also `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One header line, then one line per row.
    Csv,
    /// JSON for programs (the `dump` schema is in docs/dump.md).
    Json,
    /// OpenMetrics text for Prometheus (`dump` only; families in docs/dump.md).
    Openmetrics,
}

/// Which view `dump` tables group by (the variant docs are also `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// Per process, as dmabuf_dump.
    Process,
    /// Per uid.
    App,
    /// Per purpose name.
    Name,
    /// Per exporter (heap).
    Heap,
}

/// `dmabufctl dump`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Only this process.
    pub pid: Option<i32>,
    /// Only processes of this uid.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Show the buffer x process grid (as dmabuf_dump -a).
    #[arg(short = 'a', conflicts_with = "b")]
    pub a: bool,
    /// Show per-buffer and per-exporter statistics (as dmabuf_dump -b).
    #[arg(short = 'b')]
    pub b: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Group the table by process (dmabuf_dump's layout), app (uid), name or heap.
    #[arg(long = "by", value_enum, default_value_t = GroupBy::Process)]
    pub by: GroupBy,
    /// Print sizes in exact bytes instead of dmabuf_dump's kB.
    #[arg(long)]
    pub bytes: bool,
    /// Where the scan looks: `auto` reads the BPF iterators when `dmabufctl bpf pin` pinned
    /// them, else /proc; `bpf` also loads them for this scan when nothing is pinned.
    #[arg(long, value_enum, default_value_t = crate::bpf::SourceChoice::Auto)]
    pub source: crate::bpf::SourceChoice,
    /// Root of the proc filesystem to scan (for tests and offline captures).
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
    /// Print a snapshot every SECONDS, one JSON line each (JSON Lines, whatever -o says), for
    /// `dmabufctl diff FILE@N FILE@M` and `dmabufctl top --replay FILE`.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with_all = ["a", "b"])]
    pub watch: Option<u64>,
    /// With --watch: stop after N snapshots.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// How `diff` prints (the variant docs are also `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// One aligned table per kind of group, for people.
    Table,
    /// JSON for programs (schema in docs/dump.md).
    Json,
}

/// `dmabufctl diff`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier snapshot: a `dump -o json` file, or FILE@N for snapshot N of a
    /// `dump --watch` file (1 the first, -1 the last).
    pub before: String,
    /// The later snapshot, as BEFORE.
    pub after: String,
    /// Leave out changes smaller than BYTES; K, M and G suffixes (powers of 1024) accepted.
    #[arg(long, value_name = "BYTES", default_value = "0")]
    pub threshold: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = DiffFormat::Table)]
    pub format: DiffFormat,
    /// Print sizes in exact bytes instead of kB.
    #[arg(long)]
    pub bytes: bool,
}

/// `dmabufctl top`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between frames (fractions allowed).
    #[arg(short = 'd', long = "delay", value_name = "SECONDS", default_value = "2",
          value_parser = top::parse_delay)]
    pub delay: std::time::Duration,
    /// Print plain frames one after another, no keys (logs, `adb shell`); also what a pipe or
    /// TERM=dumb gets.
    #[arg(short = 'b', long)]
    pub batch: bool,
    /// Stop after N frames.
    #[arg(short = 'n', long = "frames", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,
    /// Group by process, app (uid), name or heap; keys p, a, n and h switch.
    #[arg(long = "by", value_enum, default_value_t = GroupBy::Process)]
    pub by: GroupBy,
    /// Order rows by Rss, growth since start, growth since the last frame, or name; key s
    /// cycles.
    #[arg(long, value_enum, default_value_t = crate::top::Sort::Rss)]
    pub sort: crate::top::Sort,
    /// Print sizes in exact bytes instead of kB.
    #[arg(long)]
    pub bytes: bool,
    /// Show the snapshots of FILE (`dump --watch` output) one per frame instead of scanning.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Root of the proc filesystem to scan (for tests and offline captures).
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

/// `dmabufctl ledger` and `holders`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Only allocations asked for by this uid.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `dmabufctl serve`: field docs are the `--help` text.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: ADDR:PORT, or a bare PORT for loopback (127.0.0.1) only.
    #[arg(long, value_name = "ADDR:PORT", value_parser = serve::listen_addr)]
    pub metrics: std::net::SocketAddr,
    /// Root of the proc filesystem to scan (for tests and offline captures).
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

/// Runs `dmabufctl` with the process's arguments and returns its exit status.
pub fn main() -> i32 {
    crate::logging::init("dmabufctl", "warn,rsbinder=off");
    let cli = match parse::cli(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dmabufctl: {e}");
            e.exit_status()
        }
    }
}

fn run(cli: Cli) -> crate::Result<()> {
    if cli.global.service {
        #[cfg(feature = "binder")]
        return remote::run(cli.global.rpc.as_deref(), cli.command);
        #[cfg(not(feature = "binder"))]
        return Err(Error::Unsupported("this dmabufctl was built without binder support"));
    }
    match cli.command {
        Command::Heaps => alloc::heaps(),
        Command::Alloc(args) => alloc::alloc(&args),
        Command::Dump(args) => dump::dump(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Ledger(_) | Command::Holders(_) | Command::History(_) => {
            Err(Error::InvalidArgument(
                "the ledger lives in the service: use dmabufctl --service ledger, holders or history"
                    .into(),
            ))
        }
        Command::Diff(args) => diff::diff(&args),
        Command::Bpf(command) => bpf::bpf(&command),
        Command::Top(args) => {
            let options = dump::scan_options(&args.proc_root);
            let filter = crate::account::Filter::default();
            top::top(&args, || {
                let (model, source) = crate::bpf::scan(&options, crate::bpf::SourceChoice::Auto)?;
                let grouping = crate::account::Grouping::All;
                let report = crate::account::Report::from_model(model, &filter, grouping);
                Ok((report, source.as_str()))
            })
        }
    }
}

/// clap's usage errors span several lines; keep the promise of one line on stderr, but let
/// `--help` and `--version` print in full.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                EXIT_USAGE
            } else {
                0
            }
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("dmabufctl: {}", first.trim_start_matches("error: "));
            EXIT_USAGE
        }
    }
}
