//! `podspawn list`, `stop` and `status`: the client side of the broker's admin requests (root).
use crate::core::config::Config;
use crate::core::protocol::{Client, ErrorKind, Request, Response, SessionInfo};
use crate::roles::lifecycle::now;

fn client(cfg: &Config) -> Result<Client, String> {
    Client::connect(&cfg.broker.socket).map_err(|e| {
        format!(
            "cannot reach the broker at {} ({e}); start it with: systemctl start podspawn.socket",
            cfg.broker.socket.display()
        )
    })
}

pub fn sessions(cfg: &Config, user: Option<&str>) -> Result<Vec<SessionInfo>, String> {
    let mut c = client(cfg)?;
    match c
        .call(&Request::List {
            user: user.map(str::to_string),
        })
        .map_err(|e| format!("broker: {e}"))?
    {
        Response::Sessions { sessions } => Ok(sessions),
        Response::Error { message, .. } => Err(message),
        other => Err(format!("unexpected broker reply {other:?}")),
    }
}

/// (container name, project) of the user's sessions.
pub fn user_sessions(cfg: &Config, user: &str) -> Result<Vec<(String, String)>, String> {
    Ok(sessions(cfg, Some(user))?
        .into_iter()
        .map(|s| (s.container, s.project))
        .collect())
}

/// What `stop` removed: container names and deleted homes.
pub struct Stopped {
    pub containers: Vec<String>,
    pub homes: Vec<String>,
}

/// A refusal from the broker: its kind and its message.
#[derive(Debug)]
pub struct BrokerError {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<String> for BrokerError {
    fn from(message: String) -> BrokerError {
        BrokerError {
            kind: ErrorKind::Internal,
            message,
        }
    }
}

fn stop_req(
    cfg: &Config,
    user: &str,
    project: Option<&str>,
    purge: bool,
) -> Result<Stopped, BrokerError> {
    let mut c = client(cfg)?;
    match c
        .call(&Request::Stop {
            user: user.to_string(),
            project: project.map(str::to_string),
            purge,
        })
        .map_err(|e| format!("broker: {e}"))?
    {
        Response::Stopped { containers, homes } => Ok(Stopped { containers, homes }),
        Response::Error { kind, message } => Err(BrokerError { kind, message }),
        other => Err(format!("unexpected broker reply {other:?}").into()),
    }
}

/// Stops every session of the user; returns how many.
pub fn stop_user(cfg: &Config, user: &str) -> Result<usize, String> {
    match stop_req(cfg, user, None, false) {
        Ok(s) => Ok(s.containers.len()),
        Err(e) if e.kind == ErrorKind::NoSession => Ok(0),
        Err(e) => Err(e.message),
    }
}

/// `podspawn stop alice[@project] [--purge]`.
pub fn stop(cfg: &Config, user: &str, project: &str, purge: bool) -> Result<(), String> {
    let s = stop_req(cfg, user, Some(project), purge).map_err(|e| e.message)?;
    for c in s.containers {
        println!("stopped {c}");
    }
    for h in s.homes {
        // The broker reports a project's purged volumes as "volume <name>".
        if h.starts_with("volume ") {
            println!("removed {h}");
        } else {
            println!("removed home {h}");
        }
    }
    Ok(())
}

/// Aggregate numbers from the broker.
pub fn snapshot(cfg: &Config) -> Result<crate::core::metrics::Snapshot, String> {
    let mut c = client(cfg)?;
    match c
        .call(&Request::Status {})
        .map_err(|e| format!("broker: {e}"))?
    {
        Response::Status { snapshot } => Ok(snapshot),
        Response::Error { message, .. } => Err(message),
        other => Err(format!("unexpected broker reply {other:?}")),
    }
}

/// `podspawn status [--prometheus]`.
pub fn status(cfg: &Config, prometheus: bool) -> Result<(), String> {
    let s = snapshot(cfg)?;
    if prometheus {
        print!("{}", crate::core::metrics::render_prometheus(&s));
    } else {
        print!("{}", crate::core::metrics::render_human(&s));
    }
    Ok(())
}

/// `podspawn list [--json]`.
pub fn list(cfg: &Config, json: bool) -> Result<(), String> {
    let s = sessions(cfg, None)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let t = now();
    println!(
        "{:<16} {:<12} {:<28} {:<13} {:>5} {:>8} {:>14}",
        "USER", "PROJECT", "CONTAINER", "STATUS", "CONNS", "AGE", "LIFETIME-LEFT"
    );
    for x in s {
        let left = match x.expires_at {
            None => "-".to_string(),
            Some(e) if e <= t => "expired".to_string(),
            Some(e) => human(e - t),
        };
        println!(
            "{:<16} {:<12} {:<28} {:<13} {:>5} {:>8} {:>14}",
            x.user,
            if x.project.is_empty() {
                "(default)"
            } else {
                &x.project
            },
            x.container,
            x.status,
            x.connections,
            human(t - x.created_at),
            left
        );
    }
    Ok(())
}

fn human(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    }
}
