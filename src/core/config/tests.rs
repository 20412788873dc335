//! Tests of the configuration: every key, merge rule and error message.
use super::*;
use crate::test_support::TempDir;

const FILE: &str = "/etc/podspawn/config.yaml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's line, key and that the message contains every one of `needles`.
#[track_caller]
fn check(text: &str, line: usize, key: Option<&str>, needles: &[&str]) -> ConfigError {
    let e = parse_err(text);
    assert_eq!(e.path, Path::new(FILE), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key.as_deref(), key, "{e}");
    for n in needles {
        assert!(e.message.contains(n), "{e:?} should mention {n:?}");
    }
    e
}

// ---- defaults and merging ----

#[test]
fn defaults_have_documented_values() {
    let c = Config::default();
    assert_eq!(c.path, Path::new(DEFAULT_CONFIG_PATH));
    assert_eq!(c.auth.key_dir, Path::new("/etc/podspawn/keys"));
    assert_eq!(c.auth.github_url, "https://github.com");
    assert_eq!(c.defaults.image, "ubuntu:24.04");
    assert_eq!(c.defaults.shell, "/bin/bash");
    assert_eq!(c.defaults.cpus, 2.0);
    assert_eq!(c.defaults.memory, 2 << 30);
    assert_eq!(c.session.grace_period, Duration::from_secs(60));
    assert_eq!(c.session.max_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(c.session.mode, SessionMode::GracePeriod);
    assert_eq!(c.session.ttl, Duration::from_secs(3600));
    assert_eq!(c.log.file, None);
    assert_eq!(c.log.audit_log, None);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.security.cap_drop, vec!["ALL"]);
    assert_eq!(c.security.cap_add.len(), 6);
    assert!(c.security.no_new_privileges);
    assert_eq!(c.security.pids_limit, 256);
    assert_eq!(c.security.runtime, None);
    assert_eq!(c.resources.max_per_user, 3);
    assert_eq!(c.broker.socket, Path::new(DEFAULT_SOCKET));
    assert_eq!(
        c.helper.path.as_deref(),
        Some(Path::new(DEFAULT_HELPER_PATH))
    );
}

#[test]
fn empty_and_comment_only_files_give_defaults() {
    for text in [
        "",
        "\n\n",
        "# nothing here\n   # indented comment\n",
        "---\n",
        "~\n",
    ] {
        let c = parse(text).unwrap();
        assert_eq!(c.path, Path::new(FILE));
        assert_eq!(
            c,
            Config {
                path: PathBuf::from(FILE),
                ..Config::default()
            },
            "{text:?}"
        );
    }
}

#[test]
fn parse_records_the_path() {
    let c = Config::parse("", Path::new("/tmp/other.yaml")).unwrap();
    assert_eq!(c.path, Path::new("/tmp/other.yaml"));
}

