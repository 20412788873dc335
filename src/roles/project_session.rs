//! A session of a registered project: at container creation the broker resolves the project's
//! Podfile from its checkout exactly as `update-project` did (same files, same base image ID,
//! so the same tag), and uses that image, or refuses with the one line that says how to build it.
//! Unregistered project names keep the default image (the reference's behaviour).

use crate::core::podfile::{self, Podfile};
use crate::engine::{self, ContainerRuntime};
use crate::roles::lifecycle::Lifecycle;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where project checkouts live: `projects/` next to state.db (`/var/lib/podspawn/projects`).
pub fn projects_dir(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or_else(|| Path::new("/var/lib/podspawn"))
        .join("projects")
}

/// The checkout of project `name`.
pub fn checkout_dir(db_path: &Path, name: &str) -> PathBuf {
    projects_dir(db_path).join(name)
}

/// Why a project session cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectError {
    /// The project's image (for its current Podfile and base image) has not been built.
    NotPreBuilt { project: String },
    /// The checkout or its Podfile cannot be read or is invalid (the admin must fix it).
    Podfile { project: String, message: String },
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectError::NotPreBuilt { project } => {
                write!(
                    f,
                    "image not pre-built, run: podspawn update-project {project}"
                )
            }
            ProjectError::Podfile { project, message } => write!(
                f,
                "project {project}: {message}; ask the administrator to fix it and run: podspawn \
                 update-project {project}"
            ),
        }
    }
}

impl std::error::Error for ProjectError {}

/// What a project adds to a session's container.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSession {
    pub project: String,
    pub image: String,
    pub podfile: Podfile,
    pub checkout: PathBuf,
}

/// Resolves the Podfile of the checkout at `dir` (None: the repository has none).
pub fn load_podfile(dir: &Path) -> Result<Option<Podfile>, String> {
    let repo = crate::host::repo::HostRepo::open(dir)?;
    podfile::load(&repo).map_err(|e| e.to_string())
}

/// The image tag of `pf` for `project` on this engine: None when the base image is missing.
pub async fn project_tag<R: ContainerRuntime>(
    rt: &R,
    pf: &Podfile,
    project: &str,
) -> engine::Result<Option<String>> {
    Ok(rt
        .image_id(&pf.base)
        .await?
        .map(|base_id| pf.image_tag(project, &base_id)))
}

/// Where a project's checkout is mounted (read-only) in its containers; the user works on a
/// copy in [`workspace`].
pub const SOURCE_MOUNT: &str = "/var/lib/podspawn-project";

/// The user's copy of the repository in the container.
pub fn workspace(project: &str) -> String {
    format!("/workspace/{project}")
}

/// Copies the mounted checkout to the workspace (as root, once per container) and gives it to
/// the user. Arguments: workspace, `uid:gid`.
const WORKSPACE_SCRIPT: &str = r#"set -e
[ -e "$1" ] && exit 0
mkdir -p "$1"
cp -a /var/lib/podspawn-project/. "$1/"
chown -R "$2" "$1""#;

/// Runs a hook as the user: in the workspace (else the home directory); with a marker
/// directory, only the first time (`mkdir` is atomic, so two logins cannot both run it).
/// The output goes through a file, so a process the hook leaves running in the background
/// (a dev server, say) does not hold the login up. Arguments: workspace, script, marker
/// ("" = every time).
const HOOK_SCRIPT: &str = r#"cd "$1" 2>/dev/null || cd "$HOME" 2>/dev/null || cd /
if [ -n "$3" ]; then mkdir "$3" 2>/dev/null || exit 0; fi
out=/tmp/.podspawn-hook-$$
/bin/sh -c "$2" >"$out" 2>&1 </dev/null
rc=$?
cat "$out"
rm -f "$out"
exit $rc"#;

/// How long a login waits for a hook (it goes on running in the container after that).
const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Marker of a container whose on_create ran.
const ON_CREATE_MARKER: &str = "/tmp/.podspawn-on_create-done";

/// Prints the hooks' output, moves to the workspace if there is one, then runs the session.
/// Arguments: text, workspace, the session's argv.
const SHOW_SCRIPT: &str = r#"printf '%s' "$1"
cd "$2" 2>/dev/null || true
shift 2
exec "$@""#;

