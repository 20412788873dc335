#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::hash::sha256_hex;
use super::*;
use crate::core::config::SessionMode;

const ROOT: &str = "podfile.yaml";

fn repo(files: &[(&str, &str)]) -> MemFiles {
    MemFiles::new(files.iter().copied())
}

fn ok(files: &[(&str, &str)]) -> Podfile {
    match resolve(&repo(files), ROOT) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(files: &[(&str, &str)]) -> PodfileError {
    match resolve(&repo(files), ROOT) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

fn one(text: &str) -> Podfile {
    ok(&[(ROOT, text)])
}

fn one_err(text: &str) -> PodfileError {
    err(&[(ROOT, text)])
}

/// Checks file, line and key of an error and that the message contains `needle`.
#[track_caller]
fn assert_err(e: &PodfileError, file: &str, line: Option<usize>, key: Option<&str>, needle: &str) {
    assert_eq!(e.file, file, "file of {e}");
    assert_eq!(e.line, line, "line of {e}");
    assert_eq!(e.key.as_deref(), key, "key of {e}");
    assert!(
        e.message.contains(needle),
        "message of {e:?} lacks {needle:?}"
    );
}

fn names(p: &Podfile) -> Vec<String> {
    p.packages.iter().map(|p| p.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Parsing one file.

#[test]
fn podfile_full_example_parses() {
    let p = one("# a project\n\
         base: ubuntu:24.04\n\
         packages: [git, build-essential, node@20, go@1.22.5]\n\
         env:\n  EDITOR: vim\n  DB: ${PODSPAWN_USER}_db\n  N: 3\n\
         services:\n  - name: postgres\n    image: postgres:16\n    env: {POSTGRES_PASSWORD: dev}\n\
         \x20   ports: [5432]\n    volumes: [\"pgdata:/var/lib/postgresql/data\"]\n\
         on_create: make setup\n\
         on_start: [echo one, echo two]\n\
         extra_commands:\n  - curl -fsSL https://example.com/x | sh\n\
         shell: /bin/zsh\n\
         resources: {cpus: 1.5, memory: 2g}\n\
         mode: persistent\n");
    assert_eq!(p.base, "ubuntu:24.04");
    assert_eq!(
        names(&p),
        ["git", "build-essential", "node@20", "go@1.22.5"]
    );
    assert_eq!(p.env["EDITOR"], "vim");
    assert_eq!(p.env["N"], "3");
    assert_eq!(p.services.len(), 1);
    let s = &p.services[0];
    assert_eq!(
        (s.name.as_str(), s.image.as_str()),
        ("postgres", "postgres:16")
    );
    assert_eq!(s.ports, [5432]);
    assert_eq!(
        s.volumes,
        [Volume {
            source: VolumeSource::Named("pgdata".into()),
            target: "/var/lib/postgresql/data".into(),
            read_only: false
        }]
    );
    assert_eq!(p.on_create, ["make setup"]);
    assert_eq!(p.on_start, ["echo one", "echo two"]);
    assert_eq!(p.extra_commands.len(), 1);
    assert_eq!(p.shell.as_deref(), Some("/bin/zsh"));
    assert_eq!(p.resources.cpus, Some(1.5));
    assert_eq!(p.resources.memory, Some(2 << 30));
    assert_eq!(p.mode, Some(SessionMode::Named));
    assert_eq!(p.files, [ROOT]);
    assert!(p.host_binds().is_empty());
}

#[test]
fn podfile_empty_sections_and_minimal_file() {
    let p = one("base: debian:12\npackages:\nenv:\nservices:\n");
    assert!(p.packages.is_empty() && p.env.is_empty() && p.services.is_empty());
    assert_eq!(p.mode, None);
    assert_eq!(p.resources, Resources::default());
}

#[test]
fn podfile_syntax_error_has_line() {
    let e = one_err("base: ubuntu:24.04\npackages: [git\nenv: {}\n");
    assert_eq!(e.file, ROOT);
    assert!(e.line.is_some(), "{e}");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
}

#[test]
fn podfile_duplicate_key_points_at_the_repeat() {
    let e = one_err("base: a\npackages: [git]\nbase: b\n");
    assert_err(&e, ROOT, Some(3), None, "duplicate key \"base\"");
    let e = one_err("base: a\nenv:\n  A: 1\n  A: 2\n");
    assert_err(&e, ROOT, Some(4), None, "duplicate key \"A\"");
}

#[test]
fn podfile_not_a_mapping() {
    let e = one_err("- base\n- ubuntu\n");
    assert_err(&e, ROOT, Some(1), None, "a Podfile is a YAML mapping");
}

#[test]
fn podfile_unknown_key_with_suggestion() {
    let e = one_err("base: ubuntu:24.04\npakages: [git]\n");
    assert_err(&e, ROOT, Some(2), Some("pakages"), "did you mean packages?");
    assert_eq!(e.column, Some(1));
    assert_eq!(
        e.to_string(),
        format!("podfile.yaml: line 2: pakages: {}", e.message)
    );
}

#[test]
fn podfile_local_mode_keys_are_named_as_such() {
    let e = one_err("base: ubuntu:24.04\nworkspace: /src\n");
    assert_err(&e, ROOT, Some(2), Some("workspace"), "local dev mode");
}

#[test]
fn podfile_needs_base_or_extends() {
    let e = one_err("packages: [git]\n");
    assert_err(&e, ROOT, None, Some("base"), "neither base nor extends");
    let e = one_err("");
    assert_err(&e, ROOT, None, Some("base"), "neither base nor extends");
}

#[test]
fn podfile_base_must_be_an_image_reference() {
    let e = one_err("packages: [git]\nbase: \"ubuntu:24.04\\nRUN touch /x\"\n");
    assert_err(&e, ROOT, Some(2), Some("base"), "invalid image");
    let e = one_err("base: \"--privileged\"\n");
    assert_err(&e, ROOT, Some(1), Some("base"), "invalid image");
    let e = one_err("base:\n");
    assert_err(&e, ROOT, Some(1), Some("base"), "empty image");
    let e = one_err("base: [a]\n");
    assert_err(
        &e,
        ROOT,
        Some(1),
        Some("base"),
        "expected an image reference",
    );
    let p = one("base: registry.example.com:5000/team/dev@sha256:abc\n");
    assert_eq!(p.base, "registry.example.com:5000/team/dev@sha256:abc");
}

#[test]
fn podfile_bad_apt_name() {
    let e = one_err("base: debian:12\npackages:\n  - git\n  - Bad_Name\n");
    assert_err(
        &e,
        ROOT,
        Some(4),
        Some("packages[1]"),
        "invalid package name \"Bad_Name\"",
    );
    let e = one_err("base: debian:12\npackages: [\"git; rm -rf /\"]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[0]"),
        "invalid package name",
    );
    let e = one_err("base: debian:12\npackages: [{a: b}]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[0]"),
        "expected a package name",
    );
    let e = one_err("base: debian:12\npackages: git\n");
    assert_err(&e, ROOT, Some(2), Some("packages"), "expected a list");
}

#[test]
fn podfile_versions_only_where_a_recipe_exists() {
    let e = one_err("base: debian:12\npackages: [curl@7.88]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[0]"),
        "no recipe for curl@7.88",
    );
    assert!(e.message.contains("node@18|20|22"), "{e}");
    assert!(e.message.contains("python@3.11|3.12|3.13"), "{e}");
    assert!(e.message.contains("go@1.22|1.23|1.24"), "{e}");
    let e = one_err("base: debian:12\npackages: [node@16]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[0]"),
        "versions 18, 20, 22 only",
    );
    let e = one_err("base: debian:12\npackages: [go@1.22.05]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[0]"),
        "versions 1.22, 1.23, 1.24",
    );
    let e = one_err("base: debian:12\npackages: [python@3.99]\n");
    assert_err(&e, ROOT, Some(2), Some("packages[0]"), "3.11, 3.12, 3.13");
    // nodejs is another name of the node recipe.
    let p = one("base: debian:12\npackages: [nodejs@20, python@3.12, go@1.23]\n");
    assert_eq!(names(&p), ["node@20", "python@3.12", "go@1.23"]);
}

