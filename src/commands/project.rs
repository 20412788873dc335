//! `add-project`, `update-project`, `remove-project`, `list-projects`, `ssh-config`: the
//! project registry (state.db), the checkouts under `/var/lib/podspawn/projects/<name>` and the
//! images built from their Podfiles. Root only; talks to state.db and Docker directly, like
//! `cleanup`. Builds happen here and never at login, so build output never reaches an SSH
//! session: a progress bar when stderr is a terminal, plain `step` lines otherwise.

use crate::core::config::Config;
use crate::core::podfile::Podfile;
use crate::core::projects::{self as pure, LABEL_PROJECT_IMAGE};
use crate::engine::{self, ContainerRuntime, Docker};
use crate::host::repo;
use crate::roles::lifecycle::now;
use crate::roles::project_session::{checkout_dir, load_podfile, project_tag, projects_dir};
use crate::store::projects::ProjectRow;
use crate::store::state::Db;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

fn validate_name(name: &str) -> Result<(), String> {
    crate::core::names::validate_project(name).map_err(String::from)
}

fn unknown(name: &str) -> String {
    format!("no project {name} is registered; see podspawn list-projects, or add it with: podspawn add-project {name} --repo URL")
}

/// `Step 3/7 : RUN …` of the classic builder → (3, 7, "RUN …").
pub fn parse_step(line: &str) -> Option<(u32, u32, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, what) = rest.split_once(" : ")?;
    let (n, m) = frac.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?, what.trim()))
}

/// One progress line for a terminal: `[#####-----] 3/7 RUN …`, at most `width` characters.
pub fn bar_line(n: u32, m: u32, what: &str, width: usize) -> String {
    let slots = 20usize;
    let done = if m == 0 {
        0
    } else {
        (n.min(m) as usize * slots) / m as usize
    };
    let mut s = format!(
        "[{}{}] {n}/{m} {}",
        "#".repeat(done),
        "-".repeat(slots - done),
        what.replace(char::is_control, " ")
    );
    if s.chars().count() > width {
        s = s.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
    }
    s
}

struct Progress {
    tty: bool,
    shown: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn line(&mut self, l: &str) {
        tracing::debug!(target: "podspawn::build", "{l}");
        let Some((n, m, what)) = parse_step(l) else {
            return;
        };
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", bar_line(n, m, what, 78));
            self.shown = true;
        } else {
            let _ = writeln!(err, "step {n}/{m}: {what}");
        }
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.shown {
            let _ = writeln!(std::io::stderr());
            self.shown = false;
        }
    }
}

/// The labels of a project image of this installation.
fn image_labels(instance: &str, project: &str) -> engine::Labels {
    let mut l = engine::Labels::new();
    l.insert(engine::LABEL_MANAGED.into(), "podspawn".into());
    l.insert(engine::LABEL_INSTANCE.into(), instance.into());
    l.insert(LABEL_PROJECT_IMAGE.into(), project.into());
    l
}

/// What a build did.
enum Built {
    /// The image for this Podfile and base already exists.
    UpToDate(String),
    /// A new image was built.
    New(String),
}

/// Builds `pf`'s image for `project` unless it exists. The base image must be on the host (it
/// is pulled if not, where a registry is reachable).
async fn build(
    docker: &Docker,
    instance: &str,
    project: &str,
    pf: &Podfile,
    admin_allows_binds: bool,
) -> Result<Built, String> {
    if !admin_allows_binds {
        if let Some((svc, path)) = pf.host_binds().first() {
            return Err(format!(
                "service {svc}: the host bind mount {path} is refused; use a named volume \
                 (name:/path), or set security.allow_service_binds: true in the config"
            ));
        }
    }
    if docker.image_id(&pf.base).await?.is_none() {
        docker.ensure_image(&pf.base).await.map_err(|e| {
            format!(
                "the Podfile's base image {} is not on this host and could not be pulled ({e}); \
                 pull or build it first",
                pf.base
            )
        })?;
    }
    let tag = project_tag(docker, pf, project)
        .await?
        .ok_or_else(|| format!("the base image {} disappeared during the build", pf.base))?;
    if docker.image_id(&tag).await?.is_some() {
        return Ok(Built::UpToDate(tag));
    }
    let context = pure::build_context(&pf.dockerfile());
    let mut progress = Progress::new();
    let labels = image_labels(instance, project);
    let mut on_line = |l: &str| progress.line(l);
    let r = docker
        .build_image(&tag, context, &labels, &mut on_line)
        .await;
    progress.finish();
    r.map_err(|e| format!("building the image of {project} failed: {e}"))?;
    Ok(Built::New(tag))
}