#[test]
fn partial_file_merges_over_defaults() {
    let c = parse(
        "session:\n  mode: ttl\n  ttl: 2h\ndefaults:\n  memory: 512m\nsecurity:\n  cap_add: [NET_RAW]\n",
    )
    .unwrap();
    assert_eq!(c.session.mode, SessionMode::Ttl);
    assert_eq!(c.session.ttl, Duration::from_secs(7200));
    // Siblings of overridden keys keep their defaults.
    assert_eq!(c.session.grace_period, Duration::from_secs(60));
    assert_eq!(c.session.max_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(c.defaults.memory, 512 << 20);
    assert_eq!(c.defaults.image, "ubuntu:24.04");
    assert_eq!(c.defaults.cpus, 2.0);
    // Lists replace, they do not append.
    assert_eq!(c.security.cap_add, vec!["NET_RAW"]);
    assert_eq!(c.security.cap_drop, vec!["ALL"]);
    // Untouched sections are the defaults.
    let d = Config::default();
    assert_eq!(c.state, d.state);
    assert_eq!(c.log, d.log);
    assert_eq!(c.auth, d.auth);
    assert_eq!(c.broker, d.broker);
}

#[test]
fn full_file_sets_every_key() {
    let c = parse(
        r#"
auth: {key_dir: /srv/keys, github_url: "https://git.example.com/"}
defaults: {image: "debian:12", shell: /bin/zsh, cpus: 0.5, memory: 1gb}
session: {grace_period: 0, max_lifetime: 1d, mode: destroy-on-disconnect, ttl: 90m}
state: {db_path: /srv/state.db, lock_dir: /srv/locks, homes_dir: /srv/homes}
log: {file: /var/log/p.log, audit_log: /var/log/a.log, level: DEBUG}
security:
  cap_drop: [ALL]
  cap_add: [CAP_CHOWN, SYS_PTRACE]
  no_new_privileges: false
  pids_limit: 0
  readonly_rootfs: true
  tmpfs: {/tmp: "size=64m,mode=1777", /run: ~}
  runtime: runsc
resources: {max_per_user: 0}
projects_file: /srv/projects.yaml
users_dir: /srv/users
broker: {socket: /run/p.sock}
helper: {path: /opt/podspawn/helper}
"#,
    )
    .unwrap();
    assert_eq!(c.auth.key_dir, Path::new("/srv/keys"));
    assert_eq!(c.auth.github_url, "https://git.example.com");
    assert_eq!(c.defaults.image, "debian:12");
    assert_eq!(c.defaults.shell, "/bin/zsh");
    assert_eq!(c.defaults.cpus, 0.5);
    assert_eq!(c.defaults.memory, 1 << 30);
    assert_eq!(c.session.grace_period, Duration::ZERO);
    assert_eq!(c.session.max_lifetime, Duration::from_secs(86_400));
    assert_eq!(c.session.mode, SessionMode::DestroyOnDisconnect);
    assert_eq!(c.session.ttl, Duration::from_secs(5400));
    assert_eq!(c.state.db_path, Path::new("/srv/state.db"));
    assert_eq!(c.state.lock_dir, Path::new("/srv/locks"));
    assert_eq!(c.state.homes_dir, Path::new("/srv/homes"));
    assert_eq!(c.log.file.as_deref(), Some(Path::new("/var/log/p.log")));
    assert_eq!(
        c.log.audit_log.as_deref(),
        Some(Path::new("/var/log/a.log"))
    );
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.security.cap_add, vec!["CHOWN", "SYS_PTRACE"]);
    assert!(!c.security.no_new_privileges);
    assert_eq!(c.security.pids_limit, 0);
    assert!(c.security.readonly_rootfs);
    assert_eq!(
        c.security.tmpfs.get("/tmp").map(String::as_str),
        Some("size=64m,mode=1777")
    );
    assert_eq!(c.security.tmpfs.get("/run").map(String::as_str), Some(""));
    assert_eq!(c.security.runtime.as_deref(), Some("runsc"));
    assert_eq!(c.resources.max_per_user, 0);
    assert_eq!(c.projects_file, Path::new("/srv/projects.yaml"));
    assert_eq!(c.users_dir, Path::new("/srv/users"));
    assert_eq!(c.broker.socket, Path::new("/run/p.sock"));
    assert_eq!(
        c.helper.path.as_deref(),
        Some(Path::new("/opt/podspawn/helper"))
    );
}

#[test]
fn empty_helper_path_turns_the_mount_off() {
    assert_eq!(parse("helper:\n  path: \"\"\n").unwrap().helper.path, None);
}

#[test]
fn empty_log_paths_and_runtime_mean_none() {
    let c = parse("log:\n  file: \"\"\n  audit_log:\nsecurity:\n  runtime: ''\n").unwrap();
    assert_eq!(c.log.file, None);
    assert_eq!(c.log.audit_log, None);
    assert_eq!(c.security.runtime, None);
}

#[test]
fn empty_section_keeps_defaults() {
    let c = parse("session:\nsecurity:\n  tmpfs:\n").unwrap();
    assert_eq!(c.session, Config::default().session);
    assert!(c.security.tmpfs.is_empty());
}

#[test]
fn persistent_is_an_alias_of_named() {
    assert_eq!(
        parse("session: {mode: persistent}").unwrap().session.mode,
        SessionMode::Named
    );
    assert_eq!(
        parse("session: {mode: named}").unwrap().session.mode,
        SessionMode::Named
    );
    assert_eq!(SessionMode::parse("persistent"), Some(SessionMode::Named));
    assert_eq!(SessionMode::Named.as_str(), "named");
    for m in [
        SessionMode::GracePeriod,
        SessionMode::DestroyOnDisconnect,
        SessionMode::Named,
        SessionMode::Ttl,
    ] {
        assert_eq!(SessionMode::parse(m.as_str()), Some(m));
    }
    assert_eq!(SessionMode::parse("Named"), None);
}

// ---- the default file ----

