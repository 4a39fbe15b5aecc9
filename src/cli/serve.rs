//! `dmabufctl serve --metrics ADDR:PORT`: the OpenMetrics exposition over HTTP for Prometheus.
//!
//! Deliberately small: one connection at a time on a std listener, HTTP/1.1 `GET` (or `HEAD`)
//! of `/metrics` and nothing else, `Connection: close`. Each scrape runs one fresh scan, so a
//! value is never older than the scrape that reports it; Prometheus scrapes every few seconds,
//! far slower than a scan. A client cannot stall the server for longer than [`IO_TIMEOUT`], and
//! whatever it sends gets a status line (400, 404, 405, 431), never a crash.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::ServeArgs;
use crate::account::{Filter, Grouping, Report};
use crate::{openmetrics, scan, Error};

/// How long one client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head accepted (request line and headers); Prometheus sends a few hundred
/// bytes.
const MAX_HEAD: usize = 8192;

/// Parses `--metrics`: `ADDR:PORT`, `[V6ADDR]:PORT`, or a bare `PORT` meaning loopback, so
/// that exposing the metrics beyond the machine is always spelled out.
pub fn listen_addr(arg: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = arg.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    arg.parse().map_err(|_| format!("'{arg}' is not ADDR:PORT or PORT"))
}

pub fn serve(args: &ServeArgs) -> crate::Result<()> {
    let listener = TcpListener::bind(args.metrics)
        .map_err(|e| Error::io(format!("listening on {}", args.metrics), e))?;
    let local = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    // Tests bind port 0 and read the port from here.
    eprintln!("dmabufctl: serving http://{local}/metrics");
    let options = super::dump::scan_options(&args.proc_root);
    for stream in listener.incoming() {
        // A failed accept (the client gave up, fds exhausted) concerns that client only.
        let Ok(stream) = stream else { continue };
        if let Err(e) = answer(stream, &options) {
            log::info!("metrics client: {e}");
        }
    }
    Ok(())
}

/// Reads one request from `stream` and writes its response.
fn answer(mut stream: TcpStream, options: &scan::ScanOptions) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let response = match parse_request(&head) {
        Ok(request) => {
            let body = match crate::bpf::scan(options, crate::bpf::SourceChoice::Auto) {
                Ok((model, _)) => Ok(openmetrics::render(&Report::from_model(
                    model,
                    &Filter::default(),
                    Grouping::All,
                ))),
                Err(e) => Err(e.to_string()),
            };
            match body {
                Ok(body) => Response::ok(body, request.head_only),
                Err(e) => {
                    Response::error(500, "Internal Server Error", &format!("scan failed: {e}"))
                }
            }
        }
        Err(status) => status.response(),
    };
    stream.write_all(&response.bytes())?;
    stream.flush()
}

/// Reads until the blank line that ends the head, at most [`MAX_HEAD`] bytes (a longer head is
/// returned as is and rejected by [`parse_request`]).
fn read_head(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while head.len() <= MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// A request this server answers with metrics.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// `HEAD`: headers only.
    head_only: bool,
}

/// Why a request gets no metrics.
#[derive(Debug, PartialEq, Eq)]
enum Rejection {
    /// Not an HTTP/1.x request line, or the head never ended.
    Malformed,
    /// Head longer than [`MAX_HEAD`].
    TooLarge,
    /// A method other than GET or HEAD.
    Method,
    /// A path other than `/metrics`.
    NotFound,
}

impl Rejection {
    fn response(&self) -> Response {
        match self {
            Rejection::Malformed => Response::error(400, "Bad Request", "bad request"),
            Rejection::TooLarge => {
                Response::error(431, "Request Header Fields Too Large", "request head too large")
            }
            Rejection::Method => Response::error(405, "Method Not Allowed", "only GET and HEAD"),
            Rejection::NotFound => Response::error(404, "Not Found", "metrics are at /metrics"),
        }
    }
}

/// Checks a request head: pure, so any bytes can be thrown at it.
fn parse_request(head: &[u8]) -> Result<Request, Rejection> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(if head.len() > MAX_HEAD { Rejection::TooLarge } else { Rejection::Malformed });
    };
    if end > MAX_HEAD {
        return Err(Rejection::TooLarge);
    }
    let line = head[..end].split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    if !matches!(version, b"HTTP/1.0" | b"HTTP/1.1") || target.is_empty() {
        return Err(Rejection::Malformed);
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        m if !m.is_empty() && m.iter().all(u8::is_ascii_uppercase) => {
            return Err(Rejection::Method)
        }
        _ => return Err(Rejection::Malformed),
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return Err(Rejection::NotFound);
    }
    Ok(Request { head_only })
}

/// A complete HTTP/1.1 response.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn ok(body: String, head_only: bool) -> Response {
        Response {
            status: 200,
            reason: "OK",
            content_type: openmetrics::CONTENT_TYPE,
            body,
            head_only,
        }
    }

    fn error(status: u16, reason: &'static str, message: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n"),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_defaults_to_loopback() {
        assert_eq!(listen_addr("9100").unwrap(), "127.0.0.1:9100".parse().unwrap());
        assert_eq!(listen_addr("0.0.0.0:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(listen_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(listen_addr("localhost:9100").is_err());
        assert!(listen_addr("70000").is_err());
    }

    #[test]
    fn prometheus_request_is_served() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(parse_request(head), Ok(Request { head_only: false }));
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ok(Request { head_only: true })
        );
    }

    #[test]
    fn bad_requests_are_rejected_with_a_status() {
        let cases: [(&[u8], Rejection); 9] = [
            (b"GET / HTTP/1.1\r\n\r\n", Rejection::NotFound),
            (b"GET /metrics/x HTTP/1.1\r\n\r\n", Rejection::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Rejection::Method),
            (b"GET /metrics HTTP/2\r\n\r\n", Rejection::Malformed),
            (b"GET /metrics\r\n\r\n", Rejection::Malformed),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Rejection::Malformed),
            (b"GET /metrics HTTP/1.1\r\n", Rejection::Malformed),
            (b"\xff\x00 /metrics HTTP/1.1\r\n\r\n", Rejection::Malformed),
            (b"", Rejection::Malformed),
        ];
        for (head, want) in cases {
            assert_eq!(parse_request(head), Err(want), "{}", String::from_utf8_lossy(head));
        }
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_request(&big), Err(Rejection::TooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&big), Err(Rejection::TooLarge));
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = Response::ok("a 1\n# EOF\n".into(), false).bytes();
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nContent-Length: 10\r\nConnection: close\r\n\r\na 1\n# EOF\n"));
        let head = String::from_utf8(Response::ok("abc".into(), true).bytes()).unwrap();
        assert!(head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
        let e = String::from_utf8(Rejection::NotFound.response().bytes()).unwrap();
        assert!(e.starts_with("HTTP/1.1 404 Not Found\r\n"), "{e}");
    }

    #[test]
    fn read_head_stops_at_the_blank_line_or_the_limit() {
        let mut input: &[u8] = b"GET /metrics HTTP/1.1\r\n\r\n";
        assert_eq!(read_head(&mut input).unwrap(), b"GET /metrics HTTP/1.1\r\n\r\n");
        let endless = vec![b'a'; MAX_HEAD * 4];
        let head = read_head(&mut endless.as_slice()).unwrap();
        assert!(head.len() <= MAX_HEAD + 1024);
    }
}