#[test]
fn podfile_package_repeats_in_one_file() {
    let e = one_err("base: debian:12\npackages: [git, curl, git]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[2]"),
        "conflicts with an earlier entry",
    );
    let e = one_err("base: debian:12\npackages:\n  - node@18\n  - node@20\n");
    assert_err(&e, ROOT, Some(4), Some("packages[1]"), "another version");
}

#[test]
fn podfile_removal_needs_extends() {
    let e = one_err("base: debian:12\npackages: [git, \"!vim\"]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("packages[1]"),
        "this file extends nothing",
    );
    // An unquoted !vim is a YAML tag; it is read as the removal that was meant.
    let e = one_err("base: debian:12\npackages:\n  - git\n  - !vim\n");
    assert_err(
        &e,
        ROOT,
        Some(4),
        Some("packages[1]"),
        "\"!vim\" removes an inherited package",
    );
    let e = one_err("base: debian:12\nservices:\n  - name: \"!db\"\n");
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("services[0].name"),
        "this file extends nothing",
    );
    let e = one_err("base: debian:12\nenv:\n  A: \"\"\n");
    assert_err(&e, ROOT, Some(3), Some("env.A"), "extends nothing");
}

#[test]
fn podfile_bang_rules() {
    let e = one_err("base!: debian:12\n");
    assert_err(&e, ROOT, Some(1), Some("base!"), "only packages!, env!");
    let e = one_err("extends: ./b.yaml\nresources!: {cpus: 1}\n");
    assert_err(&e, ROOT, Some(2), Some("resources!"), "only packages!");
    let e = one_err("extends: ./b.yaml\npackages: [git]\npackages!: [vim]\n");
    assert_err(&e, ROOT, Some(3), Some("packages!"), "not both");
    let e = one_err("base: debian:12\nenv!: {A: b}\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("env!"),
        "this file extends nothing: write env:",
    );
}