#[test]
fn default_yaml_round_trips_to_default_config() {
    let c = Config::parse(default_config_yaml(), Path::new("/x/config.yaml")).unwrap();
    assert_eq!(
        c,
        Config {
            path: PathBuf::from("/x/config.yaml"),
            ..Config::default()
        }
    );
}

#[test]
fn default_yaml_mentions_and_comments_every_key() {
    let y = default_config_yaml();
    for key in [
        "key_dir:",
        "github_url:",
        "image:",
        "shell:",
        "cpus:",
        "memory:",
        "grace_period:",
        "max_lifetime:",
        "mode:",
        "ttl:",
        "db_path:",
        "lock_dir:",
        "homes_dir:",
        "file:",
        "audit_log:",
        "level:",
        "cap_drop:",
        "cap_add:",
        "no_new_privileges:",
        "pids_limit:",
        "readonly_rootfs:",
        "tmpfs:",
        "runtime:",
        "max_per_user:",
        "projects_file:",
        "users_dir:",
        "socket:",
    ] {
        let lines: Vec<&str> = y.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("default yaml lacks {key}"));
        assert!(
            i > 0 && lines[i - 1].trim_start().starts_with('#'),
            "{key} has no comment above it"
        );
    }
}

#[test]
fn default_yaml_reflects_changed_values() {
    // The round trip would also pass if parse ignored its input; make sure it does not.
    let changed = default_config_yaml().replace("max_per_user: 3", "max_per_user: 7");
    assert_eq!(parse(&changed).unwrap().resources.max_per_user, 7);
}

// ---- load ----

#[test]
fn load_reads_file_and_sets_path() {
    let dir = TempDir::new("load");
    let p = dir.write("config.yaml", "defaults:\n  image: alpine:3\n");
    let c = Config::load(&p).unwrap();
    assert_eq!(c.path, p);
    assert_eq!(c.defaults.image, "alpine:3");
}

#[test]
fn load_missing_file_is_an_error_naming_the_path() {
    let dir = TempDir::new("missing");
    let p = dir.0.join("nope.yaml");
    let e = Config::load(&p).unwrap_err();
    assert_eq!(e.path, p);
    assert_eq!(e.line, None);
    assert!(e.message.starts_with("cannot read: "), "{e}");
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read: ", p.display())));
}

#[test]
fn load_error_names_the_loaded_file() {
    let dir = TempDir::new("loadbad");
    let p = dir.write("config.yaml", "session:\n  grace_period: 60\n");
    let e = Config::load(&p).unwrap_err();
    assert_eq!(e.path, p);
    assert_eq!(e.line, Some(2));
}

// ---- error format ----

#[test]
fn display_has_file_line_key_and_message() {
    let e = parse_err("session:\n  mode: grace-period\n  grace_period: 60\n");
    assert_eq!(
        e.to_string(),
        "/etc/podspawn/config.yaml: line 3: session.grace_period: invalid duration \"60\": \
         give a number with a unit, e.g. 60s, 5m, 8h"
    );
}

#[test]
fn unknown_key_nested() {
    let e = check(
        "session:\n  mode: ttl\n  grace: 5s\n",
        3,
        Some("session"),
        &[
            "unknown key \"grace\"",
            "valid keys here: grace_period, max_lifetime, mode, ttl",
        ],
    );
    assert!(e.message.contains("did you mean grace_period"), "{e}");
    check(
        "security:\n  tmpfs: {}\n  capadd: [CHOWN]\n",
        3,
        Some("security"),
        &["unknown key \"capadd\"", "cap_add", "pids_limit"],
    );
}

#[test]
fn unknown_key_top_level() {
    let e = check(
        "# comment\nsession: {}\nsesion:\n  mode: ttl\n",
        3,
        None,
        &[
            "unknown key \"sesion\"",
            "valid keys here: auth, defaults, session",
            "broker",
        ],
    );
    assert!(e.message.contains("did you mean session"), "{e}");
    let e = check("zzz: 1\n", 1, None, &["unknown key \"zzz\""]);
    assert!(!e.message.contains("did you mean"), "{e}");
}

