//! `podspawn metrics-http`: answers HTTP GETs with the Prometheus text. Under systemd it is a
//! per-connection service (podspawn-metrics.socket, Accept=yes): the connection is fd 3
//! (LISTEN_FDS=1) or stdin/stdout. `--listen ADDR` serves without systemd (tests, ad-hoc use).

use crate::core::config::Config;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::Duration;

/// stdin + stdout as one stream (StandardInput=socket, StandardOutput=socket).
struct Stdio2;

impl Read for Stdio2 {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::stdin().read(buf)
    }
}

impl Write for Stdio2 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

fn body(cfg: &Config) -> Result<String, String> {
    crate::commands::session::snapshot(cfg).map(|s| crate::core::metrics::render_prometheus(&s))
}

pub fn run(cfg: &Config, listen: Option<String>) -> ExitCode {
    crate::host::logging::init_quiet("metrics", Some(cfg));
    let mut b = || body(cfg);
    if let Some(addr) = listen {
        let l = match std::net::TcpListener::bind(&addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("podspawn metrics-http: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            if let Err(e) = crate::core::metrics::serve_one(&mut s, &mut b) {
                tracing::warn!("metrics request: {e}");
            }
        }
        return ExitCode::SUCCESS;
    }
    let res = if let Some(&fd) = crate::host::systemd::listen_fds().first() {
        // SAFETY: systemd passed this connected socket (LISTEN_PID matched); we own it from here.
        let mut s = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        crate::core::metrics::serve_one(&mut s, &mut b)
    } else {
        crate::core::metrics::serve_one(&mut Stdio2, &mut b)
    };
    match res {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::warn!("metrics request: {e}");
            ExitCode::FAILURE
        }
    }
}