#[test]
fn podfile_env_validation() {
    let e = one_err("base: debian:12\nenv:\n  GOOD: 1\n  1BAD: x\n");
    assert_err(
        &e,
        ROOT,
        Some(4),
        Some("env.1BAD"),
        "invalid environment variable name",
    );
    assert_eq!(e.column, Some(3));
    let e = one_err("base: debian:12\nenv:\n  \"A-B\": x\n");
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("env.A-B"),
        "invalid environment variable name",
    );
    let e = one_err("base: debian:12\nenv:\n  HOME_DIR: /home/${USER}\n");
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("env.HOME_DIR"),
        "unknown placeholder ${USER}",
    );
    let e = one_err("base: debian:12\nenv:\n  A: ${PODSPAWN_USER\n");
    assert_err(&e, ROOT, Some(3), Some("env.A"), "unclosed");
    let e = one_err("base: debian:12\nenv:\n  A: [1, 2]\n");
    assert_err(&e, ROOT, Some(3), Some("env.A"), "expected a value");
    let e = one_err("base: debian:12\nenv: [A]\n");
    assert_err(&e, ROOT, Some(2), Some("env"), "expected a mapping");
}

#[test]
fn podfile_env_numbers_kept_as_written() {
    let p = one(
        "base: debian:12\nenv:\n  V: 3.10\n  Z: 007\n  H: 0x1F\n  B: true\n  \
         L: 1_000\nservices:\n  db: {image: a, env: {PORT: 05432}}\n",
    );
    assert_eq!(p.env["V"], "3.10");
    assert_eq!(p.env["Z"], "007");
    assert_eq!(p.env["H"], "0x1F");
    assert_eq!(p.env["B"], "true");
    assert_eq!(p.env["L"], "1_000");
    assert_eq!(p.services[0].env["PORT"], "05432");
}

#[test]
fn podfile_yaml_oddities() {
    // Anchors and aliases work; a tag in front of a mapping is refused with a hint.
    let p = one("base: &b debian:12\nenv: {IMG: *b}\n");
    assert_eq!(p.env["IMG"], "debian:12");
    let e = one_err("base: debian:12\nenv: !custom {A: b}\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("YAML tags"), "{e}");
    let e = one_err("base: debian:12\n? [a, b]\n: c\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("a key must be a plain name"), "{e}");
    let e = one_err("base: debian:12\nservices:\n  db: {image: a}\n  db: {image: b}\n");
    assert_err(&e, ROOT, Some(4), None, "duplicate key \"db\"");
    let e = one_err("base: debian:12\nshell: /bin/ba sh\n");
    assert_err(&e, ROOT, Some(2), Some("shell"), "contains a space");
    let e = one_err("base: debian:12\nresources: {cpus: 2000}\n");
    assert_err(&e, ROOT, Some(2), Some("resources.cpus"), "at most 1024");
    assert_eq!(one("base: a\non_start: 42\n").on_start, ["42"]);
}

#[test]
fn podfile_env_expansion() {
    let p = one(
        "base: debian:12\nenv:\n  DB: ${PODSPAWN_USER}_${PODSPAWN_PROJECT}\n  \
         URL: postgres://${PODSPAWN_USER}@postgres/${PODSPAWN_USER}\n  PLAIN: $HOME\n\
         services:\n  db:\n    image: postgres:16\n    env: {POSTGRES_USER: \"${PODSPAWN_USER}\"}\n",
    );
    let env = p.env_for("alice", "backend");
    assert_eq!(env["DB"], "alice_backend");
    assert_eq!(env["URL"], "postgres://alice@postgres/alice");
    assert_eq!(env["PLAIN"], "$HOME");
    assert_eq!(p.env["DB"], "${PODSPAWN_USER}_${PODSPAWN_PROJECT}");
    assert_eq!(p.services[0].env_for("bob", "x")["POSTGRES_USER"], "bob");
    assert_eq!(expand("${PODSPAWN_PROJECT}", "u", "p"), "p");
}

#[test]
fn podfile_services_list_and_map_forms() {
    let list = one(
        "base: debian:12\nservices:\n  - name: postgres\n    image: postgres:16\n  \
         - name: redis\n    image: redis:7\n",
    );
    let map = one(
        "base: debian:12\nservices:\n  postgres:\n    image: postgres:16\n  \
         redis: {image: redis:7}\n",
    );
    assert_eq!(list.services, map.services);
    assert_eq!(list.services[1].name, "redis");
}

#[test]
fn podfile_service_validation() {
    let e = one_err("base: debian:12\nservices:\n  - image: postgres:16\n");
    assert_err(&e, ROOT, Some(3), Some("services[0]"), "has no name");
    let e = one_err("base: debian:12\nservices:\n  - name: db\n    ports: [1]\n");
    assert_err(&e, ROOT, Some(3), Some("services[0].name"), "has no image");
    let e = one_err("base: debian:12\nservices:\n  db: {ports: [1]}\n");
    assert_err(&e, ROOT, Some(3), Some("services.db"), "has no image");
    let e =
        one_err("base: debian:12\nservices:\n  - {name: db, image: a}\n  - {name: db, image: b}\n");
    assert_err(&e, ROOT, Some(4), Some("services[1].name"), "appears twice");
    let e = one_err("base: debian:12\nservices:\n  - {name: Db_1, image: a}\n");
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("services[0].name"),
        "invalid service name",
    );
    let e = one_err("base: debian:12\nservices:\n  - name: db\n    image: a\n    imgae: b\n");
    assert_err(
        &e,
        ROOT,
        Some(5),
        Some("services[0].imgae"),
        "did you mean image?",
    );
    let e = one_err("base: debian:12\nservices:\n  - name: db\n    image: a\n    ports: [0]\n");
    assert_err(
        &e,
        ROOT,
        Some(5),
        Some("services[0].ports[0]"),
        "from 1 to 65535",
    );
    let e = one_err("base: debian:12\nservices:\n  - name: db\n    image: \"a b\"\n");
    assert_err(
        &e,
        ROOT,
        Some(4),
        Some("services[0].image"),
        "invalid image",
    );
    let e = one_err("base: debian:12\nservices: [db]\n");
    assert_err(&e, ROOT, Some(2), Some("services[0]"), "expected a service");
}

#[test]
fn podfile_service_volumes() {
    let p = one(
        "base: debian:12\nservices:\n  - name: db\n    image: postgres:16\n    volumes:\n      \
         - pgdata:/var/lib/postgresql/data\n      - /srv/seed:/seed:ro\n",
    );
    let s = &p.services[0];
    assert_eq!(s.volumes[0].source, VolumeSource::Named("pgdata".into()));
    assert_eq!(
        s.volumes[1],
        Volume {
            source: VolumeSource::HostBind("/srv/seed".into()),
            target: "/seed".into(),
            read_only: true
        }
    );
    assert_eq!(s.host_binds().count(), 1);
    assert_eq!(p.host_binds(), [("db", "/srv/seed")]);

    let bad = |v: &str| {
        one_err(&format!(
            "base: debian:12\nservices:\n  - name: db\n    image: a\n    volumes: [\"{v}\"]\n"
        ))
    };
    for (v, needle) in [
        ("./data:/data", "relative host paths are not supported"),
        ("data", "write name:/path"),
        ("data:relative", "must be an absolute path"),
        ("data:/", "must be an absolute path other than /"),
        ("/a/../etc:/x", "without \"..\""),
        ("data:/x:rx", "unknown option \"rx\""),
    ] {
        let e = bad(v);
        assert_eq!(e.key.as_deref(), Some("services[0].volumes[0]"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains(needle), "{v}: {e}");
    }
    let e = one_err(
        "base: debian:12\nservices:\n  - name: db\n    image: a\n    volumes: [\"a:/x\", \"b:/x\"]\n",
    );
    assert_err(
        &e,
        ROOT,
        Some(5),
        Some("services[0].volumes[1]"),
        "two volumes",
    );
}

#[test]
fn podfile_commands() {
    let p = one("base: debian:12\non_create: |\n  make deps\n  make db\non_start: []\n");
    assert_eq!(p.on_create, ["make deps\nmake db\n"]);
    let e = one_err("base: debian:12\non_start: [ls, \"  \"]\n");
    assert_err(&e, ROOT, Some(2), Some("on_start[1]"), "empty command");
    let e = one_err("base: debian:12\nextra_commands: {a: b}\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("extra_commands"),
        "expected a list of commands",
    );
}

#[test]
fn podfile_scalar_validation() {
    let e = one_err("base: debian:12\nshell: bash\n");
    assert_err(&e, ROOT, Some(2), Some("shell"), "is not absolute");
    let e = one_err("base: debian:12\nmode: forever\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("mode"),
        "invalid session mode \"forever\"",
    );
    let e = one_err("base: debian:12\nresources:\n  cpus: -1\n");
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("resources.cpus"),
        "cannot be negative",
    );
    let e = one_err("base: debian:12\nresources:\n  memory: 2x\n");
    assert_err(&e, ROOT, Some(3), Some("resources.memory"), "unknown unit");
    let e = one_err("base: debian:12\nresources:\n  cpu: 2\n");
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("resources.cpu"),
        "did you mean cpus?",
    );
    let e = one_err("base: debian:12\nresources: 2\n");
    assert_err(&e, ROOT, Some(2), Some("resources"), "expected a mapping");
    let p = one("base: debian:12\nmode: ttl\nresources: {cpus: \"0.5\", memory: 512m}\n");
    assert_eq!(p.mode, Some(SessionMode::Ttl));
    assert_eq!(p.resources.cpus, Some(0.5));
    assert_eq!(p.resources.memory, Some(512 << 20));
}

