//! Metrics: the Prometheus text exposition (`podspawn status --prometheus` and the socket-activated
//! metrics endpoint), the human `podspawn status` text, and a minimal one-request HTTP responder for
//! the endpoint (systemd `Accept=yes` hands us one connected socket per client).
//!
//! HTTP behaviour of [`serve_one`]:
//! - `GET /metrics` or `GET /` (a query string is ignored) → 200, `text/plain; version=0.0.4`.
//! - `HEAD` on those paths → the same headers, no body.
//! - another method on those paths → 405 with `Allow: GET, HEAD`.
//! - any other path → 404 (whatever the method).
//! - a malformed request line (not `METHOD SP target SP HTTP/1.x`) or a connection closed before the
//!   end of the request head → 400.
//! - a request head (request line plus headers) longer than 64 KiB → 431 Request Header Fields Too Large.
//! - `body()` failing → 503 with its message as the text body.
//!
//! Every response carries `Content-Length` and `Connection: close`. A read error (e.g. the caller's
//! read timeout expiring) is returned as `Err` without writing a response.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};

/// Container removal reasons, in display order. Always exported, 0 when absent.
pub const REMOVAL_REASONS: [&str; 7] = [
    "disconnect",
    "grace-expired",
    "ttl",
    "max-lifetime",
    "orphan",
    "stop",
    "user-removed",
];

/// Largest request head `serve_one` reads.
pub const MAX_HEAD: usize = 64 * 1024;

/// The Prometheus content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub sessions_running: u64,
    pub sessions_grace: u64,
    pub sessions_idle: u64,
    pub connections: u64,
    pub containers_docker: u64,
    pub oldest_session_seconds: u64,
    pub cleanup_passes: u64,
    /// container removals by reason (disconnect, grace-expired, ttl, max-lifetime, orphan, stop)
    pub removals: BTreeMap<String, u64>,
}

impl Snapshot {
    pub fn sessions_total(&self) -> u64 {
        self.sessions_running
            .saturating_add(self.sessions_grace)
            .saturating_add(self.sessions_idle)
    }

    /// Removals in display order: the six known reasons, then any others sorted by name.
    fn removals_ordered(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = REMOVAL_REASONS
            .iter()
            .map(|r| (*r, self.removals.get(*r).copied().unwrap_or(0)))
            .collect();
        out.extend(
            self.removals
                .iter()
                .filter(|(k, _)| !REMOVAL_REASONS.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), *v)),
        );
        out
    }
}

/// Escapes a label value per the text format (backslash, double quote, newline).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Prometheus text format 0.0.4. Reasons outside the six known ones (should a caller add one) are
/// exported too, after them.
pub fn render_prometheus(s: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "podspawn_sessions",
        "gauge",
        "Sessions (user containers tracked by the broker) by state.",
    );
    for (state, v) in [
        ("running", s.sessions_running),
        ("grace_period", s.sessions_grace),
        ("idle", s.sessions_idle),
    ] {
        let _ = writeln!(out, "podspawn_sessions{{state=\"{state}\"}} {v}");
    }
    family(
        &mut out,
        "podspawn_sessions_total",
        "gauge",
        "Sessions in any state.",
    );
    let _ = writeln!(out, "podspawn_sessions_total {}", s.sessions_total());
    family(
        &mut out,
        "podspawn_connections",
        "gauge",
        "Active SSH connections attached to sessions.",
    );
    let _ = writeln!(out, "podspawn_connections {}", s.connections);
    family(
        &mut out,
        "podspawn_containers_docker",
        "gauge",
        "Containers labelled managed-by=podspawn present in Docker.",
    );
    let _ = writeln!(out, "podspawn_containers_docker {}", s.containers_docker);
    family(
        &mut out,
        "podspawn_oldest_session_seconds",
        "gauge",
        "Age of the oldest session in seconds (0 when there is none).",
    );
    let _ = writeln!(
        out,
        "podspawn_oldest_session_seconds {}",
        s.oldest_session_seconds
    );
    family(
        &mut out,
        "podspawn_cleanup_passes_total",
        "counter",
        "Cleanup passes run.",
    );
    let _ = writeln!(out, "podspawn_cleanup_passes_total {}", s.cleanup_passes);
    family(
        &mut out,
        "podspawn_container_removals_total",
        "counter",
        "Containers removed, by reason.",
    );
    for (reason, v) in s.removals_ordered() {
        let _ = writeln!(
            out,
            "podspawn_container_removals_total{{reason=\"{}\"}} {v}",
            escape_label(reason)
        );
    }
    out
}

