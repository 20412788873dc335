//! The audit log (`log.audit_log`): one JSON object per line, appended only by root-owned podspawn
//! processes (the broker, the cleanup pass, admin commands). When the key is not set there is no
//! `Audit` at all, so callers pay nothing.
//!
//! Every line has `time` (RFC 3339 UTC, milliseconds) and `event`, then the event's fields, e.g.
//!
//! ```text
//! {"time":"2026-11-29T00:12:03.123Z","event":"connect","user":"alice","project":"","container":"podspawn-alice","connections":1}
//! ```
//!
//! so that `jq 'select(.event == "connect")'` and `jq 'select(.user == "alice")'` work as documented.
//! Lines are built with serde_json (values are never spliced into a string by hand) and written with one
//! `write(2)` on an `O_APPEND` descriptor, so concurrent writers (several broker threads, a cleanup pass
//! and an admin command) never interleave within a line.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::config::SessionMode;
use crate::core::session::EndReason;
pub use crate::host::fs::{open_private_append, DIR_MODE, FILE_MODE};
use crate::host::fs::{LogError, AUDIT_LOG};

/// An open audit log. Cheap to share between threads (`&Audit` is enough to record).
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
}

/// One audited event. `project` is "" for the user's default container. Serialized as the
/// line's `event` (the variant's name below) followed by its fields in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    #[serde(rename = "connect")]
    Connect {
        user: String,
        project: String,
        container: String,
        connections: u32,
    },
    #[serde(rename = "disconnect")]
    Disconnect {
        user: String,
        project: String,
        container: String,
        #[serde(rename = "remaining_connections")]
        remaining: u32,
    },
    #[serde(rename = "command")]
    Command {
        user: String,
        project: String,
        container: String,
        command: String,
        /// Written as `exit_code` (null when unknown) and `outcome`.
        #[serde(flatten, serialize_with = "exit_and_outcome")]
        exit_code: Option<i32>,
    },
    #[serde(rename = "container.create")]
    ContainerCreate {
        user: String,
        project: String,
        container: String,
        image: String,
        mode: SessionMode,
    },
    #[serde(rename = "container.destroy")]
    ContainerDestroy {
        user: String,
        project: String,
        container: String,
        reason: EndReason,
    },
    /// A user's network namespace (its holder container, on the user's network) was created.
    #[serde(rename = "netns.create")]
    NetnsCreate { user: String, container: String },
    /// A user's network namespace was removed: `unused` (nothing used it for
    /// session.network_linger), `forced` (the user was removed, an admin stopped the sessions, or
    /// the create that made it failed).
    #[serde(rename = "netns.destroy")]
    NetnsDestroy {
        user: String,
        container: String,
        reason: String,
    },
    #[serde(rename = "user.add")]
    UserAdd {
        user: String,
        keys: usize,
        actor: String,
    },
    #[serde(rename = "user.remove")]
    UserRemove {
        user: String,
        purge: bool,
        actor: String,
    },
    /// `add-user --convert` changed an existing account: one line per change.
    #[serde(rename = "user.convert")]
    UserConvert {
        user: String,
        changes: Vec<String>,
        actor: String,
    },
}

impl Event {
    /// The `event` field's value.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connect { .. } => "connect",
            Event::Disconnect { .. } => "disconnect",
            Event::Command { .. } => "command",
            Event::ContainerCreate { .. } => "container.create",
            Event::ContainerDestroy { .. } => "container.destroy",
            Event::NetnsCreate { .. } => "netns.create",
            Event::NetnsDestroy { .. } => "netns.destroy",
            Event::UserAdd { .. } => "user.add",
            Event::UserRemove { .. } => "user.remove",
            Event::UserConvert { .. } => "user.convert",
        }
    }
}