#[test]
fn podfile_extends_must_be_a_local_yaml_path() {
    for (v, needle) in [
        ("github.com/org/repo", "nothing is fetched"),
        ("https://example.com/p.yaml", "nothing is fetched"),
        ("/etc/podspawn/base.yaml", "is absolute"),
        ("ubuntu-dev", "named bases and templates are not supported"),
        ("\"\"", "empty extends"),
    ] {
        let e = one_err(&format!("extends: {v}\n"));
        assert_err(&e, ROOT, Some(1), Some("extends"), needle);
    }
}

// ---------------------------------------------------------------------------------------------
// extends: the chain.

#[test]
fn podfile_extends_path_escape_refused() {
    let e = err(&[(ROOT, "extends: ../outside.yaml\n")]);
    assert_err(
        &e,
        ROOT,
        Some(1),
        Some("extends"),
        "leads out of the repository",
    );
    let e = err(&[
        (ROOT, "extends: sub/../../x.yaml\n"),
        ("x.yaml", "base: a\n"),
    ]);
    assert_err(
        &e,
        ROOT,
        Some(1),
        Some("extends"),
        "leads out of the repository",
    );
    // Inside the repository, `..` is fine.
    let p = resolve(
        &repo(&[
            (".podspawn/podfile.yaml", "extends: ../common/base.yaml\n"),
            ("common/base.yaml", "base: debian:12\n"),
        ]),
        ".podspawn/podfile.yaml",
    )
    .unwrap();
    assert_eq!(p.files, [".podspawn/podfile.yaml", "common/base.yaml"]);
    assert!(resolve(&repo(&[]), "../podfile.yaml").is_err());
    assert!(resolve(&repo(&[]), "/podfile.yaml").is_err());
}