/// The exec argv of a hook: `commands` joined by newlines, run by [`HOOK_SCRIPT`].
pub fn hook_argv(workspace: &str, commands: &[String], once: bool) -> Option<Vec<String>> {
    if commands.is_empty() {
        return None;
    }
    Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        HOOK_SCRIPT.into(),
        "podspawn-hook".into(),
        workspace.into(),
        commands.join("\n"),
        if once {
            ON_CREATE_MARKER.into()
        } else {
            String::new()
        },
    ])
}

/// The argv of the workspace copy (run as root).
pub fn workspace_argv(project: &str, uid: u32, gid: u32) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        WORKSPACE_SCRIPT.into(),
        "podspawn-workspace".into(),
        workspace(project),
        format!("{uid}:{gid}"),
    ]
}

/// An interactive session's argv: the hooks' output first, then the shell in the workspace.
pub fn interactive_argv(shown: &str, workspace: &str, argv: Vec<String>) -> Vec<String> {
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        SHOW_SCRIPT.to_string(),
        "podspawn-show".to_string(),
        shown.to_string(),
        workspace.to_string(),
    ];
    v.extend(argv);
    v
}

impl ProjectSession {
    /// Puts the project's image, environment, source mount and (unless the user's overrides
    /// set them) resources into a new container's spec.
    pub fn apply(
        &self,
        spec: &mut engine::ContainerSpec,
        user: &str,
        ov: &crate::core::config::UserOverrides,
    ) {
        spec.image = self.image.clone();
        if let (Some(c), None) = (self.podfile.resources.cpus, ov.cpus) {
            spec.nano_cpus = (c * 1e9) as i64;
        }
        if let (Some(m), None) = (self.podfile.resources.memory, ov.memory) {
            spec.memory = i64::try_from(m).unwrap_or(i64::MAX);
        }
        spec.binds
            .push(engine::Bind::read_only(self.checkout.clone(), SOURCE_MOUNT));
        spec.env = self
            .podfile
            .env_for(user, &self.project)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain([format!("PODSPAWN_PROJECT={}", self.project)])
            .collect();
    }
}

impl<R: ContainerRuntime> Lifecycle<R> {
    /// The project session of `project` (None: no project, an unregistered one, or a repository
    /// without a Podfile — the default image then).
    pub async fn project_session(
        &self,
        project: &str,
    ) -> Result<Option<ProjectSession>, crate::roles::lifecycle::Error> {
        if project.is_empty() {
            return Ok(None);
        }
        let Some(_row) = self.db().project(project)? else {
            return Ok(None);
        };
        let dir = checkout_dir(&self.cfg.state.db_path, project);
        let fail = |message: String| ProjectError::Podfile {
            project: project.to_string(),
            message,
        };
        let d = dir.clone();
        let pf = tokio::task::spawn_blocking(move || load_podfile(&d))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(fail)?;
        let Some(pf) = pf else {
            return Ok(None);
        };
        let not_built = || ProjectError::NotPreBuilt {
            project: project.to_string(),
        };
        let tag = project_tag(&self.docker, &pf, project)
            .await?
            .ok_or_else(not_built)?;
        if self.docker.image_id(&tag).await?.is_none() {
            return Err(not_built().into());
        }
        Ok(Some(ProjectSession {
            project: project.to_string(),
            image: tag,
            podfile: pf,
            checkout: dir,
        }))
    }

    /// After a project container started: the user's copy of the repository (a failure is
    /// logged; the session goes on without it).
    pub async fn prepare_workspace(&self, id: &str, p: &ProjectSession, uid: u32, gid: u32) {
        let argv = workspace_argv(&p.project, uid, gid);
        match self
            .docker
            .exec_capture(id, "0:0", "/", Vec::new(), argv)
            .await
        {
            Ok((Some(0), _)) => {}
            Ok((code, out)) => tracing::warn!(podspawn_project = %p.project, ?code,
                "copying the repository to the workspace failed: {}", out.trim()),
            Err(e) => tracing::warn!(podspawn_project = %p.project,
                "copying the repository to the workspace failed: {e}"),
        }
    }

