//! `podspawn cleanup` (one pass) and `podspawn cleanup --daemon --interval 60s`: expire grace
//! periods, enforce ttl and max lifetime, restart or remove containers stopped by a Docker or host
//! restart, and reconcile orphans (labelled containers without a row, rows without a container,
//! networks nobody uses). Takes the same per-user locks as the broker.

use crate::core::config::Config;
use crate::roles::lifecycle::{Lifecycle, Report};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A pure summary of a pass for the terminal and the daemon's STATUS=.
pub fn summary(r: &Report) -> String {
    let mut by: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, reason) in &r.removed {
        *by.entry(reason.as_str()).or_default() += 1;
    }
    let reasons: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let mut s = format!("removed {} container(s)", r.removed.len());
    if !reasons.is_empty() {
        s.push_str(&format!(" ({})", reasons.join(", ")));
    }
    s.push_str(&format!(
        ", restarted {}, forgot {} stale row(s), removed {} network(s)",
        r.restarted.len(),
        r.forgotten_rows,
        r.removed_networks.len()
    ));
    if r.removed_holders > 0 {
        s.push_str(&format!(
            ", removed {} unused network namespace(s)",
            r.removed_holders
        ));
    }
    if !r.errors.is_empty() {
        s.push_str(&format!(", {} error(s)", r.errors.len()));
    }
    s
}

pub fn run(cfg: Config, daemon: bool, interval: Duration) -> ExitCode {
    if daemon {
        crate::host::logging::init_daemon("podspawn", &cfg);
    } else {
        crate::host::logging::init_terminal();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podspawn cleanup: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(async move {
        let lc = Lifecycle::open(cfg).await?;
        if daemon {
            run_daemon(lc, interval).await
        } else {
            one_pass(&lc).await
        }
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: on a terminal the log also goes to stderr, so it would say it twice.
            if daemon {
                tracing::error!("{e}");
            } else {
                eprintln!("podspawn cleanup: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The separate cleanup process does not hold leases: a session in use has status running
/// (the broker sets it under the same lock), which the decisions already respect.
fn not_leased(_: &str, _: &str) -> bool {
    false
}

async fn one_pass(lc: &Lifecycle) -> Result<(), String> {
    let stop = AtomicBool::new(false);
    let r = lc.cleanup_pass(&not_leased, &stop).await;
    for (c, reason) in &r.removed {
        println!("removed {c} ({})", reason.as_str());
    }
    for c in &r.restarted {
        println!("restarted {c}");
    }
    for n in &r.removed_networks {
        println!("removed network {n}");
    }
    // Project images nothing uses any more (roles/project_images.rs).
    let (images, image_errors) = lc.remove_unused_images().await;
    for i in &images {
        println!("removed image {i}");
    }
    for e in &image_errors {
        eprintln!("error: {e}");
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    println!("Cleanup pass complete: {}", summary(&r));
    if r.errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} error(s) during the pass", r.errors.len()))
    }
}

async fn run_daemon(lc: Lifecycle, interval: Duration) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("signal handler: {e}"))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("signal handler: {e}"))?;
    let watchdog = crate::host::systemd::watchdog_interval();
    // Sleep in slices short enough to keep the watchdog fed from this loop.
    let slice = watchdog
        .map(|w| w.min(interval))
        .unwrap_or(interval)
        .max(Duration::from_millis(100));
    let mut ready = false;
    let mut passes: u64 = 0;
    let mut removed: u64 = 0;
    'outer: loop {
        crate::host::systemd::notify_watchdog();
        let pass = lc.cleanup_pass(&not_leased, &stop);
        tokio::pin!(pass);
        let report = loop {
            tokio::select! {
                r = &mut pass => break r,
                _ = term.recv() => stop.store(true, Ordering::Relaxed),
                _ = int.recv() => stop.store(true, Ordering::Relaxed),
            }
        };
        passes += 1;
        removed += report.removed.len() as u64;
        // Project images nothing uses any more (roles/project_images.rs).
        for e in lc.remove_unused_images().await.1 {
            tracing::warn!("cleanup: {e}");
        }
        for e in &report.errors {
            tracing::warn!("cleanup: {e}");
        }
        if !report.removed.is_empty() || !report.restarted.is_empty() || report.forgotten_rows > 0 {
            tracing::info!("cleanup pass: {}", summary(&report));
        }
        let sessions = lc.db().list(None).map(|r| r.len()).unwrap_or(0);
        let status =
            format!("{sessions} sessions; {passes} passes, {removed} removals since start");
        if !ready {
            crate::host::systemd::notify_ready(&status);
            ready = true;
        } else {
            crate::host::systemd::notify_status(&status);
        }
        crate::host::systemd::notify_watchdog();
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let deadline = tokio::time::Instant::now() + interval;
        while tokio::time::Instant::now() < deadline {
            let left = deadline - tokio::time::Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(left.min(slice)) => crate::host::systemd::notify_watchdog(),
                _ = term.recv() => break 'outer,
                _ = int.recv() => break 'outer,
            }
        }
    }
    crate::host::systemd::notify_stopping();
    tracing::info!("cleanup daemon stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::EndReason;

    #[test]
    fn summaries() {
        let r = Report {
            removed: vec![
                ("a".into(), EndReason::GraceExpired),
                ("b".into(), EndReason::Orphan),
                ("c".into(), EndReason::Orphan),
            ],
            restarted: vec!["d".into()],
            forgotten_rows: 1,
            removed_networks: vec![],
            removed_holders: 0,
            errors: vec![],
        };
        assert_eq!(
            summary(&r),
            "removed 3 container(s) (grace-expired 1, orphan 2), restarted 1, forgot 1 stale row(s), removed 0 network(s)"
        );
        let r = Report {
            removed_holders: 2,
            ..r
        };
        assert!(
            summary(&r).ends_with(", removed 2 unused network namespace(s)"),
            "{}",
            summary(&r)
        );
    }
}
