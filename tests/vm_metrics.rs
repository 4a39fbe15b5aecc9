//! `dmabufctl serve --metrics` scraped by a real Prometheus, on the real kernel (tests/vm/run
//! with Prometheus in /extra: `tests/vm/metrics`). The test allocates a named buffer of a size
//! it chose, serves the metrics, lets Prometheus scrape them once a second and asks Prometheus'
//! HTTP API (PromQL) for that buffer's bytes, per name and per this process: both must be the
//! exact size. It also throws bad requests at the server, which must answer each with its status
//! and keep serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dmabufd::heap::{AllocRequest, Allocator};

const DMABUFCTL: &str = env!("CARGO_BIN_EXE_dmabufctl");
/// Not a power of two, so it cannot be confused with a default or a rounding.
const SIZE: u64 = 1024 * 1024 + 3 * 4096;
const PROMETHEUS: &str = "127.0.0.1:9090";

/// Kills a child when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 exchange: the raw request head is sent as given; returns status line and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s.write_all(request).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    exchange(addr, format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks Prometheus for `promql` until it has a sample (the first scrapes take a moment);
/// returns the sample's value as Prometheus returns it (a string).
fn query_until_present(promql: &str, deadline: Instant) -> String {
    let prometheus: SocketAddr = PROMETHEUS.parse().expect("addr");
    let path = format!("/api/v1/query?query={}", percent_encode(promql));
    loop {
        if let Ok(mut s) = TcpStream::connect(prometheus) {
            drop(s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()));
            let mut raw = String::new();
            if s.read_to_string(&mut raw).is_ok() {
                // 503 with a text body until Prometheus is ready.
                if let Some((_, body)) =
                    raw.split_once("\r\n\r\n").filter(|(head, _)| head.contains(" 200 "))
                {
                    let json: serde_json::Value = serde_json::from_str(body).expect("API JSON");
                    assert_eq!(json["status"], "success", "{body}");
                    let result = json["data"]["result"].as_array().expect("a vector").clone();
                    if let Some(sample) = result.first() {
                        assert_eq!(result.len(), 1, "one series for {promql}: {body}");
                        return sample["value"][1].as_str().expect("value").to_owned();
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never returned {promql}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scrapes_the_exact_bytes_of_a_buffer() {
    let pid = std::process::id();
    let name = format!("GL metrics {pid}");
    let allocator = Allocator::new();
    let req = AllocRequest { heap: "system", size: SIZE, name: name.as_bytes(), heap_flags: 0 };
    let _buffer = allocator.allocate(&req).expect("allocate");

    let mut server = Command::new(DMABUFCTL)
        .args(["serve", "--metrics", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dmabufctl serve");
    let mut stderr = BufReader::new(server.stderr.take().expect("stderr"));
    let server = Reaped(server);
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the serving line");
    let addr: SocketAddr = line
        .trim_end()
        .strip_prefix("dmabufctl: serving http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .expect("an address");
    assert!(addr.ip().is_loopback(), "a bare port listens on loopback only: {addr}");

    // Bad requests get their status and the server goes on.
    assert_eq!(exchange(addr, b"garbage\r\n\r\n").0, "HTTP/1.1 400 Bad Request");
    assert_eq!(exchange(addr, b"\xff\xfe\r\n\r\n").0, "HTTP/1.1 400 Bad Request");
    assert_eq!(get(addr, "/").0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    drop(TcpStream::connect(addr).expect("connect and hang up"));
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let want = format!("dmabuf_name_bytes{{name=\"{name}\"}} {SIZE}\n");
    assert!(body.contains(&want), "{body}");
    assert!(body.ends_with("# EOF\n"));

    let dir = std::env::temp_dir().join(format!("vm-metrics-{pid}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: dmabuf\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .expect("config");
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus on PATH (tests/vm/metrics puts it in /extra)");
    let _prometheus = Reaped(prometheus);

    let deadline = Instant::now() + Duration::from_secs(180);
    let by_name = query_until_present(&format!("dmabuf_name_bytes{{name=\"{name}\"}}"), deadline);
    assert_eq!(by_name, SIZE.to_string());
    let by_process =
        query_until_present(&format!("dmabuf_process_rss_bytes{{pid=\"{pid}\"}}"), deadline);
    assert_eq!(by_process, SIZE.to_string(), "this process holds that one buffer only");
    // The target is up: Prometheus' own parser accepted every scrape.
    let up = query_until_present("up{job=\"dmabuf\"}", deadline);
    assert_eq!(up, "1");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