/// A command's `exit_code` and the `outcome` people filter on (success, failure, unknown).
fn exit_and_outcome<S: Serializer>(code: &Option<i32>, serializer: S) -> Result<S::Ok, S::Error> {
    let outcome = match code {
        Some(0) => "success",
        Some(_) => "failure",
        None => "unknown",
    };
    let mut map = serializer.serialize_map(Some(2))?;
    map.serialize_entry("exit_code", code)?;
    map.serialize_entry("outcome", outcome)?;
    map.end()
}

/// One line: `time` first, then `event` and the event's fields, for people reading the file with
/// `tail`.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// The JSON line (without newline) for `event` at unix time `now_secs` + `nanos`.
pub fn render(event: &Event, now_secs: i64, nanos: u32) -> String {
    let line = Line {
        time: rfc3339(now_secs, nanos),
        event,
    };
    // Serializing strings, numbers, bools and null into a Vec cannot fail; fall back to a minimal
    // valid line rather than panicking if it ever did.
    serde_json::to_string(&line).unwrap_or_else(|e| {
        serde_json::json!({ "time": rfc3339(now_secs, nanos), "event": event.name(), "error": e.to_string() })
            .to_string()
    })
}

/// Smallest and largest instants `rfc3339` represents (0000-01-01T00:00:00Z, 9999-12-31T23:59:59Z);
/// times outside are clamped so the output always has a four-digit year.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