/// A duration as its two most significant units: "45s", "3m12s", "2h3m", "1d4h".
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The human `podspawn status` text. `Oldest:` is omitted when there is no session; the removal
/// breakdown lists non-zero reasons only.
pub fn render_human(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Sessions:    {} total ({} running, {} grace, {} idle)",
        s.sessions_total(),
        s.sessions_running,
        s.sessions_grace,
        s.sessions_idle
    );
    let _ = writeln!(out, "Connections: {} active", s.connections);
    let _ = writeln!(out, "Containers:  {} in Docker", s.containers_docker);
    if s.oldest_session_seconds > 0 {
        let _ = writeln!(
            out,
            "Oldest:      {}",
            human_duration(s.oldest_session_seconds)
        );
    }
    let removals: Vec<(&str, u64)> = s
        .removals_ordered()
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .collect();
    let total = removals
        .iter()
        .fold(0u64, |acc, (_, v)| acc.saturating_add(*v));
    let _ = write!(
        out,
        "Cleanup:     {} passes, {total} removals",
        s.cleanup_passes
    );
    if !removals.is_empty() {
        let parts: Vec<String> = removals.iter().map(|(r, v)| format!("{r} {v}")).collect();
        let _ = write!(out, " ({})", parts.join(", "));
    }
    out.push('\n');
    out
}

/// Where the end of the request head is (index just past the blank line), accepting bare LF line
/// endings as RFC 9112 allows.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    (start..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else if buf[i..].starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    Truncated,
}

