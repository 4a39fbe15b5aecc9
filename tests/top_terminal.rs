//! `dmabufctl top` as a person uses it, on the host: in a real terminal (tmux: a 120x40 pane,
//! keys sent with send-keys, the screen read with capture-pane) and as plain frames (`--batch`,
//! TERM=dumb), over a replay file of three snapshots this test writes through the library, so
//! every row's Rss and change is known exactly and no dma-buf is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dmabufd::account::{Buffer, Filter, Model, Name, Process, Report};
use dmabufd::snapshot::{json, Meta, FORMAT_VERSION};

const KIB: u64 = 1024;

/// A buffer of `kib` KiB named `name`, held through one fd by each of `pids`.
fn buffer(inode: u64, kib: u64, name: &str, pids: &[i32]) -> Buffer {
    Buffer {
        inode,
        size: kib * KIB,
        exporter: Some("system".into()),
        name: Some(Name::from(name.as_bytes().to_vec())),
        fd_refs: pids.iter().map(|&p| (p, 1)).collect(),
        ..Buffer::default()
    }
}

/// Snapshot `n` (1..=3) of a camera session: the camera adds a 2 MiB buffer and a codec appears
/// in 2; SurfaceFlinger frees its GL buffer in 3. A 256 KiB firmware buffer is kernel-only.
fn model(n: u32) -> Model {
    let mut buffers = vec![buffer(11, 1024, "CAMERA", &[200]), buffer(12, 256, "fw", &[])];
    let mut processes = vec![
        Process { pid: 100, uid: 1000, comm: "surfaceflinger".into() },
        Process { pid: 200, uid: 1047, comm: "camera".into() },
    ];
    if n < 3 {
        buffers.push(buffer(10, 64, "GL", &[100]));
    }
    if n >= 2 {
        buffers.push(buffer(13, 2048, "CAMERA", &[200]));
        buffers.push(buffer(14, 512, "codec", &[300]));
        processes.push(Process { pid: 300, uid: 1046, comm: "codec".into() });
    }
    let exported = buffers.iter().map(|b| b.size).sum();
    Model {
        buffers: buffers.into_iter().map(|b| (b.inode, b)).collect(),
        processes: processes.into_iter().map(|p| (p.pid, p)).collect::<BTreeMap<_, _>>(),
        exported_bytes: Some(exported),
        unreadable_processes: 0,
        coverage: Default::default(),
    }
}

/// The three snapshots as `dump --watch` writes them, two seconds apart, in a file of the
/// calling test's own (tests run in parallel).
fn replay_file(test: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("top-{test}.jsonl"));
    let mut text = String::new();
    for n in 1..=3u32 {
        let secs = 1_795_597_200 + 2 * u64::from(n - 1);
        let meta = Meta {
            format_version: FORMAT_VERSION,
            time_unix: secs,
            time: dmabufd::report::rfc3339_utc(secs),
            kernel: "6.12.0".into(),
            host: "phone".into(),
            source: "procfs".into(),
        };
        text += &json(&Report::build(&model(n), &Filter::default()), &meta, false).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn dmabufctl() -> &'static str {
    env!("CARGO_BIN_EXE_dmabufctl")
}

/// Frame 1 grouped by process, Rss first.
const FRAME_1: &str = "\
dmabufctl top  2026-11-25T09:00:00Z  frame 1  by process  sort rss
dma-bufs 1344 kB  since start 0 kB  since last 0 kB

Process                 Rss  Buffers  Since start  Since last
camera:200          1024 kB        1         0 kB        0 kB
surfaceflinger:100    64 kB        1         0 kB        0 kB
";

/// Frame 2 grouped by process: the camera grew, the codec is new.
const FRAME_2: &str = "\
dmabufctl top  2026-11-25T09:00:02Z  frame 2  by process  sort rss
dma-bufs 3904 kB  since start +2560 kB  since last +2560 kB

Process                 Rss  Buffers  Since start  Since last
camera:200          3072 kB        2     +2048 kB    +2048 kB
codec:300            512 kB        1          new         new
surfaceflinger:100    64 kB        1         0 kB        0 kB
";

/// Frame 3 grouped by process: SurfaceFlinger freed its GL buffer.
const FRAME_3: &str = "\
dmabufctl top  2026-11-25T09:00:04Z  frame 3  by process  sort rss
dma-bufs 3840 kB  since start +2496 kB  since last -64 kB

Process                 Rss  Buffers  Since start  Since last
camera:200          3072 kB        2     +2048 kB        0 kB
codec:300            512 kB        1          new        0 kB
surfaceflinger:100     0 kB        0       -64 kB      -64 kB
";

#[test]
fn batch_prints_every_replayed_frame() {
    let replay = replay_file("batch");
    let out =
        Command::new(dmabufctl()).args(["top", "-b", "--replay"]).arg(&replay).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let frames = String::from_utf8(out.stdout).unwrap();
    assert_eq!(frames, format!("{FRAME_1}\n{FRAME_2}\n{FRAME_3}\n"));

    let out = Command::new(dmabufctl())
        .args(["top", "-b", "-n", "2", "--by", "name", "--sort", "start", "--bytes", "--replay"])
        .arg(&replay)
        .output()
        .unwrap();
    let frames = String::from_utf8(out.stdout).unwrap();
    let second = frames.split("\n\n").nth(2).unwrap_or_default();
    assert_eq!(
        second,
        "dmabufctl top  2026-11-25T09:00:02Z  frame 2  by name  sort start\n\
         dma-bufs 3997696 B  since start +2621440 B  since last +2621440 B"
    );
    assert!(
        frames.ends_with(
            "Name          Rss  Buffers  Since start  Since last\n\
             CAMERA  3145728 B        2   +2097152 B  +2097152 B\n\
             codec    524288 B        1          new         new\n\
             fw       262144 B        1          0 B         0 B\n\
             GL        65536 B        1          0 B         0 B\n\n"
        ),
        "{frames}"
    );
}

