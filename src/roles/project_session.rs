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

impl ProjectSession {
    /// Puts the project's image and environment into a new container's spec.
    pub fn apply(&self, spec: &mut engine::ContainerSpec, user: &str) {
        spec.image = self.image.clone();
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
        ps.apply(&mut spec, "alice");
        assert_eq!(spec.image, "podspawn-project-backend:0123");
        assert_eq!(
            spec.env,
            vec!["A=b", "WHO=alice@backend", "PODSPAWN_PROJECT=backend"]
        );
    }
}