    /// Runs the project's hooks for a login: on_create the first time in this container (any
    /// kind of login), on_start for interactive logins only. Output is always logged and
    /// returned (to be shown on interactive logins only). Failures are logged, not fatal.
    pub async fn run_hooks(
        &self,
        account: &crate::host::accounts::Account,
        project: &str,
        container_id: &str,
        interactive: bool,
    ) -> String {
        if project.is_empty() {
            return String::new();
        }
        // A command, scp or sftp login into a container whose on_create already ran has nothing
        // to do here: no Podfile read, no exec (this runs on every login of a project).
        let created_done = lock_set(&self.created_hooks_done).contains(container_id);
        if !interactive && created_done {
            return String::new();
        }
        if !matches!(self.db().project(project), Ok(Some(_))) {
            return String::new();
        }
        let dir = checkout_dir(&self.cfg.state.db_path, project);
        let pf = match tokio::task::spawn_blocking(move || load_podfile(&dir)).await {
            Ok(Ok(Some(pf))) => pf,
            _ => return String::new(),
        };
        let ws = workspace(project);
        let env = vec![
            format!("HOME=/home/{}", account.name),
            format!("USER={}", account.name),
            format!("LOGNAME={}", account.name),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ];
        let mut shown = String::new();
        let hooks = [
            (
                "on_create",
                if created_done {
                    None
                } else {
                    hook_argv(&ws, &pf.on_create, true)
                },
            ),
            (
                "on_start",
                if interactive {
                    hook_argv(&ws, &pf.on_start, false)
                } else {
                    None
                },
            ),
        ];
        // Whether on_create is settled (ran, or there is none); an engine error leaves it to retry.
        let mut create_settled = true;
        for (name, argv) in hooks {
            let Some(argv) = argv else { continue };
            let user = format!("{}:{}", account.uid, account.gid);
            let run = self
                .docker
                .exec_capture(container_id, &user, "/", env.clone(), argv);
            let Ok(result) = tokio::time::timeout(HOOK_TIMEOUT, run).await else {
                tracing::warn!(podspawn_user = %account.name, podspawn_project = project,
                    hook = name, "project hook still running after 60 s; not waiting for it");
                shown.push_str(&format!(
                    "podspawn: the project's {name} hook is still running after 60 s\n"
                ));
                continue;
            };
            match result {
                Ok((code, out)) => {
                    tracing::info!(podspawn_user = %account.name, podspawn_project = project,
                        hook = name, exit_code = ?code, output = %out, "project hook");
                    shown.push_str(&out);
                    if code != Some(0) {
                        shown.push_str(&format!(
                            "podspawn: the project's {name} hook failed (exit {})\n",
                            code.map_or("?".to_string(), |c| c.to_string())
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(podspawn_user = %account.name,
                        podspawn_project = project, hook = name, "project hook: {e}");
                    if name == "on_create" {
                        create_settled = false;
                    }
                }
            }
        }
        if !create_settled {
            return shown;
        }
        // The container's marker keeps on_create to once even after a broker restart; this only
        // spares later logins the check. Bounded like the broker's other per-container caches.
        let mut done = lock_set(&self.created_hooks_done);
        if done.len() >= 4096 {
            done.clear();
        }
        done.insert(container_id.to_string());
        shown
    }
}

fn lock_set(
    m: &std::sync::Mutex<std::collections::HashSet<String>>,
) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_not_pre_built_line() {
        let e = ProjectError::NotPreBuilt {
            project: "backend".into(),
        };
        assert_eq!(
            e.to_string(),
            "image not pre-built, run: podspawn update-project backend"
        );
        assert_eq!(
            checkout_dir(Path::new("/var/lib/podspawn/state.db"), "backend"),
            Path::new("/var/lib/podspawn/projects/backend")
        );
    }

    #[test]
    fn the_spec_gets_the_image_and_the_expanded_env() {
        let pf = podfile::load(&podfile::MemFiles::new([(
            "podfile.yaml",
            "base: debian\nenv:\n  WHO: \"${PODSPAWN_USER}@${PODSPAWN_PROJECT}\"\n  A: b\n",
        )]))
        .unwrap()
        .unwrap();
        let ps = ProjectSession {
            project: "backend".into(),
            image: "podspawn-project-backend:0123".into(),
            podfile: pf,
            checkout: PathBuf::from("/x"),
        };
        let mut spec = engine::container_spec(
            &crate::core::config::Config::default(),
            &Default::default(),
            "i",
            "alice",
            "backend",
        );
        ps.apply(&mut spec, "alice", &Default::default());
        assert_eq!(spec.image, "podspawn-project-backend:0123");
        assert_eq!(
            spec.env,
            vec!["A=b", "WHO=alice@backend", "PODSPAWN_PROJECT=backend"]
        );
        assert!(spec
            .binds
            .contains(&engine::Bind::read_only("/x".into(), SOURCE_MOUNT)));
    }

    /// The login path against the fake engine: an unregistered project keeps the default image;
    /// a registered one uses its image when built (same tag as update-project computes), and
    /// otherwise refuses with the one line; the Podfile's mode applies.
    #[test]
    fn a_login_uses_the_projects_image_or_says_it_is_not_built() {
        use crate::roles::lifecycle::tests::{account, lifecycle, rt};
        let dir = crate::test_support::TempDir::new("lc-project");
        let lc = lifecycle(&dir, crate::core::config::SessionMode::GracePeriod);
        let rt = rt();
        let checkout = checkout_dir(&lc.cfg.state.db_path, "backend");
        std::fs::create_dir_all(&checkout).unwrap();
        std::fs::write(
            checkout.join("podfile.yaml"),
            "base: debian:12\nmode: destroy-on-disconnect\nenv:\n  WHO: \"${PODSPAWN_USER}\"\n",
        )
        .unwrap();
        let alice = account("alice", 2001);

        // Not registered: the default image, as before projects existed.
        let row = rt
            .block_on(lc.create(&alice, "other", "podspawn-alice-other", 1))
            .unwrap();
        assert_eq!(row.image, lc.cfg.defaults.image);

        lc.db()
            .insert_project(&crate::store::projects::ProjectRow {
                name: "backend".into(),
                repo: "file:///srv/backend".into(),
                branch: String::new(),
                commit_id: "c".into(),
                image: String::new(),
                created_at: 1,
                updated_at: 1,
            })
            .unwrap();
        let err = rt
            .block_on(lc.create(&alice, "backend", "podspawn-alice-backend", 1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "image not pre-built, run: podspawn update-project backend"
        );
        // The base image exists but the project's does not: the same line.
        lc.docker.add_image("debian:12");
        let err = rt
            .block_on(lc.create(&alice, "backend", "podspawn-alice-backend", 1))
            .unwrap_err();
        assert!(matches!(
            err,
            crate::roles::lifecycle::Error::Project(ProjectError::NotPreBuilt { .. })
        ));
        assert!(lc.docker.container("podspawn-alice-backend").is_none());

        let pf = load_podfile(&checkout).unwrap().unwrap();
        let tag = pf.image_tag("backend", "sha256:fake-debian:12");
        lc.docker.add_image(&tag);
        let row = rt
            .block_on(lc.create(&alice, "backend", "podspawn-alice-backend", 1))
            .unwrap();
        assert_eq!(row.image, tag);
        assert_eq!(
            row.mode,
            crate::core::config::SessionMode::DestroyOnDisconnect
        );
        let c = lc.docker.container("podspawn-alice-backend").unwrap();
        assert_eq!(c.image, tag);
        assert!(c
            .binds
            .contains(&engine::Bind::read_only(checkout.clone(), SOURCE_MOUNT)));
    }

    #[test]
    fn hooks_and_the_interactive_wrapper() {
        assert_eq!(hook_argv("/workspace/p", &[], true), None);
        let a = hook_argv("/workspace/p", &["echo a".into(), "echo b".into()], true).unwrap();
        assert_eq!(a[4..], ["/workspace/p", "echo a\necho b", ON_CREATE_MARKER]);
        let a = hook_argv("/workspace/p", &["x".into()], false).unwrap();
        assert_eq!(a[6], "");
        let w = interactive_argv("out\n", "/workspace/p", vec!["/bin/sh".into(), "-l".into()]);
        assert_eq!(w[4..], ["out\n", "/workspace/p", "/bin/sh", "-l"]);
        assert_eq!(
            workspace_argv("p", 1000, 1001)[4..],
            ["/workspace/p", "1000:1001"]
        );
    }
}