#[test]
fn podfile_extends_missing_file() {
    let e = err(&[(ROOT, "base: a\nextends: ./nope.yaml\n")]);
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("extends"),
        "there is no file nope.yaml",
    );
    assert_eq!(e.kind, ErrorKind::Invalid);
}

#[test]
fn podfile_extends_cycles_refused() {
    let e = err(&[
        (ROOT, "extends: a.yaml\n"),
        ("a.yaml", "extends: b.yaml\n"),
        ("b.yaml", "base: x\nextends: ./a.yaml\n"),
    ]);
    assert_err(&e, "b.yaml", Some(2), Some("extends"), "forms a cycle");
    assert!(
        e.message
            .contains("podfile.yaml → a.yaml → b.yaml → a.yaml"),
        "{e}"
    );
    let e = err(&[(ROOT, "extends: ./podfile.yaml\n")]);
    assert_err(&e, ROOT, Some(1), Some("extends"), "forms a cycle");
}

fn chain(files: usize) -> Vec<(String, String)> {
    (0..files)
        .map(|i| {
            let name = if i == 0 {
                ROOT.to_string()
            } else {
                format!("l{i}.yaml")
            };
            let text = if i + 1 == files {
                format!("base: debian:12\npackages: [p{i}x]\n")
            } else {
                format!("extends: l{}.yaml\npackages: [p{i}x]\n", i + 1)
            };
            (name, text)
        })
        .collect()
}

#[test]
fn podfile_extends_depth_limit() {
    let c = chain(MAX_EXTENDS + 1);
    let refs: Vec<(&str, &str)> = c.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = ok(&refs);
    assert_eq!(p.files.len(), 11);
    // Deepest parent first.
    assert_eq!(p.packages.first().unwrap().to_string(), "p10x");
    assert_eq!(p.packages.last().unwrap().to_string(), "p0x");

    let c = chain(MAX_EXTENDS + 2);
    let refs: Vec<(&str, &str)> = c.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let e = err(&refs);
    assert_err(
        &e,
        "l10.yaml",
        Some(1),
        Some("extends"),
        "at most 10 extends links",
    );
}

#[test]
fn podfile_error_in_a_parent_names_the_parent() {
    let e = err(&[
        (ROOT, "extends: base/dev.yaml\npackages: [git]\n"),
        (
            "base/dev.yaml",
            "base: debian:12\npackages:\n  - ok\n  - NOPE\n",
        ),
    ]);
    assert_err(
        &e,
        "base/dev.yaml",
        Some(4),
        Some("packages[1]"),
        "invalid package name",
    );
    assert_eq!(
        e.to_string(),
        format!("base/dev.yaml: line 4: packages[1]: {}", e.message)
    );
}

#[test]
fn podfile_read_errors_are_read_kind() {
    struct Broken;
    impl RepoFiles for Broken {
        fn read(&self, path: &str) -> Result<String, ReadError> {
            if path == ROOT {
                Ok("extends: b.yaml\n".into())
            } else {
                Err(ReadError::Other("permission denied".into()))
            }
        }
    }
    let e = resolve(&Broken, ROOT).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Read);
    assert_eq!((e.file.as_str(), e.line), (ROOT, Some(1)));
    assert!(e.message.contains("cannot read b.yaml"), "{e}");
    let e = load(&Broken).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Read);
    assert_eq!(e.file, ".podspawn/podfile.yaml");
}

#[test]
fn podfile_load_candidates_in_order() {
    assert_eq!(load(&repo(&[("README", "x")])).unwrap(), None);
    let p = load(&repo(&[(ROOT, "base: a\n")])).unwrap().unwrap();
    assert_eq!(p.base, "a");
    let p = load(&repo(&[
        (ROOT, "base: a\n"),
        (".podspawn/podfile.yaml", "base: b\n"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(p.base, "b");
}

// ---------------------------------------------------------------------------------------------
// Merge rules.

#[test]
fn podfile_merge_scalars_child_wins() {
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\nshell: /bin/zsh\nresources: {memory: 4g}\n",
        ),
        (
            "base.yaml",
            "base: debian:12\nshell: /bin/bash\nmode: ttl\nresources: {cpus: 2, memory: 1g}\n",
        ),
    ]);
    assert_eq!(p.base, "debian:12");
    assert_eq!(p.shell.as_deref(), Some("/bin/zsh"));
    assert_eq!(p.mode, Some(SessionMode::Ttl));
    assert_eq!(p.resources.cpus, Some(2.0));
    assert_eq!(p.resources.memory, Some(4 << 30));
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\nbase: ubuntu:24.04\nmode: named\n",
        ),
        ("base.yaml", "base: debian:12\nmode: ttl\n"),
    ]);
    assert_eq!(p.base, "ubuntu:24.04");
    assert_eq!(p.mode, Some(SessionMode::Named));
}

