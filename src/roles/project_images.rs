//! Images podspawn built for projects that nothing uses any more: removed by cleanup. Wanted are
//! each registered project's current image and every session's image; Docker itself refuses to
//! remove an image a container still uses. The project commands hold the projects lock while
//! they build and register, and cleanup skips this step while it is held, so an image built a
//! moment ago but not yet recorded is never taken for unused.

use crate::core::projects::{unused_images, LABEL_PROJECT_IMAGE};
use crate::engine::Docker;
use crate::roles::lifecycle::Lifecycle;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The lock of the project registry and its images, in the lock directory (user names cannot
/// start with '.', so it never collides with a user's lock).
const LOCK_NAME: &str = ".projects.lock";

fn open_lock(lock_dir: &Path) -> std::io::Result<File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(lock_dir)?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lock_dir.join(LOCK_NAME))
}

/// Waits for the projects lock (add/update/remove-project); held until the file is dropped.
pub fn lock_projects(lock_dir: &Path) -> Result<File, String> {
    let f = open_lock(lock_dir).map_err(|e| {
        format!(
            "cannot open the projects lock in {}: {e}",
            lock_dir.display()
        )
    })?;
    f.lock()
        .map_err(|e| format!("cannot lock the projects: {e}"))?;
    Ok(f)
}

/// The projects lock if it is free now (cleanup does not wait for a build).
fn try_lock_projects(lock_dir: &Path) -> Option<File> {
    let f = open_lock(lock_dir).ok()?;
    f.try_lock().ok()?;
    Some(f)
}

impl Lifecycle<Docker> {
    /// Removes this installation's project images that no registered project and no session
    /// uses. Returns (removed, errors). Skipped while a project command holds the lock.
    pub async fn remove_unused_images(&self) -> (Vec<String>, Vec<String>) {
        let Some(_lock) = try_lock_projects(&self.cfg.state.lock_dir) else {
            return (Vec::new(), Vec::new());
        };
        let mut wanted = BTreeSet::new();
        let rows = {
            let db = self.db();
            db.projects()
                .map(|p| p.into_iter().map(|p| p.image).collect::<Vec<_>>())
                .and_then(|mut v| {
                    v.extend(db.list(None)?.into_iter().map(|s| s.image));
                    Ok(v)
                })
        };
        match rows {
            Ok(v) => wanted.extend(v.into_iter().filter(|i| !i.is_empty())),
            Err(e) => return (Vec::new(), vec![e.to_string()]),
        }
        let built = match self
            .docker
            .list_built_images(LABEL_PROJECT_IMAGE, &self.instance)
            .await
        {
            Ok(b) => b,
            Err(e) => return (Vec::new(), vec![e.to_string()]),
        };
        let built: Vec<(String, Vec<String>)> = built.into_iter().map(|b| (b.id, b.tags)).collect();
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for id in unused_images(&built, &wanted) {
            let name = built
                .iter()
                .find(|(i, _)| *i == id)
                .and_then(|(_, t)| t.first().cloned())
                .unwrap_or_else(|| id.clone());
            match self.docker.remove_image(&id).await {
                Ok(()) => {
                    tracing::info!(image = %name, "removed a project image no project uses");
                    removed.push(name);
                }
                // Still used by a container (of a session that ended badly, say).
                Err(crate::engine::Error::Conflict { .. }) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        (removed, errors)
    }
}