fn removed_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }
}

pub fn add(cfg: &Config, name: &str, url: &str, branch: Option<&str>) -> Result<(), String> {
    validate_name(name)?;
    pure::validate_repo_url(url).map_err(|e| e.to_string())?;
    let branch = branch.unwrap_or("");
    if !branch.is_empty() {
        pure::validate_branch(branch).map_err(|e| e.to_string())?;
    }
    let _lock = crate::roles::project_images::lock_projects(&cfg.state.lock_dir)?;
    let db = Db::open(&cfg.state.db_path)?;
    if db.project(name)?.is_some() {
        return Err(format!(
            "project {name} is already registered; update it with: podspawn update-project \
             {name} (or remove it first: podspawn remove-project {name})"
        ));
    }
    let dir = checkout_dir(&cfg.state.db_path, name);
    if dir.exists() {
        return Err(format!(
            "{} exists but no project {name} is registered; remove that directory first",
            dir.display()
        ));
    }
    let parent = projects_dir(&cfg.state.db_path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let tmp = parent.join(format!(".add-{name}-{}", std::process::id()));
    removed_dir(&tmp);
    let instance = db.instance()?;
    let result = runtime()?.block_on(add_inner(cfg, &db, &instance, name, url, branch, &tmp));
    if result.is_err() {
        removed_dir(&tmp);
    }
    result
}

async fn add_inner(
    cfg: &Config,
    db: &Db,
    instance: &str,
    name: &str,
    url: &str,
    branch: &str,
    tmp: &Path,
) -> Result<(), String> {
    eprintln!("cloning {url}");
    repo::clone(url, branch, tmp)?;
    let commit = repo::head(tmp)?;
    let pf = load_podfile(tmp)?;
    let docker = Docker::connect().await?;
    let (image, built_new) = match &pf {
        None => (String::new(), false),
        Some(pf) => match build(
            &docker,
            instance,
            name,
            pf,
            cfg.security.allow_service_binds,
        )
        .await?
        {
            Built::UpToDate(t) => (t, false),
            Built::New(t) => (t, true),
        },
    };
    let dir = checkout_dir(&cfg.state.db_path, name);
    let t = now();
    let row = ProjectRow {
        name: name.to_string(),
        repo: url.to_string(),
        branch: branch.to_string(),
        commit_id: commit.clone(),
        image: image.clone(),
        created_at: t,
        updated_at: t,
    };
    let done = std::fs::rename(tmp, &dir)
        .map_err(|e| format!("cannot move the checkout to {}: {e}", dir.display()))
        .and_then(|()| db.insert_project(&row).map_err(String::from));
    if let Err(e) = done {
        // Leave nothing behind: the checkout (moved or not) and the image this add built.
        removed_dir(&dir);
        if built_new {
            let _ = docker.remove_image(&image).await;
        }
        return Err(e);
    }
    if image.is_empty() {
        println!(
            "added project {name} at {} (no Podfile: sessions use the default image)",
            short(&commit)
        );
    } else {
        println!("added project {name} at {}, image {image}", short(&commit));
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

pub fn update(cfg: &Config, name: &str) -> Result<(), String> {
    validate_name(name)?;
    let _lock = crate::roles::project_images::lock_projects(&cfg.state.lock_dir)?;
    let db = Db::open(&cfg.state.db_path)?;
    let row = db.project(name)?.ok_or_else(|| unknown(name))?;
    let dir = checkout_dir(&cfg.state.db_path, name);
    let instance = db.instance()?;
    runtime()?.block_on(async {
        let old = repo::head(&dir)?;
        let new = repo::pull(&dir, &row.branch)?;
        let built = async {
            let docker = Docker::connect().await?;
            match load_podfile(&dir)? {
                None => Ok::<_, String>(None),
                Some(pf) => Ok(Some(
                    build(
                        &docker,
                        &instance,
                        name,
                        &pf,
                        cfg.security.allow_service_binds,
                    )
                    .await?,
                )),
            }
        }
        .await;
        let built = match built {
            Ok(b) => b,
            Err(e) => {
                // The registered state stays as it was: the old commit is checked out again.
                if let Err(e2) = repo::checkout(&dir, &old) {
                    tracing::warn!("cannot restore {} to {old}: {e2}", dir.display());
                }
                return Err(e);
            }
        };
        let image = match &built {
            None => String::new(),
            Some(Built::UpToDate(t)) | Some(Built::New(t)) => t.clone(),
        };
        db.update_project(name, &new, &image, now())?;
        let moved = if new == old {
            format!("still at {}", short(&new))
        } else {
            format!("updated {} -> {}", short(&old), short(&new))
        };
        match built {
            None => println!("{name}: {moved}; no Podfile: sessions use the default image"),
            Some(Built::UpToDate(t)) => {
                println!("{name}: {moved}; nothing to build, the image {t} is up to date")
            }
            Some(Built::New(t)) => println!(
                "{name}: {moved}; built {t} (running sessions keep their container, new ones \
                 use it)"
            ),
        }
        Ok(())
    })
}

pub fn remove(cfg: &Config, name: &str, purge: bool) -> Result<(), String> {
    validate_name(name)?;
    let _lock = crate::roles::project_images::lock_projects(&cfg.state.lock_dir)?;
    let db = Db::open(&cfg.state.db_path)?;
    db.project(name)?.ok_or_else(|| unknown(name))?;
    let instance = db.instance()?;
    db.delete_project(name)?;
    removed_dir(&checkout_dir(&cfg.state.db_path, name));
    if purge {
        runtime()?.block_on(async {
            let docker = Docker::connect().await?;
            for img in docker
                .list_built_images(LABEL_PROJECT_IMAGE, &instance)
                .await?
            {
                if img.labels.get(LABEL_PROJECT_IMAGE).map(String::as_str) == Some(name) {
                    if let Err(e) = docker.remove_image(&img.id).await {
                        eprintln!(
                            "podspawn: keeping image {} ({e}); cleanup removes it once unused",
                            img.id
                        );
                    }
                }
            }
            Ok::<_, String>(())
        })?;
    }
    println!("removed project {name}");
    Ok(())
}

pub fn list(cfg: &Config, json: bool) -> Result<(), String> {
    let db = Db::open(&cfg.state.db_path)?;
    let rows = db.projects()?;
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    if rows.is_empty() {
        println!("no projects; add one with: podspawn add-project NAME --repo URL");
        return Ok(());
    }
    println!(
        "{:<20} {:<12} {:<12} {:<44} REPOSITORY",
        "NAME", "BRANCH", "COMMIT", "IMAGE"
    );
    for r in rows {
        println!(
            "{:<20} {:<12} {:<12} {:<44} {}",
            r.name,
            if r.branch.is_empty() {
                "(default)"
            } else {
                &r.branch
            },
            short(&r.commit_id),
            if r.image.is_empty() {
                "(default image)"
            } else {
                &r.image
            },
            r.repo
        );
    }
    Ok(())
}

/// `podspawn ssh-config USER [--host NAME] [--port N]`.
pub fn ssh_config(
    cfg: &Config,
    user: &str,
    host: Option<&str>,
    port: Option<u16>,
) -> Result<(), String> {
    crate::core::names::validate_user(user).map_err(String::from)?;
    let host = match host {
        Some(h) => h.to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .map_err(|e| format!("cannot read the host name ({e}); pass --host NAME"))?,
    };
    pure::validate_host(&host)?;
    let db = Db::open(&cfg.state.db_path)?;
    let projects: Vec<String> = db.projects()?.into_iter().map(|p| p.name).collect();
    if projects.is_empty() {
        return Err(
            "no projects are registered; add one with: podspawn add-project NAME --repo URL".into(),
        );
    }
    print!("{}", pure::ssh_config(user, &host, port, &projects));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn build_steps_and_the_bar() {
        assert_eq!(
            parse_step("Step 2/5 : RUN apt-get update"),
            Some((2, 5, "RUN apt-get update"))
        );
        assert_eq!(parse_step(" ---> Running in 1234"), None);
        assert_eq!(parse_step("Step x/5 : RUN"), None);
        assert_eq!(
            bar_line(2, 4, "RUN x", 80),
            "[##########----------] 2/4 RUN x"
        );
        let long = bar_line(1, 1, &"y".repeat(200), 40);
        assert_eq!(long.chars().count(), 40);
        assert!(!bar_line(1, 2, "a\rb\x1b[2J", 80).contains('\x1b'));
    }
}