#[test]
fn bad_replay_files_are_one_line_and_status_2() {
    let bad = Path::new(env!("CARGO_TARGET_TMPDIR")).join("top-bad.jsonl");
    std::fs::write(&bad, "{\"snapshot\": {\"format_version\": 7}}\n").unwrap();
    let out: Output =
        Command::new(dmabufctl()).args(["top", "-b", "--replay"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dmabufctl: invalid argument: {}: snapshot 1: snapshot format version 7; this dmabufctl reads version 1\n",
            bad.display()
        )
    );
}

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server of its own per test (`name`), running `command` in a 120x40 pane.
    fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux { socket: format!("dmabufd-top-{}-{name}", std::process::id()) };
        let ok = tmux
            .cmd(&["new-session", "-d", "-x", "120", "-y", "40", "-s", "top", command])
            .status
            .success();
        assert!(ok, "tmux new-session (is tmux installed? scripts/setup installs it)");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux (scripts/setup installs it)")
    }

    /// The pane's text, trailing spaces and empty lines removed.
    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "top"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let end = lines.iter().rposition(|l| !l.is_empty()).map_or(0, |i| i + 1);
        lines[..end].join("\n") + "\n"
    }

    /// Waits until the screen shows `want` (at most 10 s) and returns it.
    fn wait_for(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen();
            if screen.contains(want) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &str) {
        assert!(self.cmd(&["send-keys", "-t", "top", keys]).status.success());
    }

    fn alive(&self) -> bool {
        self.cmd(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The full-screen view: frame 1, then space for the next frame, n/h/a/p to regroup, s to
/// re-sort, q to quit; each screen's rows exactly.
#[test]
fn full_screen_keys_switch_grouping_sort_and_quit() {
    let replay = replay_file("full");
    // A delay of an hour: frames advance only when space is pressed.
    let command =
        format!("TERM=xterm-256color {} top -d 3600 --replay {}", dmabufctl(), replay.display());
    let tmux = Tmux::start("keys", &command);
    let keys_line = "p process  a app  n name  h heap  s sort  space refresh  q quit";

    let screen = tmux.wait_for("camera:200");
    assert!(screen.starts_with(FRAME_1), "{screen}");
    assert!(screen.ends_with(&format!("{keys_line}\n")), "the key line is the last row: {screen}");
    assert_eq!(screen.lines().count(), 40, "full screen: {screen}");

    tmux.keys("Space");
    let screen = tmux.wait_for("frame 2");
    assert!(screen.starts_with(FRAME_2), "{screen}");

    tmux.keys("n");
    let screen = tmux.wait_for("by name");
    assert!(
        screen.starts_with(
            "dmabufctl top  2026-11-25T09:00:02Z  frame 2  by name  sort rss\n\
             dma-bufs 3904 kB  since start +2560 kB  since last +2560 kB\n\
             \n\
             Name        Rss  Buffers  Since start  Since last\n\
             CAMERA  3072 kB        2     +2048 kB    +2048 kB\n\
             codec    512 kB        1          new         new\n\
             fw       256 kB        1         0 kB        0 kB\n\
             GL        64 kB        1         0 kB        0 kB\n\
             \n"
        ),
        "{screen}"
    );

    tmux.keys("Space");
    tmux.keys("a");
    let screen = tmux.wait_for("by app");
    assert!(
        screen.starts_with(
            "dmabufctl top  2026-11-25T09:00:04Z  frame 3  by app  sort rss\n\
             dma-bufs 3840 kB  since start +2496 kB  since last -64 kB\n\
             \n\
             Uid         Rss  Buffers  Since start  Since last\n\
             1047    3072 kB        2     +2048 kB        0 kB\n\
             1046     512 kB        1          new        0 kB\n\
             kernel   256 kB        1         0 kB        0 kB\n\
             \n"
        ),
        "uid 1000 holds nothing any more: {screen}"
    );

    tmux.keys("h");
    let screen = tmux.wait_for("by heap");
    assert!(screen.contains("\nExporter      Rss  Buffers  Since start  Since last\nsystem    3840 kB        4     +2496 kB      -64 kB\n"), "{screen}");

    tmux.keys("p");
    tmux.keys("s");
    tmux.keys("s");
    let screen = tmux.wait_for("sort last");
    assert!(
        screen.contains(
            "camera:200          3072 kB        2     +2048 kB        0 kB\n\
             codec:300            512 kB        1          new        0 kB\n\
             surfaceflinger:100     0 kB        0       -64 kB      -64 kB\n"
        ),
        "{screen}"
    );

    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!tmux.alive(), "q quits: {}", tmux.screen());
}

/// TERM=dumb gets plain frames, as --batch does, in the same terminal.
#[test]
fn dumb_terminals_get_plain_frames() {
    let replay = replay_file("dumb");
    let command =
        format!("TERM=dumb {} top -n 2 --replay {}; sleep 30", dmabufctl(), replay.display());
    let tmux = Tmux::start("dumb", &command);
    let screen = tmux.wait_for("frame 2");
    assert_eq!(screen, format!("{FRAME_1}\n{FRAME_2}"));
}