fn read_head<S: Read>(stream: &mut S) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let want = chunk.len().min(MAX_HEAD + 1 - buf.len());
        let n = match stream.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Head::Truncated);
        }
        let from = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, from) {
            if end > MAX_HEAD {
                return Ok(Head::TooLarge);
            }
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `METHOD SP target SP HTTP/1.x` → (method, path without query), or None when malformed.
fn parse_request_line(head: &[u8]) -> Option<(String, String)> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !method.bytes().all(is_tchar) {
        return None;
    }
    let v = version.strip_prefix("HTTP/1.")?;
    if v.len() != 1 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // Absolute form (http://host/path) → its path.
    let target = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        None => target,
    };
    if !target.starts_with('/') {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some((method.to_string(), path.to_string()))
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn respond<S: Write>(
    stream: &mut S,
    code: u16,
    content_type: &str,
    extra: &str,
    body: &str,
    send_body: bool,
) -> std::io::Result<u16> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason_phrase(code),
        body.len()
    );
    if send_body {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()?;
    Ok(code)
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Serves exactly one HTTP/1.x request on a connected stream (see the module docs for the rules).
/// The caller sets the read timeout; `body` is called only for a GET or HEAD of `/metrics` or `/`.
/// Its error, whatever its type, becomes the text of a 503 response.
pub fn serve_one<S: Read + Write, E: std::fmt::Display>(
    stream: &mut S,
    body: &mut dyn FnMut() -> Result<String, E>,
) -> std::io::Result<u16> {
    let head = match read_head(stream)? {
        Head::Complete(h) => h,
        Head::TooLarge => {
            return respond(stream, 431, TEXT, "", "request head too large\n", true);
        }
        Head::Truncated => return respond(stream, 400, TEXT, "", "incomplete request\n", true),
    };
    let Some((method, path)) = parse_request_line(&head) else {
        return respond(stream, 400, TEXT, "", "malformed request line\n", true);
    };
    if path != "/metrics" && path != "/" {
        return respond(stream, 404, TEXT, "", "not found; try /metrics\n", true);
    }
    let send_body = match method.as_str() {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return respond(
                stream,
                405,
                TEXT,
                "Allow: GET, HEAD\r\n",
                "method not allowed\n",
                true,
            )
        }
    };
    match body() {
        Ok(text) => respond(stream, 200, CONTENT_TYPE, "", &text, send_body),
        Err(msg) => {
            let mut text = msg.to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            respond(stream, 503, TEXT, "", &text, send_body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Input delivered in the given chunks (one per read call, split further if the reader's buffer
    /// is smaller); output collected.
    struct Mem {
        input: VecDeque<Vec<u8>>,
        output: Vec<u8>,
        reads: usize,
        fail_read: Option<ErrorKind>,
    }

    impl Mem {
        fn new(chunks: &[&[u8]]) -> Mem {
            Mem {
                input: chunks.iter().map(|c| c.to_vec()).collect(),
                output: Vec::new(),
                reads: 0,
                fail_read: None,
            }
        }
        fn one(req: &str) -> Mem {
            Mem::new(&[req.as_bytes()])
        }
        fn out(&self) -> String {
            String::from_utf8(self.output.clone()).unwrap()
        }
    }

    impl Read for Mem {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            let Some(mut chunk) = self.input.pop_front() else {
                return match self.fail_read {
                    Some(k) => Err(std::io::Error::new(k, "timed out")),
                    None => Ok(0),
                };
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                self.input.push_front(chunk.split_off(n));
            }
            Ok(n)
        }
    }

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Resp {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn parse(out: &str) -> Resp {
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap();
        assert!(status.starts_with("HTTP/1.1 "), "{status}");
        let code = status[9..12].parse().unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        Resp {
            code,
            headers,
            body: body.to_string(),
        }
    }

    /// Runs serve_one; returns (status, parsed response, body() calls).
    fn run(mut m: Mem, result: Result<&str, &str>) -> (u16, Resp, usize) {
        let mut calls = 0;
        let mut body = || {
            calls += 1;
            result.map(str::to_string).map_err(str::to_string)
        };
        let code = serve_one(&mut m, &mut body).unwrap();
        let r = parse(&m.out());
        assert_eq!(r.code, code);
        assert_eq!(r.header("Connection"), Some("close"));
        (code, r, calls)
    }

    fn sample() -> Snapshot {
        let mut removals = BTreeMap::new();
        removals.insert("disconnect".to_string(), 3);
        removals.insert("grace-expired".to_string(), 2);
        removals.insert("orphan".to_string(), 2);
        Snapshot {
            sessions_running: 3,
            sessions_grace: 1,
            sessions_idle: 1,
            connections: 4,
            containers_docker: 5,
            oldest_session_seconds: 2 * 3600 + 3 * 60 + 7,
            cleanup_passes: 12,
            removals,
        }
    }

    #[test]
    fn prometheus_exact() {
        let want = "\
# HELP podspawn_sessions Sessions (user containers tracked by the broker) by state.
# TYPE podspawn_sessions gauge
podspawn_sessions{state=\"running\"} 3
podspawn_sessions{state=\"grace_period\"} 1
podspawn_sessions{state=\"idle\"} 1
# HELP podspawn_sessions_total Sessions in any state.
# TYPE podspawn_sessions_total gauge
podspawn_sessions_total 5
# HELP podspawn_connections Active SSH connections attached to sessions.
# TYPE podspawn_connections gauge
podspawn_connections 4
# HELP podspawn_containers_docker Containers labelled managed-by=podspawn present in Docker.
# TYPE podspawn_containers_docker gauge
podspawn_containers_docker 5
# HELP podspawn_oldest_session_seconds Age of the oldest session in seconds (0 when there is none).
# TYPE podspawn_oldest_session_seconds gauge
podspawn_oldest_session_seconds 7387
# HELP podspawn_cleanup_passes_total Cleanup passes run.
# TYPE podspawn_cleanup_passes_total counter
podspawn_cleanup_passes_total 12
# HELP podspawn_container_removals_total Containers removed, by reason.
# TYPE podspawn_container_removals_total counter
podspawn_container_removals_total{reason=\"disconnect\"} 3
podspawn_container_removals_total{reason=\"grace-expired\"} 2
podspawn_container_removals_total{reason=\"ttl\"} 0
podspawn_container_removals_total{reason=\"max-lifetime\"} 0
podspawn_container_removals_total{reason=\"orphan\"} 2
podspawn_container_removals_total{reason=\"stop\"} 0
podspawn_container_removals_total{reason=\"user-removed\"} 0
";
        assert_eq!(render_prometheus(&sample()), want);
    }

    #[test]
    fn prometheus_empty_snapshot_has_all_series_at_zero() {
        let text = render_prometheus(&Snapshot::default());
        assert!(text.ends_with('\n'));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 3 + 5 + REMOVAL_REASONS.len());
        assert!(samples.iter().all(|l| l.ends_with(" 0")), "{text}");
        for r in REMOVAL_REASONS {
            assert!(text.contains(&format!(
                "podspawn_container_removals_total{{reason=\"{r}\"}} 0\n"
            )));
        }
    }

    #[test]
    fn prometheus_extra_reasons_are_escaped() {
        let mut s = Snapshot::default();
        s.removals.insert("we\"ird\\\nreason".into(), 7);
        s.removals.insert("ttl".into(), 1);
        s.sessions_running = u64::MAX;
        s.sessions_idle = 1;
        let text = render_prometheus(&s);
        assert!(text.contains("podspawn_container_removals_total{reason=\"ttl\"} 1\n"));
        assert!(text
            .contains("podspawn_container_removals_total{reason=\"we\\\"ird\\\\\\nreason\"} 7\n"));
        assert!(text.contains(&format!("podspawn_sessions_total {}\n", u64::MAX)));
        assert!(text.ends_with("reason\"} 7\n"));
    }

    #[test]
    fn human_example() {
        assert_eq!(
            render_human(&sample()),
            "Sessions:    5 total (3 running, 1 grace, 1 idle)\nConnections: 4 active\nContainers:  5 in Docker\nOldest:      2h3m\nCleanup:     12 passes, 7 removals (disconnect 3, grace-expired 2, orphan 2)\n"
        );
    }

    #[test]
    fn human_empty() {
        assert_eq!(
            render_human(&Snapshot::default()),
            "Sessions:    0 total (0 running, 0 grace, 0 idle)\nConnections: 0 active\nContainers:  0 in Docker\nCleanup:     0 passes, 0 removals\n"
        );
        let mut s = Snapshot::default();
        s.removals.insert("stop".into(), 0);
        s.removals.insert("ttl".into(), 1);
        assert!(render_human(&s).ends_with("Cleanup:     0 passes, 1 removals (ttl 1)\n"));
    }

    #[test]
    fn durations() {
        for (s, want) in [
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (192, "3m12s"),
            (3600, "1h0m"),
            (7380, "2h3m"),
            (86_399, "23h59m"),
            (86_400, "1d0h"),
            (100_000, "1d3h"),
        ] {
            assert_eq!(human_duration(s), want);
        }
    }

    #[test]
    fn snapshot_serde_round_trip() {
        let s = sample();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&j).unwrap(), s);
    }

    #[test]
    fn get_metrics_200() {
        for req in [
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET /metrics?name[]=x HTTP/1.1\r\n\r\n",
            "GET http://host:9100/metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\nHost: x\n\n",
        ] {
            let (code, r, calls) = run(Mem::one(req), Ok("a 1\n"));
            assert_eq!(code, 200, "{req:?}");
            assert_eq!(calls, 1);
            assert_eq!(r.header("Content-Type"), Some(CONTENT_TYPE));
            assert_eq!(r.header("Content-Length"), Some("4"));
            assert_eq!(r.body, "a 1\n");
        }
    }

    #[test]
    fn get_serves_real_exposition() {
        let text = render_prometheus(&sample());
        let mut m = Mem::one("GET /metrics HTTP/1.1\r\n\r\n");
        let mut body = || Ok::<_, String>(render_prometheus(&sample()));
        assert_eq!(serve_one(&mut m, &mut body).unwrap(), 200);
        let r = parse(&m.out());
        assert_eq!(r.body, text);
        assert_eq!(
            r.header("Content-Length"),
            Some(text.len().to_string().as_str())
        );
    }

    #[test]
    fn head_has_headers_only() {
        let (code, r, calls) = run(Mem::one("HEAD /metrics HTTP/1.1\r\n\r\n"), Ok("abc\n"));
        assert_eq!(code, 200);
        assert_eq!(calls, 1);
        assert_eq!(r.header("Content-Length"), Some("4"));
        assert_eq!(r.header("Content-Type"), Some(CONTENT_TYPE));
        assert_eq!(r.body, "");
    }

    #[test]
    fn other_methods_405() {
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "get", "BREW"] {
            let req = format!("{m} /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
            let (code, r, calls) = run(Mem::one(&req), Ok("x"));
            assert_eq!(code, 405, "{m}");
            assert_eq!(calls, 0);
            assert_eq!(r.header("Allow"), Some("GET, HEAD"));
            assert_eq!(
                r.header("Content-Length"),
                Some(r.body.len().to_string().as_str())
            );
        }
    }

    #[test]
    fn other_paths_404() {
        for req in [
            "GET /metricsx HTTP/1.1\r\n\r\n",
            "GET /favicon.ico HTTP/1.1\r\n\r\n",
            "GET //metrics HTTP/1.1\r\n\r\n",
            "POST /admin HTTP/1.1\r\n\r\n",
            "GET /metrics/ HTTP/1.1\r\n\r\n",
        ] {
            let (code, r, calls) = run(Mem::one(req), Ok("x"));
            assert_eq!(code, 404, "{req:?}");
            assert_eq!(calls, 0);
            assert!(!r.body.is_empty());
        }
    }

    #[test]
    fn malformed_400() {
        for req in [
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/2.0\r\n\r\n",
            "GET /metrics HTTP/1.10\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            " GET /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "\r\n\r\n",
            "GET /m\u{e9}trics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n", // EOF before the blank line
            "",                          // EOF at once
        ] {
            let (code, _r, calls) = run(Mem::one(req), Ok("x"));
            assert_eq!(code, 400, "{req:?}");
            assert_eq!(calls, 0);
        }
        let (code, _, _) = run(Mem::new(&[b"GET /\xff HTTP/1.1\r\n\r\n"]), Ok("x"));
        assert_eq!(code, 400);
    }

    #[test]
    fn request_split_across_reads() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n";
        // Byte by byte.
        let chunks: Vec<&[u8]> = req.chunks(1).collect();
        let m = Mem::new(&chunks);
        let (code, r, calls) = run(m, Ok("ok\n"));
        assert_eq!((code, calls, r.body.as_str()), (200, 1, "ok\n"));
        // Terminator split between reads in every position.
        for split in 1..req.len() {
            let m = Mem::new(&[&req[..split], &req[split..]]);
            let (code, _, _) = run(m, Ok("ok\n"));
            assert_eq!(code, 200, "split at {split}");
        }
        // Irregular chunks.
        let m = Mem::new(&[b"GE", b"T /metr", b"ics HTTP/1.1\r", b"\n\r", b"\n"]);
        assert_eq!(run(m, Ok("x")).0, 200);
    }

    #[test]
    fn oversized_head_431() {
        let mut req = String::from("GET /metrics HTTP/1.1\r\n");
        while req.len() <= MAX_HEAD {
            req.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        req.push_str("\r\n");
        let mut m = Mem::one(&req);
        let calls = std::cell::Cell::new(0);
        let mut body = || {
            calls.set(calls.get() + 1);
            Ok::<_, String>(String::new())
        };
        assert_eq!(serve_one(&mut m, &mut body).unwrap(), 431);
        assert_eq!(calls.get(), 0);
        // It stopped reading just past the cap rather than swallowing the whole request.
        assert!(!m.input.is_empty());
        assert_eq!(parse(&m.out()).code, 431);
        // An endless head without newlines is cut off the same way.
        let big = vec![b'A'; 200 * 1024];
        let mut m = Mem::new(&[&big]);
        assert_eq!(serve_one(&mut m, &mut body).unwrap(), 431);
        // Exactly at the cap is accepted.
        let mut req = String::from("GET /metrics HTTP/1.1\r\nX-Pad: ");
        let pad = MAX_HEAD - req.len() - 4;
        req.push_str(&"b".repeat(pad));
        req.push_str("\r\n\r\n");
        assert_eq!(req.len(), MAX_HEAD);
        assert_eq!(run(Mem::one(&req), Ok("x")).0, 200);
    }

    #[test]
    fn body_error_503() {
        let (code, r, calls) = run(
            Mem::one("GET /metrics HTTP/1.1\r\n\r\n"),
            Err("broker not running"),
        );
        assert_eq!((code, calls), (503, 1));
        assert_eq!(r.body, "broker not running\n");
        assert_eq!(r.header("Content-Length"), Some("19"));
        let (code, r, _) = run(
            Mem::one("HEAD / HTTP/1.1\r\n\r\n"),
            Err("state db locked\n"),
        );
        assert_eq!(code, 503);
        assert_eq!(r.body, "");
        assert_eq!(r.header("Content-Length"), Some("16"));
    }

    #[test]
    fn read_error_is_returned() {
        let mut m = Mem::new(&[b"GET /metrics HT"]);
        m.fail_read = Some(ErrorKind::WouldBlock);
        let mut calls = 0;
        let mut body = || {
            calls += 1;
            Ok::<_, String>(String::new())
        };
        let err = serve_one(&mut m, &mut body).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
        assert_eq!(calls, 0);
        assert!(m.output.is_empty());
    }

    #[test]
    fn interrupted_reads_are_retried() {
        struct Flaky(Mem, bool);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(std::io::Error::new(ErrorKind::Interrupted, "EINTR"));
                }
                self.0.read(buf)
            }
        }
        impl Write for Flaky {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut f = Flaky(Mem::new(&[b"GET / HTTP/1.1\r\n", b"\r\n"]), false);
        let mut body = || Ok::<_, String>("x".to_string());
        assert_eq!(serve_one(&mut f, &mut body).unwrap(), 200);
    }
}
