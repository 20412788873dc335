//! Projects end to end: a project registered from a local git repository (file:// URL) with a
//! Podfile that uses extends, packages and env, built on a local Debian image (debootstrap from
//! the host's configured mirror); logins through a real sshd land in the project's image;
//! update-project with and without changes; the "image not pre-built" line; `ssh-config` used by
//! a real `ssh -F`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{run, Env, User};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BASE: &str = "podspawn-test-debian:bookworm";

fn base_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/build-debian-base.sh");
    let out = run(Command::new("sh").arg(script).arg(BASE));
    assert!(
        out.status.success(),
        "building {BASE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn git(dir: &Path, args: &[&str]) {
    let out = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args));
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

/// A git repository at `dir` holding `files`, committed on branch main.
fn make_repo(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let out = run(Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(dir));
    assert!(out.status.success(), "{}", text(&out));
    commit(dir, files, "initial");
}

fn commit(dir: &Path, files: &[(&str, &str)], msg: &str) {
    for (p, c) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, c).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
}

/// Removes the images this test's projects built, even when it fails.
struct Images(String);
impl Drop for Images {
    fn drop(&mut self) {
        // Dropped before the Env: first the project's containers, which hold the images and
        // volumes.
        let out = run(Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=podspawn-project={}", self.0)));
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("docker")
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let out = run(Command::new("docker")
            .args(["images", "-q", "--filter"])
            .arg(format!("label=podspawn-project-image={}", self.0)));
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("docker")
                .args(["rmi", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let out = run(Command::new("docker")
            .args(["volume", "ls", "-q", "--filter"])
            .arg(format!("label=podspawn-project={}", self.0)));
        for v in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ssh_project(env: &Env, user: &User, project: &str, cmd: &str) -> Output {
    let mut c = env.ssh_cmd(user);
    c.args(["-o", &format!("SetEnv=PODSPAWN_PROJECT={project}")])
        .arg(format!("{}@127.0.0.1", user.name))
        .arg(cmd)
        .stdin(Stdio::null());
    run(&mut c)
}

fn container_image(name: &str) -> String {
    let out = run(Command::new("docker").args(["inspect", "-f", "{{.Config.Image}}", name]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn projects_json(env: &Env) -> serde_json::Value {
    let out = env.podspawn(&["list-projects", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

const BASE_PODFILE: &str =
    "base: podspawn-test-debian:bookworm\npackages: [jq]\nenv:\n  GREETING: hello\n";

#[test]
fn bad_input_is_refused_and_leaves_nothing_behind() {
    base_image();
    let env = Env::start();
    let repo = env.root.join("badrepo");
    make_repo(
        &repo,
        &[
            (
                "podfile.yaml",
                "extends: base.yaml\npackages: [jq]\nenv:\n  X: \"${NOPE}\"\n",
            ),
            ("base.yaml", BASE_PODFILE),
        ],
    );
    let url = format!("file://{}", repo.display());
    for (args, want) in [
        (
            vec!["add-project", "Bad!", "--repo", url.as_str()],
            "invalid project name",
        ),
        (
            vec!["add-project", "ok", "--repo", "ext::sh -c id"],
            "invalid repository URL",
        ),
        (
            vec!["add-project", "ok", "--repo", "/relative/or/local"],
            "file:///absolute/path",
        ),
        (
            vec![
                "add-project",
                "ok",
                "--repo",
                url.as_str(),
                "--branch=--upload-pack=x",
            ],
            "invalid branch",
        ),
        (
            vec![
                "add-project",
                "ok",
                "--repo",
                url.as_str(),
                "--branch",
                "nosuch",
            ],
            "git clone",
        ),
        (
            vec!["update-project", "nosuch"],
            "no project nosuch is registered",
        ),
    ] {
        let out = env.podspawn(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // An invalid Podfile: the error names the file, the line and the key; nothing is left.
    let out = env.podspawn(&["add-project", "broken", "--repo", &url]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("podfile.yaml: line 4: env.X"), "{err}");
    assert_eq!(projects_json(&env), serde_json::json!([]));
    let dir = env.root.join("state/projects");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );

    // A build that fails: the builder's error and output are named; nothing is left.
    let failing = env.root.join("failrepo");
    make_repo(
        &failing,
        &[(
            "podfile.yaml",
            "base: podspawn-test-debian:bookworm\nextra_commands: [\"echo boom-output; exit 3\"]\n",
        )],
    );
    let furl = format!("file://{}", failing.display());
    let fname = format!("fail{}", env.id);
    let _images = Images(fname.clone());
    let out = env.podspawn(&["add-project", &fname, "--repo", &furl]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("building the image") && err.contains("boom-output"),
        "{err}"
    );
    assert_eq!(projects_json(&env), serde_json::json!([]));
    assert!(!dir.join(&fname).exists());
    let imgs = run(Command::new("docker")
        .args(["images", "-q", "--filter"])
        .arg(format!("label=podspawn-project-image={fname}")));
    assert!(imgs.stdout.is_empty(), "{}", text(&imgs));

    // A failed update-project keeps the registered commit and the checkout as they were.
    commit(
        &failing,
        &[("podfile.yaml", "base: podspawn-test-debian:bookworm\n")],
        "fixed",
    );
    // On a terminal (script(1) gives it one) the build shows a progress bar.
    let out = run(Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --config {} add-project {fname} --repo {furl}",
            env.bin.display(),
            env.config.display()
        ))
        .arg("/dev/null"));
    assert!(out.status.success(), "{}", text(&out));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("\r\x1b[K[") && tty.contains("] 1/"), "{tty:?}");
    assert!(!tty.contains("step 1/"), "{tty:?}");
    let before = projects_json(&env)[0].clone();
    commit(
        &failing,
        &[(
            "podfile.yaml",
            "base: podspawn-test-debian:bookworm\nshell: bash\n",
        )],
        "broken again",
    );
    let out = env.podspawn(&["update-project", &fname]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("podfile.yaml: line 2: shell"), "{err}");
    assert_eq!(projects_json(&env)[0], before);
    assert_eq!(
        std::fs::read_to_string(dir.join(&fname).join("podfile.yaml")).unwrap(),
        "base: podspawn-test-debian:bookworm\n"
    );
    let out = env.podspawn(&["remove-project", &fname, "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_project_is_built_used_updated_and_routed() {
    base_image();
    let mut env = Env::start();
    let project = format!("pj{}", env.id);
    let _images = Images(project.clone());
    let repo = env.root.join("repo");
    make_repo(
        &repo,
        &[
            (
                ".podspawn/podfile.yaml",
                "extends: base.yaml\nenv:\n  WHO: \"${PODSPAWN_USER}@${PODSPAWN_PROJECT}\"\n",
            ),
            (".podspawn/base.yaml", BASE_PODFILE),
        ],
    );
    let url = format!("file://{}", repo.display());

    // add-project: clone, build (plain step lines: stderr is not a terminal), register.
    let out = env.podspawn(&["add-project", &project, "--repo", &url, "--branch", "main"]);
    assert!(out.status.success(), "add-project: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("step 1/"), "plain progress lines: {err}");
    assert!(!err.contains('\r'), "no progress bar off a terminal");
    let list = projects_json(&env);
    let image = list[0]["image"].as_str().unwrap().to_string();
    assert_eq!(list[0]["name"], project.as_str());
    assert!(
        image.starts_with(&format!("podspawn-project-{project}:")),
        "{image}"
    );
    let labels =
        run(Command::new("docker").args(["inspect", "-f", "{{json .Config.Labels}}", &image]));
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["managed-by"], "podspawn");
    assert_eq!(labels["podspawn-project-image"], project.as_str());
    assert!(labels["podspawn-instance"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));

    // Nothing changed: update-project builds nothing and says so.
    let out = env.podspawn(&["update-project", &project]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to build"),
        "{}",
        text(&out)
    );

    // A login with the project lands in the project's image with its env and packages.
    let alice = env.add_user();
    let out = ssh_project(
        &env,
        &alice,
        &project,
        "echo $GREETING $WHO; command -v jq; hostname",
    );
    assert!(out.status.success(), "{}\n{}", text(&out), env.broker_log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The hostname is the user's: all of a user's containers share the user's network
    // namespace, and the engine gives containers that join one its hostname.
    assert_eq!(
        stdout,
        format!(
            "hello {}@{project}\n/usr/bin/jq\n{}\n",
            alice.name, alice.name
        )
    );
    let cname = format!("podspawn-{}-{project}", alice.name);
    assert_eq!(container_image(&cname), image);
    let first_id = run(Command::new("docker").args(["inspect", "-f", "{{.Id}}", &cname]));

    // A change: update-project builds a new image; the running session keeps its container.
    commit(
        &repo,
        &[(
            ".podspawn/base.yaml",
            &format!("{BASE_PODFILE}  EXTRA: two\n"),
        )],
        "more env",
    );
    let out = env.podspawn(&["update-project", &project]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("built "),
        "{}",
        text(&out)
    );
    let image2 = projects_json(&env)[0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(image2, image);
    let again = run(Command::new("docker").args(["inspect", "-f", "{{.Id}}", &cname]));
    assert_eq!(
        again.stdout, first_id.stdout,
        "the session's container was left alone"
    );
    let out = env.podspawn(&["stop", &format!("{}@{project}", alice.name)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ssh_project(&env, &alice, &project, "echo $EXTRA");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "two\n",
        "{}",
        text(&out)
    );
    assert_eq!(container_image(&cname), image2);

    // Cleanup removes the image no project or session uses any more, and keeps the current one.
    let out = env.podspawn(&["cleanup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("removed image {image}")),
        "{}",
        text(&out)
    );
    let gone = run(Command::new("docker").args(["image", "inspect", &image]));
    assert!(!gone.status.success(), "{image} is still there");
    let kept = run(Command::new("docker").args(["image", "inspect", &image2]));
    assert!(kept.status.success(), "{image2} was removed");

    // ssh-config: one Host block per project, used by a real ssh -F.
    let out = env.podspawn(&[
        "ssh-config",
        &alice.name,
        "--host",
        "127.0.0.1",
        "--port",
        &env.port.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let cfg_text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        cfg_text.contains(&format!("Host {project}.pod\n")),
        "{cfg_text}"
    );
    assert!(
        cfg_text.contains(&format!("SetEnv PODSPAWN_PROJECT={project}\n")),
        "{cfg_text}"
    );
    assert!(!cfg_text.contains("StrictHostKeyChecking"), "{cfg_text}");
    let cfg_file = env.root.join("ssh_config");
    std::fs::write(&cfg_file, &cfg_text).unwrap();
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(&cfg_file)
        .args(common::SSH_OPTIONS)
        .arg("-i")
        .arg(&alice.key)
        .arg(format!("{project}.pod"))
        // jq is in the project's image only: the login landed in the project's container.
        .arg("echo $PODSPAWN_PROJECT; command -v jq")
        .stdin(Stdio::null());
    let out = run(&mut c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{project}\n/usr/bin/jq\n"),
        "{}",
        text(&out)
    );

    // The image is gone (docker rmi): a new session gets exactly one line.
    let out = env.podspawn(&["stop", &format!("{}@{project}", alice.name)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Command::new("docker").args(["rmi", &image2]));
    assert!(out.status.success(), "{}", text(&out));
    let out = ssh_project(&env, &alice, &project, "true");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("podspawn: image not pre-built, run: podspawn update-project {project}\n")
    );
    let out = env.podspawn(&["update-project", &project]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ssh_project(&env, &alice, &project, "echo $EXTRA");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "two\n",
        "{}",
        text(&out)
    );

    // remove-project --purge: registry row, checkout and (unused) images go.
    let out = env.podspawn(&["stop", &format!("{}@{project}", alice.name)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.podspawn(&["remove-project", &project, "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(projects_json(&env), serde_json::json!([]));
    assert!(!env.root.join("state/projects").join(&project).exists());
    let left = run(Command::new("docker")
        .args(["images", "-q", "--filter"])
        .arg(format!("label=podspawn-project-image={project}")));
    assert!(left.stdout.is_empty(), "images left: {}", text(&left));
}

/// A shell login (no command) with `input` on stdin, no tty.
fn ssh_shell(env: &Env, user: &User, project: &str, input: &str) -> Output {
    use std::io::Write;
    let mut c = env.ssh_cmd(user);
    c.args(["-T", "-o", &format!("SetEnv=PODSPAWN_PROJECT={project}")])
        .arg(format!("{}@127.0.0.1", user.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn hooks_run_once_and_show_only_on_interactive_logins() {
    base_image();
    let mut env = Env::start();
    let project = format!("hk{}", env.id);
    let _images = Images(project.clone());
    let repo = env.root.join("repo");
    make_repo(
        &repo,
        &[(
            "podfile.yaml",
            "base: podspawn-test-debian:bookworm\n\
             packages: [openssh-sftp-server]\n\
             on_create: |\n  echo created-hook in $(pwd)\n  echo x >> $HOME/on_create.count\n\
             on_start:\n  - echo started-hook\n  - echo x >> $HOME/on_start.count\n  - sleep 600 &\n",
        )],
    );
    let url = format!("file://{}", repo.display());
    let out = env.podspawn(&["add-project", &project, "--repo", &url]);
    assert!(out.status.success(), "add-project: {}", text(&out));
    let alice = env.add_user();
    let ws = format!("/workspace/{project}");

    // The first login runs a command: on_create runs (once), silently; on_start does not.
    let out = ssh_project(
        &env,
        &alice,
        &project,
        &format!("cat ~/on_create.count; test -e ~/on_start.count || echo no-start; stat -c %U {ws}/podfile.yaml"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("x\nno-start\n{}\n", alice.name),
        "{}\n{}",
        text(&out),
        env.broker_log()
    );
    assert!(out.stderr.is_empty(), "{}", text(&out));

    // Interactive logins: on_start's output first, in the workspace; on_create not again.
    for n in 1..=2 {
        let out = ssh_shell(
            &env,
            &alice,
            &project,
            "pwd; wc -l < ~/on_start.count; wc -l < ~/on_create.count\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("started-hook\n{ws}\n{n}\n1\n"),
            "{}",
            text(&out)
        );
    }

    // sftp and commands: no hook output, no on_start.
    let batch = env.root.join("batch");
    std::fs::write(&batch, "ls\n").unwrap();
    let o = run(Command::new("sftp")
        .args(env.ssh_opts(&alice))
        .args(["-o", &format!("SetEnv=PODSPAWN_PROJECT={project}")])
        .arg("-P")
        .arg(env.port.to_string())
        .arg("-b")
        .arg(&batch)
        .arg(format!("{}@127.0.0.1", alice.name)));
    assert!(o.status.success(), "sftp: {}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("hook"),
        "{}",
        text(&o)
    );
    let out = ssh_project(
        &env,
        &alice,
        &project,
        "wc -l < ~/on_start.count; wc -l < ~/on_create.count",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2\n1\n",
        "{}",
        text(&out)
    );
    // Always logged.
    let log = env.broker_log();
    assert!(log.contains("created-hook"), "{log}");
    let out = env.podspawn(&["stop", &format!("{}@{project}", alice.name)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.podspawn(&["remove-project", &project, "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
}

const SVC_IMAGE: &str = "podspawn-test-svc:latest";

/// A service image made locally: a perl TCP server on port 7000 that counts its starts in
/// /data/starts and answers `pong <starts> $GREETING`.
fn service_image() {
    let out = run(Command::new("docker").args(["image", "inspect", SVC_IMAGE]));
    if out.status.success() {
        return;
    }
    let script = r#"open(my $h, ">>", "/data/starts") or die "$!"; print $h "x\n"; close $h;
open($h, "<", "/data/starts"); my @l = <$h>; close $h; my $n = scalar @l;
my $s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { print $c "pong $n $ENV{GREETING}\n"; close $c }"#;
    let cmd = serde_json::to_string(&["perl", "-MIO::Socket::INET", "-e", script]).unwrap();
    let dockerfile = format!("FROM {BASE}\nLABEL podspawn-test=1\nCMD {cmd}\n");
    let mut c = Command::new("docker");
    c.args(["build", "-q", "-t", SVC_IMAGE, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "service image: {}", text(&out));
}

const ASK_DB: &str = "for i in $(seq 100); do bash -c 'exec 3<>/dev/tcp/db/7000 && cat <&3' 2>/dev/null && break; sleep 0.2; done";

fn inspect(name: &str, format: &str) -> String {
    let out = run(Command::new("docker").args(["inspect", "-f", format, name]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn companion_services_volumes_and_binds() {
    base_image();
    service_image();
    let mut env = Env::start();
    let project = format!("sv{}", env.id);
    let _images = Images(project.clone());
    let repo = env.root.join("repo");
    make_repo(
        &repo,
        &[(
            "podfile.yaml",
            &format!(
                "base: {BASE}\nservices:\n  - name: db\n    image: {SVC_IMAGE}\n    env:\n      \
                 GREETING: \"hi-${{PODSPAWN_USER}}\"\n    volumes: [\"data:/data\"]\n"
            ),
        )],
    );
    let url = format!("file://{}", repo.display());
    let out = env.podspawn(&["add-project", &project, "--repo", &url]);
    assert!(out.status.success(), "add-project: {}", text(&out));
    let alice = env.add_user();
    let target = format!("{}@{project}", alice.name);
    let volume = format!("podspawn-{}-{project}-data", alice.name);
    let svc = format!("podspawn-{}-{project}-db", alice.name);

    // The session reaches the service by its name.
    let out = ssh_project(&env, &alice, &project, ASK_DB);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("pong 1 hi-{}\n", alice.name),
        "{}\n{}",
        text(&out),
        env.broker_log()
    );
    // Labelled, hardened and limited like the session container.
    let labels: serde_json::Value =
        serde_json::from_str(&inspect(&svc, "{{json .Config.Labels}}")).unwrap();
    assert_eq!(labels["podspawn-user"], alice.name.as_str());
    assert_eq!(labels["podspawn-project"], project.as_str());
    assert_eq!(labels["podspawn-service"], "db");
    assert_eq!(
        labels["podspawn-session"],
        format!("podspawn-{}-{project}", alice.name)
    );
    let session = format!("podspawn-{}-{project}", alice.name);
    for f in [
        "{{json .HostConfig.CapDrop}}",
        "{{json .HostConfig.CapAdd}}",
        "{{json .HostConfig.SecurityOpt}}",
        "{{.HostConfig.PidsLimit}}",
        "{{.HostConfig.Memory}}",
        "{{.HostConfig.NanoCpus}}",
    ] {
        assert_eq!(inspect(&svc, f), inspect(&session, f), "{f}");
    }
    assert_eq!(
        inspect(&volume, "{{index .Labels \"podspawn-volume\"}}"),
        "data"
    );

    // A cleanup pass keeps a live session's service.
    let out = env.podspawn(&["cleanup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !inspect(&svc, "{{.Id}}").is_empty(),
        "cleanup removed a live service"
    );

    // Removed with the session; the named volume stays and serves the next session.
    let out = env.podspawn(&["stop", &target]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        inspect(&svc, "{{.Id}}").is_empty(),
        "the service outlived its session"
    );
    let out = ssh_project(&env, &alice, &project, ASK_DB);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("pong 2 hi-{}\n", alice.name),
        "{}",
        text(&out)
    );
    // stop --purge removes the volume too.
    let out = env.podspawn(&["stop", &target, "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("removed volume {volume}")),
        "{}",
        text(&out)
    );
    assert!(
        inspect(&volume, "{{.Name}}").is_empty(),
        "volume kept after --purge"
    );

    // A partial start removes what it started: the second service's image does not exist.
    commit(
        &repo,
        &[(
            "podfile.yaml",
            &format!(
                "base: {BASE}\nservices:\n  - name: db\n    image: {SVC_IMAGE}\n  - name: \
                 broken\n    image: podspawn-test-missing:none\n"
            ),
        )],
        "a broken service",
    );
    let out = env.podspawn(&["update-project", &project]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ssh_project(&env, &alice, &project, "true");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("podspawn-test-missing:none"),
        "{}",
        text(&out)
    );
    assert!(
        env.containers_of(&alice.name).is_empty(),
        "left behind: {:?}",
        env.containers_of(&alice.name)
    );

    // A host bind mount is refused by default, with the fix named; nothing is registered.
    let bad = env.root.join("bindrepo");
    make_repo(
        &bad,
        &[(
            "podfile.yaml",
            &format!("base: {BASE}\nservices:\n  - name: db\n    image: {SVC_IMAGE}\n    volumes: [\"/etc:/x\"]\n"),
        )],
    );
    let out = env.podspawn(&[
        "add-project",
        "binds",
        "--repo",
        &format!("file://{}", bad.display()),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host bind mount /etc is refused"), "{err}");
    assert!(err.contains("allow_service_binds"), "{err}");
    assert!(!env.root.join("state/projects/binds").exists());

    let out = env.podspawn(&["remove-project", &project, "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
}
