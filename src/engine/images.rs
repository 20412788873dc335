//! Project images on the Docker engine: inspect, build (from an in-memory tar context), list
//! the ones podspawn built, remove. Used by the project admin commands, the login path (does the
//! project's image exist?) and cleanup (images no project uses any more).

use super::docker::{derr, is_not_found};
use super::{Docker, Error, Labels, Result};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::HashMap;

/// One image podspawn built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub id: String,
    pub tags: Vec<String>,
    pub labels: Labels,
}

impl Docker {
    /// The image's ID (`sha256:…`), or None when the engine has no such image.
    pub async fn image_id_of(&self, image: &str) -> Result<Option<String>> {
        match self.ready().await?.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(derr("inspect image", e)),
        }
    }

    /// Builds `context` (a tar holding a Dockerfile) as `tag` with `labels`; every line of the
    /// builder's output goes to `progress`. Returns the image ID.
    pub async fn build_image(
        &self,
        tag: &str,
        context: Vec<u8>,
        labels: &Labels,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String> {
        let opts = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .labels(labels)
            .build();
        let client = self.ready().await?;
        let mut stream = client.build_image(opts, None, Some(bollard::body_full(context.into())));
        let mut tail: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(Error::Api {
                            what: "build".into(),
                            status: 0,
                            message: build_failure(&detail, &tail),
                        });
                    }
                    if let Some(s) = info.stream.or(info.status) {
                        for line in s.lines().filter(|l| !l.trim().is_empty()) {
                            progress(line);
                            tail.push(line.to_string());
                            if tail.len() > 5 {
                                tail.remove(0);
                            }
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(Error::Api {
                        what: "build".into(),
                        status: 0,
                        message: build_failure(&error, &tail),
                    })
                }
                Err(e) => return Err(derr("build", e)),
            }
        }
        self.image_id_of(tag).await?.ok_or_else(|| Error::NotFound {
            what: format!("image {tag} after its build"),
        })
    }

    /// Every image carrying `label` (any value) and `podspawn-instance=<instance>`.
    pub async fn list_built_images(&self, label: &str, instance: &str) -> Result<Vec<BuiltImage>> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        filters.insert(
            "label",
            vec![
                label.to_string(),
                format!("{}={instance}", super::LABEL_INSTANCE),
            ],
        );
        let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
        let list = self
            .ready()
            .await?
            .list_images(Some(opts))
            .await
            .map_err(|e| derr("list images", e))?;
        Ok(list
            .into_iter()
            .map(|i| BuiltImage {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                labels: i.labels,
            })
            .collect())
    }

    /// Removes an image (by ID or tag); a missing one is not an error, one a container still
    /// uses is (Conflict).
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let opts = RemoveImageOptionsBuilder::new().force(false).build();
        match self
            .ready()
            .await?
            .remove_image(image, Some(opts), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(derr("remove image", e)),
        }
    }
}

/// The builder's error with the last lines it printed (the failing step's output).
fn build_failure(error: &str, tail: &[String]) -> String {
    if tail.is_empty() {
        error.trim().to_string()
    } else {
        format!("{} (last output: {})", error.trim(), tail.join(" | "))
    }
}

impl Docker {
    /// Runs `argv` in the container as `user` (`uid:gid`) in `workdir` with `env`, waits for it
    /// and returns its exit code and output (stdout and stderr interleaved, at most 64 KiB kept).
    pub async fn exec_capture(
        &self,
        container: &str,
        user: &str,
        workdir: &str,
        env: Vec<String>,
        argv: Vec<String>,
    ) -> Result<(Option<i64>, String)> {
        use super::ContainerRuntime;
        let cfg = bollard::models::ExecConfig {
            cmd: Some(argv),
            user: Some(user.into()),
            working_dir: Some(workdir.into()),
            env: Some(env),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .ready()
            .await?
            .create_exec(container, cfg)
            .await
            .map_err(|e| derr("create exec", e))?;
        let mut out: Vec<u8> = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .ready()
            .await?
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| derr("start exec", e))?
        {
            while let Some(chunk) = output.next().await {
                if let Ok(c) = chunk {
                    let bytes = c.into_bytes();
                    let room = (64 * 1024usize).saturating_sub(out.len());
                    out.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
        }
        let code = self.inspect_exec(&exec.id).await?.exit_code;
        Ok((code, String::from_utf8_lossy(&out).into_owned()))
    }
}

impl Docker {
    /// Creates the volume `name` with `labels` unless it exists; one of another owner (labels
    /// differ) is a Conflict.
    pub async fn ensure_volume_of(&self, name: &str, labels: &Labels) -> Result<()> {
        let c = self.ready().await?;
        match c.inspect_volume(name).await {
            Ok(v) => {
                if super::same_owner(&v.labels, labels) {
                    Ok(())
                } else {
                    Err(Error::Conflict {
                        what: format!("volume {name}"),
                        message: format!(
                            "docker: the volume {name} exists and belongs to someone else"
                        ),
                    })
                }
            }
            Err(e) if is_not_found(&e) => {
                let req = bollard::models::VolumeCreateRequest {
                    name: Some(name.to_string()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                };
                c.create_volume(req)
                    .await
                    .map(|_| ())
                    .map_err(|e| derr("create volume", e))
            }
            Err(e) => Err(derr("inspect volume", e)),
        }
    }

    /// The volumes of installation `instance`: (name, labels).
    pub async fn list_volumes_of(&self, instance: &str) -> Result<Vec<(String, Labels)>> {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([(
            "label",
            vec![format!("{}={instance}", super::LABEL_INSTANCE)],
        )]);
        let opts = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        let list = self
            .ready()
            .await?
            .list_volumes(Some(opts))
            .await
            .map_err(|e| derr("list volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.labels))
            .collect())
    }

    /// Removes a volume; a missing one is not an error.
    pub async fn remove_volume_named(&self, name: &str) -> Result<()> {
        match self
            .ready()
            .await?
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(derr("remove volume", e)),
        }
    }
}
