//! The commands the scan benchmark times, as a table (add a row to time one more), how each is
//! run (its own child process, stdout on /dev/null, wall time from spawn to reap and peak RSS
//! from `wait4`'s rusage) and how each is checked against the workload's ground truth.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workload::{Truth, BUF_SIZE};

/// Which program a row runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// AOSP's dmabuf_dump, found on PATH (tests/vm/run puts VM_EXTRA_DIR first on it).
    DmabufDump,
    /// This binary's `port` role: libdmabufinfo's strategy, ported (port.rs).
    Port,
    /// dmabufctl (`--dmabufctl`, default the one on PATH).
    Dmabufctl,
}

/// How a row's answer is checked, once per workload, before it is timed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The row's command with `-o json` (unless it has it): buffers, bytes, fd and map refs.
    Json,
    /// The port's `refs <fd refs> <map refs>` line.
    Port,
    /// dmabuf_dump's `dmabuf total: N kB` on its last line: the bytes of every buffer.
    DmabufTotal,
    /// Nothing: the row prints no report (start-up only, the floor under every other row).
    StartUp,
}

/// One row of the results: a command line and what comes with it.
pub struct Row {
    /// What the results table calls it.
    pub label: &'static str,
    pub program: Program,
    /// Arguments after the program.
    pub args: &'static [&'static str],
    /// dmabufctl commands run, untimed, before and after each run of this row (and its check).
    pub around: Option<(&'static [&'static str], &'static [&'static str])>,
    /// How its answer is compared with the workload's.
    pub check: Check,
}

const PIN: (&[&str], &[&str]) = (&["bpf", "pin"], &["bpf", "unpin"]);

/// Every row, in the order of each round. The first available row that scans (dmabuf_dump, else
/// the port) is the speedup reference; the start-up rows show the floor under each program.
pub const ROWS: &[Row] = &[
    Row {
        label: "dmabuf_dump -h (start-up only)",
        program: Program::DmabufDump,
        args: &["-h"],
        around: None,
        check: Check::StartUp,
    },
    Row {
        label: "dmabufctl --version (start-up only)",
        program: Program::Dmabufctl,
        args: &["--version"],
        around: None,
        check: Check::StartUp,
    },
    Row {
        label: "dmabuf_dump",
        program: Program::DmabufDump,
        args: &[],
        around: None,
        check: Check::DmabufTotal,
    },
    Row {
        label: "dmabuf_dump strategy (port)",
        program: Program::Port,
        args: &["port"],
        around: None,
        check: Check::Port,
    },
    Row {
        label: "dmabufctl dump --source procfs",
        program: Program::Dmabufctl,
        args: &["dump", "--source", "procfs"],
        around: None,
        check: Check::Json,
    },
    Row {
        label: "dmabufctl dump --source bpf",
        program: Program::Dmabufctl,
        args: &["dump", "--source", "bpf"],
        around: None,
        check: Check::Json,
    },
    Row {
        label: "dmabufctl dump",
        program: Program::Dmabufctl,
        args: &["dump"],
        around: None,
        check: Check::Json,
    },
    Row {
        label: "dmabufctl dump -o json",
        program: Program::Dmabufctl,
        args: &["dump", "-o", "json"],
        around: None,
        check: Check::Json,
    },
    Row {
        label: "dmabufctl dump (pinned: bpf pin)",
        program: Program::Dmabufctl,
        args: &["dump"],
        around: Some(PIN),
        check: Check::Json,
    },
];

/// Where the programs are, and which rows cannot run here (with why).
pub struct Tools {
    dmabuf_dump: Option<PathBuf>,
    dmabufctl: PathBuf,
    /// This binary: the port and the launcher.
    bench_exe: PathBuf,
    /// Why `bpf pin` rows are skipped, when they are.
    no_pin: Option<String>,
}

impl Tools {
    /// Finds the programs, and whether `dmabufctl bpf pin` works here.
    pub fn find(dmabufctl: Option<PathBuf>) -> Tools {
        let dmabufctl = dmabufctl.or_else(|| on_path("dmabufctl")).expect("dmabufctl on PATH");
        let mut tools = Tools {
            dmabuf_dump: on_path("dmabuf_dump"),
            bench_exe: std::env::current_exe().expect("current exe"),
            no_pin: None,
            dmabufctl,
        };
        // `bpf pin` exists and works here when it exits 0; then the pins are removed again.
        let (pin, unpin) = PIN;
        tools.no_pin = match run_quietly(&tools.dmabufctl_argv(pin)) {
            Ok(s) if s.success() => {
                let _ = run_quietly(&tools.dmabufctl_argv(unpin));
                None
            }
            Ok(s) => Some(format!("`dmabufctl bpf pin` failed or does not exist ({s})")),
            Err(e) => Some(format!("`dmabufctl bpf pin`: {e}")),
        };
        tools
    }

    /// The row's command line, or why it is skipped.
    pub fn argv(&self, row: &Row) -> Result<Vec<String>, String> {
        if row.around.is_some() {
            if let Some(why) = &self.no_pin {
                return Err(why.clone());
            }
        }
        let program = match row.program {
            Program::DmabufDump => {
                self.dmabuf_dump.as_deref().ok_or("dmabuf_dump is not on PATH")?
            }
            Program::Port => &self.bench_exe,
            Program::Dmabufctl => &self.dmabufctl,
        };
        Ok(argv(program, row.args))
    }

    fn dmabufctl_argv(&self, args: &[&str]) -> Vec<String> {
        argv(&self.dmabufctl, args)
    }