#[test]
fn duplicate_keys_are_errors() {
    check(
        "session:\n  mode: named\n  ttl: 1h\n  mode: ttl\n",
        4,
        Some("session.mode"),
        &["duplicate key \"mode\"", "remove"],
    );
    check(
        "session:\n  ttl: 1h\nlog: {}\nsession:\n  mode: ttl\n",
        4,
        Some("session"),
        &["duplicate key \"session\""],
    );
    check(
        "security:\n  tmpfs:\n    /tmp: a\n    /run: b\n    /tmp: c\n",
        5,
        Some("security.tmpfs[\"/tmp\"]"),
        &["duplicate key \"/tmp\""],
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    check(
        "- a\n- b\n",
        1,
        None,
        &["must be a YAML mapping", "sequence", "key: value"],
    );
    check(
        "just text\n",
        1,
        None,
        &["must be a YAML mapping", "key: value"],
    );
}

#[test]
fn section_must_be_a_mapping() {
    check(
        "log: {}\nsession: 5\n",
        2,
        Some("session"),
        &["expected a mapping with the keys grace_period, max_lifetime, mode, ttl"],
    );
    check(
        "security:\n  cap_add: CHOWN\n",
        2,
        Some("security.cap_add"),
        &["expected a sequence", "found string"],
    );
}

#[test]
fn yaml_syntax_errors_have_line_and_hint() {
    let e = parse_err("session:\n  mode: ttl\n\tttl: 1h\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert!(e.message.contains("spaces, not tabs"), "{e}");
    let e = parse_err("a: 1\n---\nb: 2\n");
    assert!(e.message.contains("single document"), "{e}");
}

// ---- validation rules, one bad value each ----

#[test]
fn bad_durations() {
    check(
        "session:\n  grace_period: 60\n",
        2,
        Some("session.grace_period"),
        &["invalid duration \"60\"", "e.g. 60s"],
    );
    check(
        "session:\n  grace_period: -5s\n",
        2,
        Some("session.grace_period"),
        &["negative", "e.g. 60s"],
    );
    check(
        "session:\n  grace_period: \"\"\n",
        2,
        Some("session.grace_period"),
        &["empty", "e.g. 60s"],
    );
    check(
        "session:\n  grace_period:\n",
        2,
        Some("session.grace_period"),
        &["empty", "e.g. 60s"],
    );
    check(
        "session:\n  max_lifetime: 5y\n",
        2,
        Some("session.max_lifetime"),
        &["unknown unit \"y\"", "ms, s, m, h or d"],
    );
    check(
        "session:\n  max_lifetime: 0\n",
        2,
        Some("session.max_lifetime"),
        &["greater than 0", "e.g. 60s"],
    );
    check(
        "session:\n  ttl: 0s\n",
        2,
        Some("session.ttl"),
        &["greater than 0"],
    );
    check(
        "session:\n  ttl: [1h]\n",
        2,
        Some("session.ttl"),
        &["expected a duration", "found sequence"],
    );
}

#[test]
fn grace_period_may_be_zero() {
    assert_eq!(
        parse("session: {grace_period: 0}")
            .unwrap()
            .session
            .grace_period,
        Duration::ZERO
    );
    assert_eq!(
        parse("session: {grace_period: 0s}")
            .unwrap()
            .session
            .grace_period,
        Duration::ZERO
    );
}

#[test]
fn bad_memory() {
    check(
        "defaults:\n  memory: -1g\n",
        2,
        Some("defaults.memory"),
        &["negative", "e.g. 512m"],
    );
    check(
        "defaults:\n  memory: lots\n",
        2,
        Some("defaults.memory"),
        &["invalid size \"lots\"", "e.g. 512m"],
    );
    check(
        "defaults:\n  memory: 2x\n",
        2,
        Some("defaults.memory"),
        &["unknown unit \"x\""],
    );
}

#[test]
fn memory_empty_or_zero_is_unlimited() {
    assert_eq!(
        parse("defaults: {memory: \"\"}").unwrap().defaults.memory,
        0
    );
    assert_eq!(parse("defaults: {memory: 0}").unwrap().defaults.memory, 0);
    assert_eq!(
        parse("defaults: {memory: \"0\"}").unwrap().defaults.memory,
        0
    );
    assert_eq!(
        parse("defaults: {memory: 1048576}")
            .unwrap()
            .defaults
            .memory,
        1 << 20
    );
}

#[test]
fn bad_cpus() {
    check(
        "defaults:\n  cpus: -1\n",
        2,
        Some("defaults.cpus"),
        &["negative", "e.g. 2 or 0.5"],
    );
    check(
        "defaults:\n  cpus: 1025\n",
        2,
        Some("defaults.cpus"),
        &["at most 1024"],
    );
    check(
        "defaults:\n  cpus: many\n",
        2,
        Some("defaults.cpus"),
        &["\"many\"", "e.g. 2 or 0.5"],
    );
    check(
        "defaults:\n  cpus: .nan\n",
        2,
        Some("defaults.cpus"),
        &["e.g. 2 or 0.5"],
    );
    check(
        "defaults:\n  cpus: inf\n",
        2,
        Some("defaults.cpus"),
        &["e.g. 2 or 0.5"],
    );
}

#[test]
fn good_cpus() {
    assert_eq!(parse("defaults: {cpus: 0}").unwrap().defaults.cpus, 0.0);
    assert!(parse("defaults: {cpus: -0}")
        .unwrap()
        .defaults
        .cpus
        .is_sign_positive());
    assert_eq!(parse("defaults: {cpus: 4}").unwrap().defaults.cpus, 4.0);
    assert_eq!(
        parse("defaults: {cpus: 1024}").unwrap().defaults.cpus,
        1024.0
    );
    assert_eq!(parse("defaults: {cpus: 0.25}").unwrap().defaults.cpus, 0.25);
}

#[test]
fn bad_mode_lists_the_valid_ones() {
    check(
        "session:\n  mode: forever\n",
        2,
        Some("session.mode"),
        &[
            "\"forever\"",
            "grace-period",
            "destroy-on-disconnect",
            "named",
            "persistent",
            "ttl",
        ],
    );
}

#[test]
fn relative_paths_are_rejected() {
    let cases = [
        ("auth:\n  key_dir: keys\n", "auth.key_dir"),
        ("state:\n  db_path: state.db\n", "state.db_path"),
        ("state:\n  lock_dir: locks\n", "state.lock_dir"),
        ("state:\n  homes_dir: ./homes\n", "state.homes_dir"),
        ("log:\n  file: p.log\n", "log.file"),
        ("log:\n  audit_log: a.log\n", "log.audit_log"),
        ("broker:\n  socket: p.sock\n", "broker.socket"),
        ("helper:\n  path: podspawn-helper\n", "helper.path"),
        ("\nprojects_file: projects.yaml\n", "projects_file"),
        ("\nusers_dir: users\n", "users_dir"),
        ("defaults:\n  shell: bash\n", "defaults.shell"),
    ];
    for (text, key) in cases {
        check(
            text,
            2,
            Some(key),
            &["not absolute", "starting with /", "e.g. /"],
        );
    }
    check(
        "state:\n  db_path: \"\"\n",
        2,
        Some("state.db_path"),
        &["empty path", "e.g. /var/lib/podspawn/state.db"],
    );
}

#[test]
fn bad_image() {
    check(
        "defaults:\n  image: \"\"\n",
        2,
        Some("defaults.image"),
        &["empty image", "e.g. ubuntu:24.04"],
    );
    check(
        "defaults:\n  image: ubuntu 24.04\n",
        2,
        Some("defaults.image"),
        &["no spaces", "e.g. ubuntu:24.04"],
    );
}

#[test]
fn bad_capabilities() {
    check(
        "security:\n  cap_add:\n    - CHOWN\n    - SETUID\n    - net_admin\n",
        5,
        Some("security.cap_add[2]"),
        &["invalid capability \"net_admin\"", "e.g. NET_ADMIN"],
    );
    check(
        "security:\n  cap_drop: [ALL, \"SYS ADMIN\"]\n",
        2,
        Some("security.cap_drop[1]"),
        &["upper case", "ALL"],
    );
    check(
        "security:\n  cap_add: [CAP_]\n",
        2,
        Some("security.cap_add[0]"),
        &["upper case"],
    );
}

#[test]
fn capability_prefix_is_stripped() {
    let c = parse("security: {cap_add: [CAP_NET_RAW, SYS_ADMIN], cap_drop: [CAP_ALL]}").unwrap();
    assert_eq!(c.security.cap_add, vec!["NET_RAW", "SYS_ADMIN"]);
    assert_eq!(c.security.cap_drop, vec!["ALL"]);
    assert!(parse("security: {cap_add: []}")
        .unwrap()
        .security
        .cap_add
        .is_empty());
}

#[test]
fn bad_pids_limit() {
    check(
        "security:\n  pids_limit: -1\n",
        2,
        Some("security.pids_limit"),
        &["negative", "e.g. 256"],
    );
    check(
        "security:\n  pids_limit: lots\n",
        2,
        Some("security.pids_limit"),
        &["whole number", "e.g. 256"],
    );
}

#[test]
fn bad_booleans() {
    check(
        "security:\n  no_new_privileges: yes\n",
        2,
        Some("security.no_new_privileges"),
        &["true or false"],
    );
    check(
        "security:\n  readonly_rootfs: 1\n",
        2,
        Some("security.readonly_rootfs"),
        &["true or false"],
    );
}

#[test]
fn network_mode() {
    assert_eq!(Config::default().security.network, NetworkMode::Isolated);
    let c = parse("security:\n  network: shared\n").unwrap();
    assert_eq!(c.security.network, NetworkMode::Shared);
    check(
        "security:\n  network: host\n",
        2,
        Some("security.network"),
        &["invalid network mode", "isolated", "shared"],
    );
}

#[test]
fn bad_runtime() {
    check(
        "security:\n  runtime: \"run sc\"\n",
        2,
        Some("security.runtime"),
        &["invalid runtime", "e.g. runc or runsc"],
    );
    check(
        "security:\n  runtime: -runc\n",
        2,
        Some("security.runtime"),
        &["invalid runtime"],
    );
    assert_eq!(
        parse("security: {runtime: io.containerd.runc.v2}")
            .unwrap()
            .security
            .runtime
            .as_deref(),
        Some("io.containerd.runc.v2")
    );
}

#[test]
fn bad_tmpfs_key() {
    check(
        "security:\n  tmpfs:\n    /tmp: size=1m\n    run: x\n",
        4,
        Some("security.tmpfs.run"),
        &["not an absolute path", "e.g. /tmp"],
    );
    check(
        "security:\n  tmpfs: [/tmp]\n",
        2,
        Some("security.tmpfs"),
        &["expected a mapping of mount point to options"],
    );
}

#[test]
fn bad_log_level() {
    check(
        "log:\n  level: loud\n",
        2,
        Some("log.level"),
        &["\"loud\"", "trace, debug, info, warn, error"],
    );
}

#[test]
fn bad_max_per_user() {
    check(
        "resources:\n  max_per_user: -1\n",
        2,
        Some("resources.max_per_user"),
        &["negative", "e.g. 3"],
    );
    check(
        "resources:\n  max_per_user: 2.5\n",
        2,
        Some("resources.max_per_user"),
        &["whole number", "e.g. 3"],
    );
    check(
        "resources:\n  max_per_user: 99999999999\n",
        2,
        Some("resources.max_per_user"),
        &["whole number"],
    );
}

#[test]
fn github_url_rules() {
    check(
        "auth:\n  github_url: github.com\n",
        2,
        Some("auth.github_url"),
        &["http:// or https://", "e.g. https://github.com"],
    );
    check(
        "auth:\n  github_url: ftp://github.com\n",
        2,
        Some("auth.github_url"),
        &["http:// or https://"],
    );
    check(
        "auth:\n  github_url: \"https://\"\n",
        2,
        Some("auth.github_url"),
        &["http:// or https://"],
    );
    assert_eq!(
        parse("auth: {github_url: \"http://gh.local//\"}")
            .unwrap()
            .auth
            .github_url,
        "http://gh.local"
    );
}

// ---- parsers ----

#[test]
fn duration_table() {
    let ok: &[(&str, u64)] = &[
        ("0", 0),
        ("0s", 0),
        ("500ms", 500),
        ("60s", 60_000),
        ("5m", 300_000),
        ("8h", 28_800_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1d2h3m4s5ms", 93_784_005),
        ("1.5h", 5_400_000),
        ("0.5s", 500),
        (" 90s ", 90_000),
    ];
    for (text, ms) in ok {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(*ms)),
            "{text:?}"
        );
    }
    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("60", "with a unit"),
        ("1.5", "with a unit"),
        ("-5s", "negative"),
        ("-0", "negative"),
        ("5x", "unknown unit"),
        ("5 s", "unknown unit"),
        ("5S", "unknown unit"),
        ("h", "number"),
        ("1h30", "with a unit"),
        ("1..5h", "not a number"),
        ("abc", "number"),
        ("99999999999999999999999d", "too large"),
    ];
    for (text, why) in bad {
        let e = parse_duration(text).unwrap_err().to_string();
        assert!(e.contains(why), "{text:?}: {e}");
        assert!(e.contains("e.g."), "{text:?}: {e}");
    }
}