#[test]
fn podfile_merge_packages_parent_then_child_deduplicated() {
    let p = ok(&[
        (ROOT, "extends: base.yaml\npackages: [vim, git, jq]\n"),
        ("base.yaml", "base: debian:12\npackages: [git, curl]\n"),
    ]);
    assert_eq!(names(&p), ["git", "curl", "vim", "jq"]);
}

#[test]
fn podfile_merge_packages_removal() {
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\npackages: [\"!curl\", \"!node\", htop]\n",
        ),
        (
            "base.yaml",
            "base: debian:12\npackages: [git, curl, node@20]\n",
        ),
    ]);
    assert_eq!(names(&p), ["git", "htop"]);
    let p = ok(&[
        (ROOT, "extends: base.yaml\npackages: [\"!node@20\"]\n"),
        ("base.yaml", "base: debian:12\npackages: [node@20]\n"),
    ]);
    assert!(p.packages.is_empty());
    let e = err(&[
        (
            ROOT,
            "extends: base.yaml\npackages:\n  - jq\n  - \"!crul\"\n",
        ),
        ("base.yaml", "base: debian:12\npackages: [git, curl]\n"),
    ]);
    assert_err(
        &e,
        ROOT,
        Some(4),
        Some("packages[1]"),
        "\"!crul\" removes nothing",
    );
    assert!(e.message.contains("inherited packages: git, curl"), "{e}");
}

#[test]
fn podfile_merge_recipe_version_replaced_in_place() {
    let p = ok(&[
        (ROOT, "extends: base.yaml\npackages: [node@22]\n"),
        (
            "base.yaml",
            "base: debian:12\npackages: [git, node@20, jq]\n",
        ),
    ]);
    assert_eq!(names(&p), ["git", "node@22", "jq"]);
}

#[test]
fn podfile_merge_packages_bang_replaces() {
    let p = ok(&[
        (ROOT, "extends: base.yaml\npackages!: [vim]\n"),
        ("base.yaml", "base: debian:12\npackages: [git, curl]\n"),
    ]);
    assert_eq!(names(&p), ["vim"]);
    let e = err(&[
        (ROOT, "extends: base.yaml\npackages!: [vim, \"!git\"]\n"),
        ("base.yaml", "base: debian:12\npackages: [git]\n"),
    ]);
    assert_err(&e, ROOT, Some(2), Some("packages![1]"), "nothing to remove");
}

#[test]
fn podfile_merge_env() {
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\nenv:\n  B: child\n  C: \"\"\n  D: new\n",
        ),
        (
            "base.yaml",
            "base: debian:12\nenv: {A: a, B: parent, C: gone}\n",
        ),
    ]);
    assert_eq!(
        p.env.into_iter().collect::<Vec<_>>(),
        [
            ("A".to_string(), "a".to_string()),
            ("B".into(), "child".into()),
            ("D".into(), "new".into())
        ]
    );
    let p = ok(&[
        (ROOT, "extends: base.yaml\nenv!: {Z: z}\n"),
        ("base.yaml", "base: debian:12\nenv: {A: a}\n"),
    ]);
    assert_eq!(p.env.keys().collect::<Vec<_>>(), ["Z"]);
}

#[test]
fn podfile_merge_services() {
    let base = "base: debian:12\nservices:\n  - {name: db, image: postgres:15}\n  \
                - {name: cache, image: redis:7}\n  - {name: mail, image: mailhog:1}\n";
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\nservices:\n  - {name: db, image: postgres:16}\n  \
             - {name: \"!cache\"}\n  - {name: search, image: opensearch:2}\n",
        ),
        ("base.yaml", base),
    ]);
    let got: Vec<(&str, &str)> = p
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.image.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("db", "postgres:16"),
            ("mail", "mailhog:1"),
            ("search", "opensearch:2")
        ]
    );
    // A same-name child replaces the whole entry (no field merge).
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\nservices:\n  db: {image: postgres:16}\n",
        ),
        (
            "base.yaml",
            "base: debian:12\nservices:\n  db: {image: postgres:15, ports: [5432]}\n",
        ),
    ]);
    assert!(p.services[0].ports.is_empty());
    // Map form removal.
    let p = ok(&[
        (ROOT, "extends: base.yaml\nservices:\n  \"!cache\":\n"),
        ("base.yaml", base),
    ]);
    assert_eq!(p.services.len(), 2);
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\nservices!: [{name: x, image: y}]\n",
        ),
        ("base.yaml", base),
    ]);
    assert_eq!(p.services.len(), 1);
    let e = err(&[
        (
            ROOT,
            "extends: base.yaml\nservices:\n  - name: \"!nosuch\"\n",
        ),
        ("base.yaml", base),
    ]);
    assert_err(
        &e,
        ROOT,
        Some(3),
        Some("services[0].name"),
        "inherited services: db, cache, mail",
    );
    let e = err(&[
        (
            ROOT,
            "extends: base.yaml\nservices:\n  - name: \"!db\"\n    image: x\n",
        ),
        ("base.yaml", base),
    ]);
    assert_err(
        &e,
        ROOT,
        Some(4),
        Some("services[0].image"),
        "takes no other settings",
    );
}