/// RFC 3339 UTC with milliseconds, e.g. "2026-11-29T00:12:03.123Z". Times before year 0 or after
/// 9999 are clamped; `nanos` above 999,999,999 count as .999.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let secs = secs.clamp(MIN_SECS, MAX_SECS);
    let millis = (nanos / 1_000_000).min(999);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Howard Hinnant's civil-from-days: days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Audit {
    /// `None` when `log.audit_log` is not set. Otherwise opens (creating if needed) the file with
    /// `O_APPEND|O_CLOEXEC|O_NOFOLLOW`: a new file gets mode 0640, missing parent directories 0750,
    /// and an existing file with permission bits beyond 0640 is narrowed to them. A symlink or
    /// non-regular file at the path, or a file owned by another user, is refused.
    pub fn open(cfg: &crate::core::config::Config) -> Result<Option<Audit>, LogError> {
        match &cfg.log.audit_log {
            None => Ok(None),
            Some(path) => Audit::open_path(path).map(Some),
        }
    }

    /// `open` for an explicit path.
    pub fn open_path(path: &Path) -> Result<Audit, LogError> {
        let file = open_private_append(path, AUDIT_LOG)?;
        Ok(Audit {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// The file this writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one line with a single `write(2)`. Never panics; a failure is logged with
    /// `tracing::error!` and otherwise ignored.
    pub fn record(&self, event: &Event) {
        let (secs, nanos) = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(_) => (0, 0),
        };
        let mut line = render(event, secs, nanos).into_bytes();
        line.push(b'\n');
        let file = match self.file.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = write_line(&file, &line) {
            tracing::error!(
                path = %self.path.display(),
                event = event.name(),
                "cannot write audit log: {e}"
            );
        }
    }
}

/// One `write(2)` of the whole line (retried only when interrupted before writing anything). A short
/// write (disk full, ...) is completed so the file stays line-structured, and reported.
fn write_line(mut file: &File, line: &[u8]) -> std::io::Result<()> {
    loop {
        match file.write(line) {
            Ok(n) if n == line.len() => return Ok(()),
            Ok(0) => return Err(std::io::Error::new(ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => {
                let rest = file.write_all(&line[n..]);
                return Err(std::io::Error::other(format!(
                    "short write ({n} of {} bytes){}",
                    line.len(),
                    match rest {
                        Ok(()) => String::from(", completed with a second write"),
                        Err(e) => format!(", the rest failed: {e}"),
                    }
                )));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::host::fs::{LogProblem, LOG_FILE};
    use crate::test_support::TempDir;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn cfg(path: Option<PathBuf>) -> Config {
        let mut c = Config::default();
        c.log.audit_log = path;
        c
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn all_events(v: &str) -> Vec<Event> {
        vec![
            Event::Connect {
                user: v.into(),
                project: v.into(),
                container: v.into(),
                connections: 2,
            },
            Event::Disconnect {
                user: v.into(),
                project: v.into(),
                container: v.into(),
                remaining: 1,
            },
            Event::Command {
                user: v.into(),
                project: v.into(),
                container: v.into(),
                command: v.into(),
                exit_code: Some(0),
            },
            Event::ContainerCreate {
                user: v.into(),
                project: v.into(),
                container: v.into(),
                image: v.into(),
                mode: SessionMode::GracePeriod,
            },
            Event::ContainerDestroy {
                user: v.into(),
                project: v.into(),
                container: v.into(),
                reason: EndReason::GraceExpired,
            },
            Event::NetnsCreate {
                user: v.into(),
                container: v.into(),
            },
            Event::NetnsDestroy {
                user: v.into(),
                container: v.into(),
                reason: v.into(),
            },
            Event::UserAdd {
                user: v.into(),
                keys: 3,
                actor: v.into(),
            },
            Event::UserRemove {
                user: v.into(),
                purge: true,
                actor: v.into(),
            },
            Event::UserConvert {
                user: v.into(),
                changes: vec![v.into()],
                actor: v.into(),
            },
        ]
    }

    fn keys(line: &str) -> Vec<String> {
        // Order matters too: parse with a streaming visitor would be overkill; compare the
        // object's keys (serde_json sorts them) and check `time`,`event` lead the raw line.
        assert!(line.starts_with("{\"time\":\""), "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn set(names: &[&str]) -> Vec<String> {
        let s: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        s.into_iter().collect()
    }

    #[test]
    fn every_event_has_its_exact_field_set() {
        let ev = all_events("x");
        let expect: [(&str, &[&str]); 10] = [
            (
                "connect",
                &[
                    "time",
                    "event",
                    "user",
                    "project",
                    "container",
                    "connections",
                ],
            ),
            (
                "disconnect",
                &[
                    "time",
                    "event",
                    "user",
                    "project",
                    "container",
                    "remaining_connections",
                ],
            ),
            (
                "command",
                &[
                    "time",
                    "event",
                    "user",
                    "project",
                    "container",
                    "command",
                    "exit_code",
                    "outcome",
                ],
            ),
            (
                "container.create",
                &[
                    "time",
                    "event",
                    "user",
                    "project",
                    "container",
                    "image",
                    "mode",
                ],
            ),
            (
                "container.destroy",
                &["time", "event", "user", "project", "container", "reason"],
            ),
            ("netns.create", &["time", "event", "user", "container"]),
            (
                "netns.destroy",
                &["time", "event", "user", "container", "reason"],
            ),
            ("user.add", &["time", "event", "user", "keys", "actor"]),
            ("user.remove", &["time", "event", "user", "purge", "actor"]),
            (
                "user.convert",
                &["time", "event", "user", "changes", "actor"],
            ),
        ];
        for (e, (name, fields)) in ev.iter().zip(expect.iter()) {
            let line = render(e, 1_795_000_000, 5_000_000);
            assert!(!line.contains('\n'));
            assert_eq!(keys(&line), set(fields), "{line}");
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["event"], *name);
            assert_eq!(v["time"], "2026-11-18T11:06:40.005Z");
            assert_eq!(v["user"], "x");
        }
    }

    #[test]
    fn exact_lines() {
        let e = Event::Connect {
            user: "alice".into(),
            project: "".into(),
            container: "podspawn-alice".into(),
            connections: 1,
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"connect","user":"alice","project":"","container":"podspawn-alice","connections":1}"#
        );
        let e = Event::UserRemove {
            user: "bob".into(),
            purge: false,
            actor: "root".into(),
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"user.remove","user":"bob","purge":false,"actor":"root"}"#
        );
        let e = Event::UserConvert {
            user: "bob".into(),
            changes: vec![
                "change the login shell from /bin/bash to /bin/sh".into(),
                "remove bob from the group sudo".into(),
            ],
            actor: "root".into(),
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"user.convert","user":"bob","changes":["change the login shell from /bin/bash to /bin/sh","remove bob from the group sudo"],"actor":"root"}"#
        );
        let e = Event::UserAdd {
            user: "bob".into(),
            keys: 2,
            actor: "sudo:carol".into(),
        };
        let v: Value = serde_json::from_str(&render(&e, 0, 0)).unwrap();
        assert_eq!(v["keys"], 2);
        assert_eq!(v["actor"], "sudo:carol");
        let e = Event::Disconnect {
            user: "a".into(),
            project: "p".into(),
            container: "c".into(),
            remaining: 0,
        };
        let v: Value = serde_json::from_str(&render(&e, 0, 0)).unwrap();
        assert_eq!(v["remaining_connections"], 0);
    }

    /// Byte for byte what the README's jq filters and tests/lifecycle_e2e.rs read: field order,
    /// names and the enums' spelling.
    #[test]
    fn exact_session_lines() {
        let e = Event::ContainerCreate {
            user: "alice".into(),
            project: "web".into(),
            container: "podspawn-alice-web".into(),
            image: "ubuntu:24.04".into(),
            mode: SessionMode::DestroyOnDisconnect,
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"container.create","user":"alice","project":"web","container":"podspawn-alice-web","image":"ubuntu:24.04","mode":"destroy-on-disconnect"}"#
        );
        let e = Event::ContainerDestroy {
            user: "alice".into(),
            project: "".into(),
            container: "podspawn-alice".into(),
            reason: EndReason::MaxLifetime,
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"container.destroy","user":"alice","project":"","container":"podspawn-alice","reason":"max-lifetime"}"#
        );
        let e = Event::Command {
            user: "alice".into(),
            project: "".into(),
            container: "podspawn-alice".into(),
            command: "ls".into(),
            exit_code: None,
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"command","user":"alice","project":"","container":"podspawn-alice","command":"ls","exit_code":null,"outcome":"unknown"}"#
        );
        let e = Event::Disconnect {
            user: "a".into(),
            project: "p".into(),
            container: "c".into(),
            remaining: 3,
        };
        assert_eq!(
            render(&e, 0, 0),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"disconnect","user":"a","project":"p","container":"c","remaining_connections":3}"#
        );
    }

    /// The audit spelling of every mode and reason is the one `as_str` gives (state.db, logs).
    #[test]
    fn modes_and_reasons_are_spelled_as_everywhere_else() {
        for mode in [
            SessionMode::GracePeriod,
            SessionMode::DestroyOnDisconnect,
            SessionMode::Named,
            SessionMode::Ttl,
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        for reason in [
            EndReason::Disconnect,
            EndReason::GraceExpired,
            EndReason::Ttl,
            EndReason::MaxLifetime,
            EndReason::Orphan,
            EndReason::Stop,
            EndReason::UserRemoved,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn command_outcomes() {
        let mk = |code| Event::Command {
            user: "a".into(),
            project: "".into(),
            container: "c".into(),
            command: "ls -la".into(),
            exit_code: code,
        };
        for (code, exit, outcome) in [
            (Some(0), Value::from(0), "success"),
            (Some(1), Value::from(1), "failure"),
            (Some(-1), Value::from(-1), "failure"),
            (Some(255), Value::from(255), "failure"),
            (None, Value::Null, "unknown"),
        ] {
            let v: Value = serde_json::from_str(&render(&mk(code), 0, 0)).unwrap();
            assert_eq!(v["exit_code"], exit);
            assert_eq!(v["outcome"], outcome);
            assert_eq!(v["command"], "ls -la");
        }
    }

    #[test]
    fn hostile_values_stay_one_line_and_round_trip() {
        let hostile = [
            "a\"b\\c",
            "line1\nline2\r\n",
            "nul\0byte",
            "ünïcødé ✓ 日本 🚀",
            "$(rm -rf /); `id`; echo ${HOME}",
            "\u{2028}\u{2029}\t\x1b[31m",
            "\"},{\"event\":\"user.add\",\"user\":\"mallory\"",
            "",
        ];
        for h in hostile {
            for e in all_events(h) {
                let line = render(&e, 1, 0);
                assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
                assert!(!line.contains('\0'), "{line:?}");
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["user"], h);
                assert_eq!(v["event"], e.name());
                if let Event::Command { .. } = e {
                    assert_eq!(v["command"], h);
                }
            }
        }
    }

    #[test]
    fn rfc3339_known_dates() {
        let cases: [(i64, u32, &str); 14] = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (0, 999_999_999, "1970-01-01T00:00:00.999Z"),
            (0, 2_000_000_000, "1970-01-01T00:00:00.999Z"),
            (-1, 0, "1969-12-31T23:59:59.000Z"),
            (68_169_600, 0, "1972-02-29T00:00:00.000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000Z"),
            (951_868_799, 123_456_789, "2000-02-29T23:59:59.123Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000Z"),
            (1_709_164_800, 0, "2024-02-29T00:00:00.000Z"),
            (1_795_911_123, 123_000_000, "2026-11-29T00:12:03.123Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59.000Z"),
            (253_402_300_799, 999_000_000, "9999-12-31T23:59:59.999Z"),
            (-62_135_596_800, 0, "0001-01-01T00:00:00.000Z"),
        ];
        for (s, n, want) in cases {
            assert_eq!(rfc3339(s, n), want, "secs {s}");
        }
        // Clamped at the ends.
        assert_eq!(rfc3339(i64::MAX, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(rfc3339(i64::MIN, 0), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_days_are_contiguous() {
        // Every day from 1900 to 2200 advances the date by exactly one.
        let mut prev = rfc3339(-2_208_988_800, 0);
        assert_eq!(prev, "1900-01-01T00:00:00.000Z");
        let mut day = -2_208_988_800 / 86_400;
        while day < 84_000 {
            day += 1;
            let cur = rfc3339(day * 86_400, 0);
            assert!(cur > prev, "{prev} -> {cur}");
            assert!(cur.ends_with("T00:00:00.000Z"));
            prev = cur;
        }
    }

    #[test]
    fn open_returns_none_when_unset() {
        assert!(Audit::open(&cfg(None)).unwrap().is_none());
    }

    #[test]
    fn open_creates_0640_and_parents_0750() {
        let t = TempDir::new("create");
        let path = t.0.join("a/b/audit.jsonl");
        let audit = Audit::open(&cfg(Some(path.clone()))).unwrap().unwrap();
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(mode_of(&t.0.join("a")), 0o750);
        assert_eq!(mode_of(&t.0.join("a/b")), 0o750);
        assert_eq!(audit.path(), path);
        let e = all_events("alice");
        for ev in &e {
            audit.record(ev);
        }
        drop(audit);
        // Reopening appends.
        let audit = Audit::open(&cfg(Some(path.clone()))).unwrap().unwrap();
        audit.record(&e[0]);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), e.len() + 1);
        assert!(text.ends_with('\n'));
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["user"], "alice");
        }
        assert_eq!(mode_of(&path), 0o640);
    }

    #[test]
    fn open_fixes_a_too_open_file() {
        let t = TempDir::new("fix");
        let path = t.0.join("audit.jsonl");
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let audit = Audit::open(&cfg(Some(path.clone()))).unwrap().unwrap();
        assert_eq!(mode_of(&path), 0o640);
        audit.record(&all_events("x")[0]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"old\":1}\n{\"time\""), "{text}");
        // A narrower file is left alone.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        drop(Audit::open(&cfg(Some(path.clone()))).unwrap());
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn open_refuses_symlinks() {
        let t = TempDir::new("link");
        let target = t.0.join("target");
        std::fs::write(&target, "").unwrap();
        let link = t.0.join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Audit::open(&cfg(Some(link.clone())))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&link.display().to_string()), "{err}");
        assert!(err.contains("symlink"), "{err}");
        // A dangling symlink must not create its target either.
        let dangling = t.0.join("dangling");
        let nowhere = t.0.join("nowhere");
        std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
        assert!(Audit::open(&cfg(Some(dangling))).is_err());
        assert!(!nowhere.exists());
    }

    /// `log.file` is opened by the same rules, with messages that name it.
    #[test]
    fn log_file_opens_like_the_audit_log() {
        let t = TempDir::new("logfile");
        let target = t.0.join("target");
        std::fs::write(&target, "").unwrap();
        let link = t.0.join("podspawn.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_private_append(&link, LOG_FILE).unwrap_err();
        assert!(matches!(err.problem, LogProblem::Symlink), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "log file {} is a symlink; refusing to follow it: remove it or point log.file at \
                 a regular file",
                link.display()
            )
        );
        let fresh = t.0.join("sub/new.log");
        drop(open_private_append(&fresh, LOG_FILE).unwrap());
        assert_eq!(mode_of(&fresh), 0o640);
        let wide = t.0.join("wide.log");
        std::fs::write(&wide, "").unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(open_private_append(&wide, LOG_FILE).unwrap());
        assert_eq!(mode_of(&wide), 0o640);
        // Owned by someone else: hand it to nobody.
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (to chown a file)"
        );
        std::os::unix::fs::chown(&wide, Some(65534), None).unwrap();
        let err = open_private_append(&wide, LOG_FILE).unwrap_err();
        assert!(
            matches!(
                err.problem,
                LogProblem::Owner {
                    uid: 65534,
                    euid: 0
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        let err = open_private_append(Path::new("p.log"), LOG_FILE).unwrap_err();
        assert!(matches!(err.problem, LogProblem::NotAbsolute), "{err:?}");
        assert_eq!(
            String::from(err),
            "log file p.log: not an absolute path; set log.file to an absolute path such as \
             /var/log/podspawn/podspawn.log"
        );
    }

    #[test]
    fn open_refuses_non_regular_files_and_relative_paths() {
        let t = TempDir::new("fifo");
        let fifo = t.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Audit::open(&cfg(Some(fifo.clone())))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&fifo.display().to_string()), "{err}");
        let err = Audit::open(&cfg(Some(t.0.clone())))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&t.0.display().to_string()), "{err}");
        let err = Audit::open(&cfg(Some(PathBuf::from("audit.jsonl"))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn concurrent_records_do_not_interleave() {
        let t = TempDir::new("conc");
        let path = t.0.join("audit.jsonl");
        let audit = Audit::open(&cfg(Some(path.clone()))).unwrap().unwrap();
        // A second descriptor on the same file stands in for another process.
        let other = Audit::open(&cfg(Some(path.clone()))).unwrap().unwrap();
        std::thread::scope(|s| {
            for th in 0..8u32 {
                let a = if th % 2 == 0 { &audit } else { &other };
                s.spawn(move || {
                    for i in 0..500u32 {
                        a.record(&Event::Command {
                            user: format!("user{th}"),
                            project: "proj".into(),
                            container: format!("podspawn-user{th}-proj"),
                            command: format!("{}\n{i}", "x".repeat(300)),
                            exit_code: Some(i as i32),
                        });
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4000);
        let mut seen = BTreeSet::new();
        for l in lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["event"], "command");
            seen.insert((
                v["user"].as_str().unwrap().to_string(),
                v["exit_code"].as_i64().unwrap(),
            ));
        }
        assert_eq!(seen.len(), 4000);
    }
}