#[test]
fn size_table() {
    let ok: &[(&str, u64)] = &[
        ("", 0),
        ("0", 0),
        ("1048576", 1_048_576),
        ("100b", 100),
        ("1024k", 1 << 20),
        ("512m", 512 << 20),
        ("2g", 2 << 30),
        ("2G", 2 << 30),
        ("2gb", 2 << 30),
        ("2GB", 2 << 30),
        ("1.5g", 3 << 29),
        ("0.5k", 512),
        ("1t", 1 << 40),
        ("64Mb", 64 << 20),
    ];
    for (text, bytes) in ok {
        assert_eq!(parse_size(text), Ok(*bytes), "{text:?}");
    }
    let bad: &[(&str, &str)] = &[
        ("-1", "negative"),
        ("-2g", "negative"),
        ("abc", "unknown unit"),
        ("2x", "unknown unit"),
        ("2 g", "unknown unit"),
        ("g", "expected a number"),
        ("1.5", "whole number"),
        ("1.2.3g", "not a number"),
        ("99999999999t", "too large"),
    ];
    for (text, why) in bad {
        let e = parse_size(text).unwrap_err().to_string();
        assert!(e.contains(why), "{text:?}: {e}");
        assert!(e.contains("e.g. 512m"), "{text:?}: {e}");
    }
}