#[test]
fn podfile_merge_commands_appended_and_bang_replaces() {
    let p = ok(&[
        (
            ROOT,
            "extends: base.yaml\non_create: [make db, make deps]\non_start!: [echo child]\n\
             extra_commands: [c2]\n",
        ),
        (
            "base.yaml",
            "base: debian:12\non_create: make deps\non_start: [echo parent]\nextra_commands: [c1]\n",
        ),
    ]);
    assert_eq!(p.on_create, ["make deps", "make db", "make deps"]);
    assert_eq!(p.on_start, ["echo child"]);
    assert_eq!(p.extra_commands, ["c1", "c2"]);
}

#[test]
fn podfile_merge_three_levels() {
    let p = ok(&[
        (
            ROOT,
            "extends: team.yaml\npackages: [jq]\nenv: {LEVEL: project}\n",
        ),
        (
            "team.yaml",
            "extends: org.yaml\npackages: [\"!wget\", vim]\nenv: {LEVEL: team, T: 1}\n",
        ),
        (
            "org.yaml",
            "base: debian:12\npackages: [git, wget]\nenv: {LEVEL: org, O: 1}\n",
        ),
    ]);
    assert_eq!(names(&p), ["git", "vim", "jq"]);
    assert_eq!(p.env["LEVEL"], "project");
    assert_eq!((p.env["T"].as_str(), p.env["O"].as_str()), ("1", "1"));
    assert_eq!(p.files, [ROOT, "team.yaml", "org.yaml"]);
}

// ---------------------------------------------------------------------------------------------
// The image tag.

const BASE_ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn podfile_sha256_test_vectors() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256_hex(&vec![b'a'; 1_000_000]),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
    // Padding boundaries.
    for (n, want) in [
        (
            55,
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
        ),
        (
            56,
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
        ),
        (
            63,
            "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
        ),
        (
            64,
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
        ),
        (
            119,
            "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb",
        ),
        (
            120,
            "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c",
        ),
    ] {
        assert_eq!(sha256_hex(&vec![b'a'; n]), want, "length {n}");
    }
}

const TAGGED: &str = "base: debian:12\n\
    packages: [git, node@20]\n\
    env: {A: \"1\", B: two}\n\
    services:\n  - {name: db, image: postgres:16, volumes: [\"pg:/data\"]}\n\
    on_create: [make]\n";

#[test]
fn podfile_tag_format() {
    let tag = one(TAGGED).image_tag("backend", BASE_ID);
    let (repo_name, hash) = tag.split_once(':').unwrap();
    assert_eq!(repo_name, "podspawn-project-backend");
    assert_eq!(hash.len(), 12);
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(image_repository("my_app-"), "podspawn-project-my-app");
}

#[test]
fn podfile_tag_stable_across_order_comments_and_files() {
    let a = one(TAGGED).image_tag("backend", BASE_ID);
    assert_eq!(a, one(TAGGED).image_tag("backend", BASE_ID));
    let reordered = one(
        "# comment\non_create: make   # trailing\nservices:\n  db:\n    volumes: [\"pg:/data\"]\n    \
         image: postgres:16\nenv:\n  B: two\n  A: 1\npackages:\n  - node@20\n  - git\n\
         base: 'debian:12'\n",
    );
    assert_eq!(a, reordered.image_tag("backend", BASE_ID));
    let split = ok(&[
        (
            ROOT,
            "extends: base.yaml\npackages: [node@20]\nenv: {B: two}\non_create: make\n",
        ),
        (
            "base.yaml",
            "base: debian:12\npackages: [git]\nenv: {A: \"1\"}\n\
             services: [{name: db, image: postgres:16, volumes: [\"pg:/data\"]}]\n",
        ),
    ]);
    assert_eq!(a, split.image_tag("backend", BASE_ID));
}

#[test]
fn podfile_tag_changes_with_content_base_id_and_project() {
    let p = one(TAGGED);
    let a = p.image_tag("backend", BASE_ID);
    assert_ne!(a, p.image_tag("backend", "sha256:2222"));
    assert_ne!(a, p.image_tag("frontend", BASE_ID));
    for changed in [
        TAGGED.replace("git, ", "git, jq, "),
        TAGGED.replace("node@20", "node@22"),
        TAGGED.replace("two", "three"),
        TAGGED.replace("postgres:16", "postgres:17"),
        TAGGED.replace("pg:/data", "pg:/data:ro"),
        TAGGED.replace("[make]", "[make, make test]"),
        format!("{TAGGED}mode: ttl\n"),
        format!("{TAGGED}resources: {{cpus: 3}}\n"),
        format!("{TAGGED}shell: /bin/zsh\n"),
        format!("{TAGGED}extra_commands: [\"true\"]\n"),
    ] {
        assert_ne!(a, one(&changed).image_tag("backend", BASE_ID), "{changed}");
    }
    // Order of commands matters, so it changes the tag.
    let x = one("base: a\non_start: [one, two]\n").image_tag("p", BASE_ID);
    let y = one("base: a\non_start: [two, one]\n").image_tag("p", BASE_ID);
    assert_ne!(x, y);
}

