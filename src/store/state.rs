//! `state.db`: sessions keyed by (user, project). SQLite in WAL mode with versioned migrations.
//! Owned by the broker (and the cleanup pass, both root); never by SSH users.

use crate::core::config::SessionMode;
use rusqlite::{params, Connection, OptionalExtension};
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::core::session::{SessionRow, Status};

/// Schema migrations; `PRAGMA user_version` is the number applied. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: sessions
    "CREATE TABLE sessions (
        user TEXT NOT NULL,
        project TEXT NOT NULL DEFAULT '',
        container_id TEXT NOT NULL,
        container_name TEXT NOT NULL,
        image TEXT NOT NULL,
        mode TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        created_at INTEGER NOT NULL,
        last_activity INTEGER NOT NULL,
        grace_expiry INTEGER,
        expires_at INTEGER,
        uid INTEGER NOT NULL,
        backend TEXT NOT NULL DEFAULT 'docker',
        host TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (user, project)
    );",
    // 2: counters for metrics (cleanup passes, removals by reason)
    "CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL DEFAULT 0
    );",
    // 3: facts about this installation (its instance id)
    "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 4: registered projects (store/projects.rs): root-only like the rest of state.db, unlike
    // the reference's projects.yaml
    "CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        repo TEXT NOT NULL,
        branch TEXT NOT NULL DEFAULT '',
        commit_id TEXT NOT NULL DEFAULT '',
        image TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // 5: users' network namespaces: connection-level leases of pam_podspawn.so (SSH connections
    // in the namespace), kept by the broker so that the separate cleanup process sees them too,
    // and since when nothing uses a namespace (session.network_linger)
    "CREATE TABLE netns (
        user TEXT PRIMARY KEY,
        leases INTEGER NOT NULL DEFAULT 0,
        idle_since INTEGER
    );",
];

/// The `meta` key of this installation's instance id.
const INSTANCE_KEY: &str = "instance";

pub struct Db {
    pub(super) conn: Connection,
}

/// What can go wrong with `state.db`. The broker tells a newer schema apart (refuse to run, ask
/// for an upgrade) from a failing query; the `Display` text is what a person reads.
#[derive(Debug)]
pub enum Error {
    /// The database's directory could not be created.
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database file could not be opened.
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A statement failed.
    Sql(rusqlite::Error),
    /// The schema was written by a newer podspawn (`found` > the `known` migrations).
    NewerSchema { found: usize, known: usize },
    /// No random instance id could be made for a new installation.
    InstanceId(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CreateDir { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            Error::Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            Error::Sql(e) if is_disk_full(e) => write!(
                f,
                "the state database cannot be written: its file system is full ({e}); free \
                 space there (state.db_path in the configuration, /var/lib/podspawn by default)"
            ),
            Error::Sql(e) => write!(f, "state database: {e}"),
            Error::NewerSchema { found, known } => write!(
                f,
                "state database schema version {found} is newer than this podspawn understands \
                 ({known}); upgrade podspawn"
            ),
            Error::InstanceId(e) => write!(f, "cannot make an instance id: {e}"),
        }
    }
}

/// SQLITE_FULL: the file system holding state.db (or its -wal) has no space left.
fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::CreateDir { source, .. } | Error::InstanceId(source) => Some(source),
            Error::Open { source, .. } | Error::Sql(source) => Some(source),
            Error::NewerSchema { .. } => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sql(e)
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