// ---- per-user overrides ----

#[test]
fn user_overrides_missing_file_is_default() {
    let dir = TempDir::new("users-missing");
    assert_eq!(
        UserOverrides::load(&dir.0, "alice").unwrap(),
        UserOverrides::default()
    );
    // A users_dir that does not exist at all is the same as no overrides.
    assert_eq!(
        UserOverrides::load(&dir.0.join("absent"), "alice").unwrap(),
        UserOverrides::default()
    );
}

#[test]
fn user_overrides_good() {
    let dir = TempDir::new("users-good");
    dir.write(
        "alice.yaml",
        "# alice needs more\nimage: ghcr.io/acme/dev:1\ncpus: 4\nmemory: 8g\nshell: /usr/bin/fish\nmode: persistent\nenv:\n  EDITOR: vim\n  _X1: 42\n  EMPTY:\n",
    );
    dir.write("bob.yaml", "");
    let o = UserOverrides::load(&dir.0, "alice").unwrap();
    assert_eq!(o.image.as_deref(), Some("ghcr.io/acme/dev:1"));
    assert_eq!(o.cpus, Some(4.0));
    assert_eq!(o.memory, Some(8 << 30));
    assert_eq!(o.shell.as_deref(), Some("/usr/bin/fish"));
    assert_eq!(o.mode, Some(SessionMode::Named));
    assert_eq!(o.env.get("EDITOR").map(String::as_str), Some("vim"));
    assert_eq!(o.env.get("_X1").map(String::as_str), Some("42"));
    assert_eq!(o.env.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!(o.env.len(), 3);
    assert_eq!(
        UserOverrides::load(&dir.0, "bob").unwrap(),
        UserOverrides::default()
    );
    // Only the keys that are given are overridden.
    dir.write("carol.yaml", "memory: 1g\n");
    let o = UserOverrides::load(&dir.0, "carol").unwrap();
    assert_eq!(
        o,
        UserOverrides {
            memory: Some(1 << 30),
            ..UserOverrides::default()
        }
    );
}

#[track_caller]
fn user_err(text: &str, line: usize, key: Option<&str>, needles: &[&str]) {
    let dir = TempDir::new("users-bad");
    let p = dir.write("dave.yaml", text);
    let e = UserOverrides::load(&dir.0, "dave").unwrap_err();
    assert_eq!(e.path, p, "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key.as_deref(), key, "{e}");
    for n in needles {
        assert!(e.message.contains(n), "{e:?} should mention {n:?}");
    }
}

#[test]
fn user_overrides_bad() {
    user_err(
        "image: ok\nimgae: x\n",
        2,
        None,
        &[
            "unknown key \"imgae\"",
            "valid keys here: image, cpus, memory, shell, mode, env",
        ],
    );
    user_err(
        "cpus: -2\n",
        1,
        Some("cpus"),
        &["negative", "e.g. 2 or 0.5"],
    );
    user_err(
        "\nmemory: huge\n",
        2,
        Some("memory"),
        &["invalid size", "e.g. 512m"],
    );
    user_err(
        "shell: zsh\n",
        1,
        Some("shell"),
        &["not absolute", "e.g. /bin/bash"],
    );
    user_err(
        "mode: forever\n",
        1,
        Some("mode"),
        &["grace-period", "persistent"],
    );
    user_err("image: \"a b\"\n", 1, Some("image"), &["no spaces"]);
    user_err(
        "env:\n  GOOD: 1\n  1BAD: 2\n",
        3,
        Some("env.1BAD"),
        &["invalid environment variable name \"1BAD\"", "e.g. MY_VAR"],
    );
    user_err(
        "env:\n  A-B: x\n",
        2,
        Some("env.A-B"),
        &["invalid environment variable name"],
    );
    user_err(
        "env:\n  A: 1\n  A: 2\n",
        3,
        Some("env.A"),
        &["duplicate key \"A\""],
    );
    user_err(
        "env: [A]\n",
        1,
        Some("env"),
        &["expected a mapping of variable name to value"],
    );
    user_err("- image\n", 1, None, &["must be a YAML mapping"]);
}

#[test]
fn user_overrides_reject_path_like_names() {
    let dir = TempDir::new("users-names");
    for name in ["", ".", "..", "../etc/passwd", "a/b"] {
        let e = UserOverrides::load(&dir.0, name).unwrap_err();
        assert!(e.message.contains("invalid user name"), "{name:?}: {e}");
    }
}

#[test]
fn user_overrides_unreadable_file_is_an_error() {
    let dir = TempDir::new("users-dir-as-file");
    // A directory where the file should be cannot be read.
    std::fs::create_dir(dir.0.join("erin.yaml")).unwrap();
    let e = UserOverrides::load(&dir.0, "erin").unwrap_err();
    assert!(e.message.starts_with("cannot read"), "{e}");
    assert_eq!(e.path, dir.0.join("erin.yaml"));
}

#[test]
fn value_errors_are_typed_and_read_as_their_message() {
    let e: ValueError = parse_duration("5x").unwrap_err();
    let want = "invalid duration \"5x\": unknown unit \"x\"; use ms, s, m, h or d, \
                e.g. 60s, 5m, 8h, 1h30m";
    assert_eq!(e.message(), want);
    assert_eq!(e.to_string(), want);
    let s: String = parse_size("2x").unwrap_err().into();
    assert!(
        s.starts_with("invalid size \"2x\": unknown unit \"x\";"),
        "{s}"
    );
}

#[test]
fn accept_env_and_session_dir() {
    let c = parse("").unwrap();
    assert_eq!(c.session.accept_env, ["LANG", "LANGUAGE", "LC_*"]);
    assert_eq!(
        c.broker.session_dir.as_deref(),
        Some(Path::new(DEFAULT_SESSION_DIR))
    );
    let c =
        parse("session: {accept_env: [LANG, EDITOR, \"GIT_*\"]}\nbroker: {session_dir: \"\"}\n")
            .unwrap();
    assert_eq!(c.session.accept_env, ["LANG", "EDITOR", "GIT_*"]);
    assert_eq!(c.broker.session_dir, None);
    // podspawn's own variables, or prefixes that would cover them, are refused by name.
    for bad in [
        "PATH",
        "HOME",
        "SSH_AUTH_SOCK",
        "PODSPAWN_PROJECT",
        "S*",
        "P*",
        "PODSPAWN*",
    ] {
        let e = parse_err(&format!("session: {{accept_env: [\"{bad}\"]}}\n"));
        assert_eq!(
            e.key.as_deref(),
            Some("session.accept_env[0]"),
            "{bad}: {e}"
        );
        assert!(e.message.contains("podspawn sets itself"), "{bad}: {e}");
    }
    for bad in ["1X", "A-B", "LC_ *", "", "*"] {
        let e = parse_err(&format!("session: {{accept_env: [\"{bad}\"]}}\n"));
        assert!(e.message.contains("not a variable name"), "{bad:?}: {e}");
    }
    // A name that merely starts like a reserved one is fine.
    assert!(parse("session: {accept_env: [SSHFS_OPTS, PATHEXT]}\n").is_ok());
    let e = parse_err("broker: {session_dir: relative/dir}\n");
    assert_eq!(e.key.as_deref(), Some("broker.session_dir"));
    let e = parse_err(&format!("broker: {{session_dir: /{}}}\n", "x".repeat(80)));
    assert!(e.message.contains("would not fit"), "{e}");
}