#[test]
fn podfile_tag_canonical_form_is_unambiguous() {
    // Length prefixes: moving text between fields changes the hash.
    let x = one("base: a\nenv: {AB: c}\n").content_hash("p", BASE_ID);
    let y = one("base: a\nenv: {A: bc}\n").content_hash("p", BASE_ID);
    assert_ne!(x, y);
    let x = one("base: a\non_start: [\"a;b\"]\n").content_hash("p", BASE_ID);
    let y = one("base: a\non_start: [a, b]\n").content_hash("p", BASE_ID);
    assert_ne!(x, y);
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile.

/// Every line is one of the instructions podspawn writes (or their continuation): no value
/// from the Podfile started an instruction of its own.
fn assert_only_our_instructions(df: &str) {
    for line in df.lines() {
        assert!(
            line.starts_with("# Generated by podspawn")
                || line.starts_with("FROM ")
                || line.starts_with("RUN export DEBIAN_FRONTEND=noninteractive \\")
                || line.starts_with("    && ")
                || line.starts_with("RUN [\"/bin/sh\", \"-c\", ")
                || line.starts_with("ENV "),
            "unexpected line {line:?} in\n{df}"
        );
    }
}

#[test]
fn podfile_dockerfile_layout() {
    let p = one(
        "base: ubuntu:24.04\npackages: [vim, git, go@1.22]\nenv: {EDITOR: vim, U: \"${PODSPAWN_USER}\"}\n\
         extra_commands: [make install]\n",
    );
    let df = p.dockerfile();
    assert_only_our_instructions(&df);
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(lines[1], "FROM ubuntu:24.04");
    assert!(
        df.contains(
            "apt-get install -y --no-install-recommends ca-certificates curl git vim \\\n    \
         && rm -rf /var/lib/apt/lists/*\n"
        ),
        "{df}"
    );
    assert!(df.contains("go1.22.0.linux-$arch.tar.gz"), "{df}");
    assert!(df.contains("ENV EDITOR=\"vim\"\n"), "{df}");
    // Placeholders are expanded per session, not baked into the image.
    assert!(!df.contains("PODSPAWN_USER"), "{df}");
    // ENV before extra_commands, which come last.
    let env_at = df.find("ENV EDITOR").unwrap();
    let extra_at = df.find("make install").unwrap();
    assert!(env_at < extra_at);
    assert!(lines.last().unwrap().contains("make install"));
    assert!(!df.contains("sudo"));
}

#[test]
fn podfile_dockerfile_without_packages_is_just_from() {
    let df = one("base: debian:12\n").dockerfile();
    assert_eq!(df.lines().count(), 2);
    assert!(df.ends_with("FROM debian:12\n"));
}

#[test]
fn podfile_dockerfile_recipes() {
    let df = one("base: ubuntu:24.04\npackages: [node@20, python@3.12]\n").dockerfile();
    assert_only_our_instructions(&df);
    assert!(df.contains("setup_20.x"), "{df}");
    assert!(df.contains("python3.12 python3.12-venv"), "{df}");
    assert!(df.contains("software-properties-common"), "{df}");
    for r in recipes::RECIPES {
        for v in r.versions {
            assert!(recipes::script(r.name, v).is_some(), "{}@{v}", r.name);
        }
    }
    assert!(recipes::script("node", "16").is_none());
}

#[test]
fn podfile_dockerfile_env_quoting() {
    let p = one(
        "base: debian:12\nenv:\n  Q: 'say \"hi\" \\ $HOME $$x'\n  NL: \"a\\nRUN touch /pwned\"\n  \
         CR: \"a\\rENV X=1\"\n  PLAIN: ok\n",
    );
    // The value itself is kept as written for the container's environment.
    assert_eq!(p.env["NL"], "a\nRUN touch /pwned");
    let df = p.dockerfile();
    assert_only_our_instructions(&df);
    assert!(
        df.contains("ENV Q=\"say \\\"hi\\\" \\\\ \\$HOME \\$\\$x\"\n"),
        "{df}"
    );
    assert!(!df.contains("pwned"), "{df}");
    assert!(!df.contains("ENV X=1"), "{df}");
    assert!(!df.contains("ENV NL") && !df.contains("ENV CR"), "{df}");
    assert!(df.contains("ENV PLAIN=\"ok\"\n"));
}

#[test]
fn podfile_dockerfile_commands_cannot_inject() {
    let cmd = "echo \"hi\" \\\nRUN touch /pwned\r\nUSER root \\";
    let yaml = format!(
        "base: debian:12\nextra_commands: [{}]\n",
        serde_json::to_string(cmd).unwrap()
    );
    let p = one(&yaml);
    assert_eq!(p.extra_commands, [cmd]);
    let df = p.dockerfile();
    assert_only_our_instructions(&df);
    let run = df.lines().last().unwrap();
    let json: Vec<String> = serde_json::from_str(run.strip_prefix("RUN ").unwrap()).unwrap();
    assert_eq!(json, ["/bin/sh", "-c", cmd]);
    assert_eq!(df.lines().filter(|l| l.starts_with("RUN")).count(), 1);
}

#[test]
fn podfile_locate_flow_and_block_styles() {
    let e = one_err("base: debian:12\nservices: [{name: db, image: a, ports: [1, 99999]}]\n");
    assert_err(
        &e,
        ROOT,
        Some(2),
        Some("services[0].ports[1]"),
        "from 1 to 65535",
    );
    assert_eq!(e.column, Some(44));
    let e = one_err("base: debian:12\nservices:\n  - name: db\n    image: a\n    ports:\n      - 1\n      - x\n");
    assert_err(
        &e,
        ROOT,
        Some(7),
        Some("services[0].ports[1]"),
        "invalid port",
    );
    assert_eq!(e.column, Some(9));
}