impl Db {
    /// Opens (creating the directory 0700 and the file 0600) and migrates.
    pub fn open(path: &Path) -> Result<Db, Error> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| Error::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        // Restrictive umask for the db and its -wal/-shm files: they hold every user's sessions.
        use nix::sys::stat::{umask, Mode};
        let old = umask(Mode::from_bits_truncate(0o077));
        let conn = Connection::open(path);
        umask(old);
        let conn = conn.map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(Error::Sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::Sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::Sql)?;
        let mut db = Db { conn };
        let fresh = db.schema_version()? == 0;
        db.migrate()?;
        // Existing databases keep the id their containers already carry (derived from the path);
        // a new installation gets a random one, so two installations never share an id, even
        // with the same state path (two hosts on one engine, a test container on the host's).
        let legacy = crate::engine::instance_id(path);
        db.ensure_instance(if fresh { None } else { Some(legacy) })?;
        Ok(db)
    }

    /// This installation's instance id (the `podspawn-instance` label of its objects).
    pub fn instance(&self) -> Result<String, Error> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key=?1",
                params![INSTANCE_KEY],
                |r| r.get::<_, String>(0),
            )
            .map_err(Error::Sql)
    }

    /// Records the instance id once: `legacy`, or else a random one.
    fn ensure_instance(&self, legacy: Option<String>) -> Result<(), Error> {
        let id = match legacy {
            Some(id) => id,
            None => crate::engine::new_instance_id().map_err(Error::InstanceId)?,
        };
        self.conn
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![INSTANCE_KEY, id],
            )
            .map_err(Error::Sql)?;
        Ok(())
    }

    pub fn open_in_memory() -> Result<Db, Error> {
        let conn = Connection::open_in_memory().map_err(Error::Sql)?;
        let mut db = Db { conn };
        db.migrate()?;
        db.ensure_instance(None)?;
        Ok(db)
    }

    pub fn schema_version(&self) -> Result<usize, Error> {
        let v: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(Error::Sql)?;
        Ok(v as usize)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let current = self.schema_version()?;
        if current > MIGRATIONS.len() {
            return Err(Error::NewerSchema {
                found: current,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = self.conn.transaction().map_err(Error::Sql)?;
            tx.execute_batch(sql).map_err(Error::Sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(Error::Sql)?;
            tx.commit().map_err(Error::Sql)?;
        }
        Ok(())
    }

    pub fn get(&self, user: &str, project: &str) -> Result<Option<SessionRow>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM sessions WHERE user=?1 AND project=?2"),
                params![user, project],
                row_from,
            )
            .optional()
            .map_err(Error::Sql)
    }

    pub fn list(&self, user: Option<&str>) -> Result<Vec<SessionRow>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM sessions WHERE (?1 IS NULL OR user=?1) ORDER BY user, project"
            ))
            .map_err(Error::Sql)?;
        let rows = stmt
            .query_map(params![user], row_from)
            .map_err(Error::Sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Sql)?;
        Ok(rows)
    }

    pub fn insert(&self, r: &SessionRow) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO sessions (user, project, container_id, container_name, image, mode,
                   status, created_at, last_activity, grace_expiry, expires_at, uid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.user,
                    r.project,
                    r.container_id,
                    r.container_name,
                    r.image,
                    r.mode.as_str(),
                    r.status.as_str(),
                    r.created_at,
                    r.last_activity,
                    r.grace_expiry,
                    r.expires_at,
                    r.uid
                ],
            )
            .map_err(Error::Sql)?;
        Ok(())
    }

    /// Sets the status (and grace expiry) and touches last_activity.
    pub fn set_status(
        &self,
        user: &str,
        project: &str,
        status: Status,
        grace_expiry: Option<i64>,
        now: i64,
    ) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE sessions SET status=?3, grace_expiry=?4, last_activity=?5 WHERE user=?1 AND project=?2",
                params![user, project, status.as_str(), grace_expiry, now],
            )
            .map_err(Error::Sql)?;
        Ok(())
    }

    /// Adds one to a named counter.
    pub fn bump(&self, name: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, 1)
                 ON CONFLICT(name) DO UPDATE SET value = value + 1",
                params![name],
            )
            .map_err(Error::Sql)?;
        Ok(())
    }

    pub fn counters(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM counters ORDER BY name")
            .map_err(Error::Sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(Error::Sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Sql)?;
        Ok(rows)
    }

    /// One more SSH connection of `user` holds the user's network namespace; returns how many do.
    pub fn netns_lease_add(&self, user: &str) -> Result<u32, Error> {
        self.conn
            .execute(
                "INSERT INTO netns (user, leases, idle_since) VALUES (?1, 1, NULL)
                 ON CONFLICT(user) DO UPDATE SET leases = leases + 1, idle_since = NULL",
                params![user],
            )
            .map_err(Error::Sql)?;
        self.netns_lease_count(user)
    }

    /// One connection fewer; returns how many still hold the namespace.
    pub fn netns_lease_drop(&self, user: &str) -> Result<u32, Error> {
        self.conn
            .execute(
                "UPDATE netns SET leases = MAX(leases - 1, 0) WHERE user=?1",
                params![user],
            )
            .map_err(Error::Sql)?;
        self.netns_lease_count(user)
    }

    pub fn netns_lease_count(&self, user: &str) -> Result<u32, Error> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT leases FROM netns WHERE user=?1",
                params![user],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::Sql)?;
        Ok(u32::try_from(n.unwrap_or(0).max(0)).unwrap_or(u32::MAX))
    }

    /// The users whose network namespace some connection holds (one query per cleanup pass).
    pub fn netns_leased_users(&self) -> Result<std::collections::HashSet<String>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT user FROM netns WHERE leases > 0")
            .map_err(Error::Sql)?;
        let users = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(Error::Sql)?
            .collect::<Result<_, _>>()
            .map_err(Error::Sql)?;
        Ok(users)
    }

    /// Whether any user's namespace is recorded (leased or idle): a pass with no sessions still
    /// has namespaces to look at.
    pub fn netns_any(&self) -> Result<bool, Error> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM netns)", [], |r| r.get(0))
            .map_err(Error::Sql)
    }

    /// Nothing uses the user's namespace since `t` (kept if already earlier); returns since when.
    pub fn netns_mark_idle(&self, user: &str, t: i64) -> Result<i64, Error> {
        self.conn
            .execute(
                "INSERT INTO netns (user, leases, idle_since) VALUES (?1, 0, ?2)
                 ON CONFLICT(user) DO UPDATE SET idle_since = COALESCE(idle_since, ?2)",
                params![user, t],
            )
            .map_err(Error::Sql)?;
        self.conn
            .query_row(
                "SELECT idle_since FROM netns WHERE user=?1",
                params![user],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|v| v.unwrap_or(t))
            .map_err(Error::Sql)
    }

    /// Something (a session) uses the user's namespace again.
    pub fn netns_clear_idle(&self, user: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE netns SET idle_since = NULL WHERE user=?1",
                params![user],
            )
            .map_err(Error::Sql)?;
        Ok(())
    }

    /// The user's namespace is gone.
    pub fn netns_forget(&self, user: &str) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM netns WHERE user=?1", params![user])
            .map_err(Error::Sql)?;
        Ok(())
    }

    /// Forgets every connection lease: a (re)started broker holds none (the connections that held
    /// them were to the broker that ended). What was leased is idle from `t`.
    pub fn clear_netns_leases(&self, t: i64) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE netns SET idle_since = COALESCE(idle_since, ?1) WHERE leases > 0",
                params![t],
            )
            .map_err(Error::Sql)?;
        self.conn
            .execute("UPDATE netns SET leases = 0", [])
            .map_err(Error::Sql)?;
        Ok(())
    }

    pub fn delete(&self, user: &str, project: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "DELETE FROM sessions WHERE user=?1 AND project=?2",
                params![user, project],
            )
            .map_err(Error::Sql)?;
        Ok(())
    }
}