    /// Runs `f` between the row's untimed `around` commands.
    pub fn around<T>(&self, row: &Row, f: impl FnOnce() -> T) -> T {
        let Some((before, after)) = row.around else { return f() };
        let pinned = run_quietly(&self.dmabufctl_argv(before));
        assert!(pinned.as_ref().is_ok_and(ExitStatus::success), "{before:?}: {pinned:?}");
        let out = f();
        let _ = run_quietly(&self.dmabufctl_argv(after));
        out
    }

    /// Runs the row's check; on success, what it found out (the scan source of a JSON row).
    pub fn check(&self, row: &Row, argv: &[String], truth: &Truth) -> Result<String, String> {
        let mut argv = argv.to_vec();
        if row.check == Check::Json && !row.args.contains(&"-o") {
            argv.extend(["-o".into(), "json".into()]);
        }
        let out = self.around(row, || Command::new(&argv[0]).args(&argv[1..]).output());
        let out = out.map_err(|e| format!("{argv:?}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // dmabuf_dump's usage exits 1 on some versions: a start-up row only has to start.
        if row.check == Check::StartUp {
            return Ok("-".into());
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{argv:?}: {}: {}", out.status, err.trim()));
        }
        let found = match row.check {
            Check::Json => return json_truth(&text, truth),
            Check::Port => port_truth(&text),
            Check::DmabufTotal => {
                dmabuf_total_kib(&text).map(|kib| Truth { bytes: kib * 1024, ..*truth })
            }
            Check::StartUp => Some(*truth),
        };
        match found {
            Some(found) if found == *truth => Ok("-".into()),
            found => Err(format!("{argv:?} found {found:?}, the workload holds {truth:?}")),
        }
    }
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// From spawn to reap.
    pub wall: Duration,
    /// `ru_maxrss`.
    pub peak_rss_kib: u64,
}

impl Tools {
    /// Times `argv` through the launcher ([`launch`]), a fresh small process: a child spawned
    /// straight from the driver would report the driver's peak RSS (posix_spawn shares the
    /// parent's memory until exec, and the kernel counts that memory's peak in `ru_maxrss`).
    pub fn time(&self, argv: &[String]) -> io::Result<Sample> {
        let out =
            Command::new(&self.bench_exe).arg("run").args(argv).stdin(Stdio::null()).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u64> = text
            .strip_prefix("ran ")
            .and_then(|l| l.split_whitespace().map(|x| x.parse().ok()).collect())
            .ok_or_else(|| io::Error::other(format!("launcher: {text:?}")))?;
        match v[..] {
            [nanos, peak_rss_kib, 0] => {
                Ok(Sample { wall: Duration::from_nanos(nanos), peak_rss_kib })
            }
            _ => Err(io::Error::other(format!("{argv:?}: {text}"))),
        }
    }
}

/// Launcher role (`dmabufd-bench-scan run CMD ARG...`): runs CMD in its own process with stdin,
/// stdout and stderr on /dev/null and prints `ran <wall ns> <peak RSS KiB> <exit code>`: wall
/// time from spawn to reap, peak RSS (`ru_maxrss`) from `wait4`. The launcher's own peak (about
/// 1 MiB) is the floor of what a command can report.
pub fn launch(argv: &[String]) {
    let start = Instant::now();
    let (status, peak) = spawn_and_reap(argv).expect("spawn");
    let wall = start.elapsed();
    println!("ran {} {peak} {}", wall.as_nanos(), status.code().unwrap_or(-1));
}

fn run_quietly(argv: &[String]) -> io::Result<ExitStatus> {
    spawn_and_reap(argv).map(|(status, _)| status)
}

fn spawn_and_reap(argv: &[String]) -> io::Result<(ExitStatus, u64)> {
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4(2) on our own unreaped child, with pointers to live locals; std's `Child`
    // is not waited on afterwards.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(io::Error::last_os_error());
    }
    Ok((ExitStatus::from_raw(status), usage.ru_maxrss as u64))
}

fn argv(program: &Path, args: &[&str]) -> Vec<String> {
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The bench's buffers (names `bench ...`) in `dmabufctl dump -o json`, and the scan's source.
fn json_truth(text: &str, truth: &Truth) -> Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let sum = |refs: &Value| {
        refs.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
    };
    let mut found = Truth { buffers: 0, bytes: 0, fd_refs: 0, map_refs: 0 };
    for b in v["buffers"].as_array().into_iter().flatten() {
        if b["name"].as_str().is_some_and(|n| n.starts_with("bench ")) {
            found.buffers += 1;
            found.bytes += b["size"].as_u64().unwrap_or(0);
            found.fd_refs += sum(&b["fd_refs"]);
            found.map_refs += sum(&b["map_refs"]);
        }
    }
    let source = v["snapshot"]["source"].as_str().unwrap_or("?").to_string();
    if found == *truth {
        Ok(source)
    } else {
        Err(format!("source {source} found {found:?}, the workload holds {truth:?}"))
    }
}

/// The port's line `refs <fd refs> <map refs> <buffers>`.
fn port_truth(text: &str) -> Option<Truth> {
    let line = text.lines().find_map(|l| l.strip_prefix("refs "))?;
    let v: Vec<u64> = line.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let &[fd_refs, map_refs, buffers] = &v[..] else { return None };
    Some(Truth { buffers, bytes: buffers * BUF_SIZE, fd_refs, map_refs })
}

/// `dmabuf total: N kB` from dmabuf_dump's total line.
fn dmabuf_total_kib(text: &str) -> Option<u64> {
    let rest = text.split("dmabuf total:").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
