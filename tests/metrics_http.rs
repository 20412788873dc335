//! `render_prometheus` output parsed back as the Prometheus text format 0.0.4: every sample line is
//! `name{labels} value`, every metric family has exactly one HELP and one TYPE line before its samples,
//! and no series appears twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use podspawn::core::metrics::{render_prometheus, Snapshot, REMOVAL_REASONS};
use std::collections::{BTreeMap, BTreeSet};

fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `name{k="v",...} value` → (name, labels, value).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("name and value");
    let value: f64 = value.parse().expect("numeric value");
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').expect("closing brace");
            let mut labels = BTreeMap::new();
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(is_name(k) && !k.starts_with("__"), "label name {k:?}");
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .expect("quoted label value");
                assert!(labels.insert(k.to_string(), v.to_string()).is_none());
            }
            (name, labels)
        }
    };
    assert!(is_name(name), "metric name {name:?}");
    (name.to_string(), labels, value)
}

fn check(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    assert!(text.ends_with('\n'));
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "blank line in {text}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP text");
            assert!(!doc.is_empty());
            assert!(help.insert(name.to_string()), "second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE kind");
            assert!(["counter", "gauge"].contains(&kind), "{kind}");
            assert!(help.contains(name), "TYPE before HELP for {name}");
            assert!(types.insert(name.to_string(), kind).is_none());
        } else {
            assert!(!line.starts_with('#'), "{line}");
            let (name, labels, value) = parse_sample(line);
            assert!(value >= 0.0);
            let kind = types.get(&name).expect("sample after its TYPE");
            if *kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name}");
            }
            assert!(
                series.insert((name, labels), value).is_none(),
                "duplicate series {line}"
            );
        }
    }
    assert_eq!(help.len(), types.len());
    let named: BTreeSet<&String> = series.keys().map(|(n, _)| n).collect();
    assert_eq!(named.len(), types.len(), "a family without samples");
    series
}

#[test]
fn default_snapshot_parses() {
    let series = check(&render_prometheus(&Snapshot::default()));
    assert_eq!(
        series.len(),
        8 + podspawn::core::metrics::REMOVAL_REASONS.len()
    );
    assert!(series.values().all(|v| *v == 0.0));
}

#[test]
fn full_snapshot_parses_and_values_round_trip() {
    let mut s = Snapshot {
        sessions_running: 3,
        sessions_grace: 1,
        sessions_idle: 2,
        connections: 4,
        containers_docker: 7,
        oldest_session_seconds: 7380,
        cleanup_passes: 12,
        ..Snapshot::default()
    };
    s.removals.insert("orphan".into(), 2);
    s.removals.insert("ttl".into(), 5);
    let series = check(&render_prometheus(&s));
    let get = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let labels: BTreeMap<String, String> = label
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter()
            .collect();
        series[&(name.to_string(), labels)]
    };
    assert_eq!(get("podspawn_sessions", Some(("state", "running"))), 3.0);
    assert_eq!(
        get("podspawn_sessions", Some(("state", "grace_period"))),
        1.0
    );
    assert_eq!(get("podspawn_sessions", Some(("state", "idle"))), 2.0);
    assert_eq!(get("podspawn_sessions_total", None), 6.0);
    assert_eq!(get("podspawn_connections", None), 4.0);
    assert_eq!(get("podspawn_containers_docker", None), 7.0);
    assert_eq!(get("podspawn_oldest_session_seconds", None), 7380.0);
    assert_eq!(get("podspawn_cleanup_passes_total", None), 12.0);
    for r in REMOVAL_REASONS {
        let want = s.removals.get(r).copied().unwrap_or(0) as f64;
        assert_eq!(
            get("podspawn_container_removals_total", Some(("reason", r))),
            want
        );
    }
}