const COLS: &str = "user, project, container_id, container_name, image, mode, status, created_at, \
                    last_activity, grace_expiry, expires_at, uid";

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let mode: String = r.get(5)?;
    let status: String = r.get(6)?;
    Ok(SessionRow {
        user: r.get(0)?,
        project: r.get(1)?,
        container_id: r.get(2)?,
        container_name: r.get(3)?,
        image: r.get(4)?,
        mode: SessionMode::parse(&mode).unwrap_or_default(),
        status: Status::parse(&status),
        created_at: r.get(7)?,
        last_activity: r.get(8)?,
        grace_expiry: r.get(9)?,
        expires_at: r.get(10)?,
        uid: r.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_system_is_named_as_such() {
        let full = Error::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        ));
        let m = full.to_string();
        assert!(m.contains("its file system is full"), "{m}");
        assert!(m.contains("free space there"), "{m}");
        let other = Error::Sql(rusqlite::Error::QueryReturnedNoRows);
        assert!(other.to_string().starts_with("state database: "), "{other}");
    }

    fn sample(user: &str, project: &str) -> SessionRow {
        SessionRow {
            user: user.into(),
            project: project.into(),
            container_id: "abc".into(),
            container_name: crate::core::names::container_name(user, project),
            image: "img:1".into(),
            mode: SessionMode::Ttl,
            status: Status::Running,
            created_at: 100,
            last_activity: 100,
            grace_expiry: None,
            expires_at: Some(200),
            uid: 1234,
        }
    }

    #[test]
    fn netns_leases_count_up_and_down_and_clear() {
        let db = Db::open_in_memory().unwrap();
        assert!(!db.netns_any().unwrap());
        assert_eq!(db.netns_lease_count("alice").unwrap(), 0);
        assert_eq!(db.netns_lease_add("alice").unwrap(), 1);
        assert_eq!(db.netns_lease_add("alice").unwrap(), 2);
        assert_eq!(db.netns_lease_add("bob").unwrap(), 1);
        let users = db.netns_leased_users().unwrap();
        assert!(users.contains("alice") && users.contains("bob") && users.len() == 2);
        assert_eq!(db.netns_lease_drop("alice").unwrap(), 1);
        assert_eq!(db.netns_lease_drop("alice").unwrap(), 0);
        // Never below zero.
        assert_eq!(db.netns_lease_drop("alice").unwrap(), 0);
        assert!(!db.netns_leased_users().unwrap().contains("alice"));
        // Idle since the first time it was found unused; a lease or a session clears that.
        assert_eq!(db.netns_mark_idle("alice", 100).unwrap(), 100);
        assert_eq!(db.netns_mark_idle("alice", 200).unwrap(), 100);
        db.netns_clear_idle("alice").unwrap();
        assert_eq!(db.netns_mark_idle("alice", 300).unwrap(), 300);
        db.netns_lease_add("alice").unwrap();
        assert_eq!(db.netns_mark_idle("alice", 400).unwrap(), 400);
        db.netns_forget("alice").unwrap();
        assert_eq!(db.netns_lease_count("alice").unwrap(), 0);
        // A broker restart: bob's lease is gone, and his namespace idle from then.
        db.clear_netns_leases(500).unwrap();
        assert!(db.netns_leased_users().unwrap().is_empty());
        assert_eq!(db.netns_mark_idle("bob", 600).unwrap(), 500);
        assert!(db.netns_any().unwrap());
    }

    #[test]
    fn crud_roundtrip() {
        let db = Db::open_in_memory().unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len());
        let a = sample("alice", "");
        db.insert(&a).unwrap();
        db.insert(&sample("alice", "web")).unwrap();
        db.insert(&sample("bob", "")).unwrap();
        assert_eq!(db.get("alice", "").unwrap(), Some(a.clone()));
        assert_eq!(db.list(Some("alice")).unwrap().len(), 2);
        assert_eq!(db.list(None).unwrap().len(), 3);
        db.set_status("alice", "", Status::Grace, Some(160), 150)
            .unwrap();
        let g = db.get("alice", "").unwrap().unwrap();
        assert_eq!(
            (g.status, g.grace_expiry, g.last_activity),
            (Status::Grace, Some(160), 150)
        );
        db.delete("alice", "").unwrap();
        assert_eq!(db.get("alice", "").unwrap(), None);
        db.bump("removals.ttl").unwrap();
        db.bump("removals.ttl").unwrap();
        db.bump("cleanup.passes").unwrap();
        assert_eq!(
            db.counters().unwrap(),
            vec![
                ("cleanup.passes".to_string(), 1),
                ("removals.ttl".to_string(), 2)
            ]
        );
    }

    #[test]
    fn migrates_a_version_1_database() {
        let dir = std::env::temp_dir().join(format!("podspawn-state-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO sessions (user, project, container_id, container_name, image, mode, created_at, last_activity, uid)
                 VALUES ('alice', '', 'id', 'podspawn-alice', 'img', 'named', 1, 1, 1000)",
                [],
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len());
        assert_eq!(
            db.get("alice", "").unwrap().unwrap().mode,
            SessionMode::Named
        );
        db.bump("x").unwrap();
        // Its containers carry the path-derived instance id; an upgrade keeps it.
        assert_eq!(db.instance().unwrap(), crate::engine::instance_id(&path));
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn new_installations_get_their_own_instance_id() {
        let a = crate::test_support::TempDir::new("inst-a");
        let b = crate::test_support::TempDir::new("inst-b");
        // The same path inside two roots stands for two hosts (or a container and its host).
        let pa = a.path().join("state.db");
        let pb = b.path().join("state.db");
        let ia = Db::open(&pa).unwrap().instance().unwrap();
        let ib = Db::open(&pb).unwrap().instance().unwrap();
        assert_ne!(ia, ib);
        assert!(
            ia.len() == 16 && ia.bytes().all(|c| c.is_ascii_hexdigit()),
            "{ia}"
        );
        assert_ne!(ia, crate::engine::instance_id(&pa));
        // Stable across reopening.
        assert_eq!(Db::open(&pa).unwrap().instance().unwrap(), ia);
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = crate::test_support::TempDir::new("state-open-err");
        // A regular file where the directory should be: the directory cannot be created.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = Db::open(&blocker.join("sub").join("state.db"))
            .err()
            .unwrap();
        assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "cannot create {}: ",
                blocker.join("sub").display()
            )),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
        // A directory where the database file should be: SQLite cannot open it.
        let err = Db::open(dir.path()).err().unwrap();
        assert!(matches!(err, Error::Open { .. } | Error::Sql(_)), "{err:?}");
        let s: String = err.into();
        assert!(!s.is_empty());
    }

    #[test]
    fn file_db_is_private_and_reopens() {
        let dir = std::env::temp_dir().join(format!("podspawn-state-{}", std::process::id()));
        let path = dir.join("state.db");
        {
            let db = Db::open(&path).unwrap();
            db.insert(&sample("alice", "")).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert!(db.get("alice", "").unwrap().is_some());
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            if let Ok(m) = std::fs::metadata(dir.join(f)) {
                assert_eq!(
                    m.permissions().mode() & 0o077,
                    0,
                    "{f} is accessible to others"
                );
            }
        }
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = std::env::temp_dir().join(format!("podspawn-state-new-{}", std::process::id()));
        let path = dir.join("state.db");
        {
            let db = Db::open(&path).unwrap();
            db.conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Db::open(&path).err().unwrap();
        assert!(
            matches!(err, Error::NewerSchema { found: 99, known } if known == MIGRATIONS.len()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "state database schema version 99 is newer than this podspawn understands ({}); \
                 upgrade podspawn",
                MIGRATIONS.len()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
