//! `add-user`, `remove-user`, `list-users`.
//!
//! These print to the terminal; errors come back as one message that says what was wrong and how
//! to fix it. `add-user` validates and fetches everything before it changes anything.
use crate::core::config::Config;
use crate::core::keys::KeyError;
use crate::core::keys::PublicKey;
use crate::host::accounts;
use crate::store::audit::{Audit, Event};
use crate::store::keys::{self, KeyFile, KeyFileError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Timeout for `--github` requests.
pub const GITHUB_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct AddUserArgs {
    /// Host account name (created if missing).
    pub name: String,
    /// A public key line, e.g. "ssh-ed25519 AAAA... alice@laptop" (repeatable).
    #[arg(long)]
    pub key: Vec<String>,
    /// A file of public key lines (repeatable).
    #[arg(long)]
    pub key_file: Vec<PathBuf>,
    /// Import the keys of a GitHub user, once (repeatable).
    #[arg(long)]
    pub github: Vec<String>,
    /// Take over an existing account that is used for something else (a password, another
    /// login shell, a privileged group): make exactly the changes add-user lists without it.
    #[arg(long)]
    pub convert: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RemoveUserArgs {
    pub name: String,
    /// Stop the user's running sessions first.
    #[arg(long)]
    pub force: bool,
    /// Also delete the user's persistent home, overrides and the host account podspawn created.
    #[arg(long)]
    pub purge: bool,
}

fn require_root(command: &str) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(format!(
            "{command} changes accounts and /etc/podspawn: run it with sudo"
        ))
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

use crate::core::keys::preview;

/// One `--key` value.
pub fn parse_key_arg(k: &str) -> Result<PublicKey, String> {
    PublicKey::parse(k).map_err(|e| format!("--key {}: {e}; nothing was written", preview(k)))
}

fn format_bad_lines(source: &str, bad: &[(usize, KeyError)]) -> String {
    bad.iter()
        .map(|(n, e)| format!("\n  {source}:{n}: {e}"))
        .collect()
}

/// The keys of a `--key-file` text: every non-blank, non-`#` line must be a valid key, and there
/// must be at least one (pure).
pub fn keys_from_file_text(source: &str, bytes: &[u8]) -> Result<Vec<PublicKey>, String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    if head.trim_start().starts_with("-----BEGIN") && head.contains("PRIVATE KEY") {
        return Err(format!(
            "{source} is a private key: give the public key ({source}.pub) instead, and keep the \
             private key private"
        ));
    }
    let (keys, bad) = crate::core::keys::parse_key_bytes(bytes);
    if !bad.is_empty() {
        return Err(format!(
            "{source} has invalid lines (nothing was written):{}",
            format_bad_lines(source, &bad)
        ));
    }
    if keys.is_empty() {
        return Err(format!(
            "{source} contains no public keys: give a file of lines such as \
             \"ssh-ed25519 AAAA... alice@laptop\" (e.g. ~/.ssh/id_ed25519.pub)"
        ));
    }
    Ok(keys)
}

/// Reads one `--key-file`.
fn read_key_file_arg(path: &Path) -> Result<Vec<PublicKey>, String> {
    let shown = path.display().to_string();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read --key-file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("--key-file {shown} is not a regular file"));
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(crate::core::keys::MAX_FILE_LEN + 1)
                .read_to_end(&mut buf)
        })
        .map_err(|e| format!("cannot read --key-file {shown}: {e}"))?;
    if buf.len() as u64 > crate::core::keys::MAX_FILE_LEN {
        return Err(format!("--key-file {shown} is larger than 1 MiB"));
    }
    keys_from_file_text(&shown, &buf)
}

/// A GitHub user name: `^[A-Za-z0-9-]{1,39}$`.
pub fn validate_github_user(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= 39
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(format!(
            "invalid GitHub user name {}: use 1-39 letters, digits or '-'",
            preview(name)
        ))
    }
}

/// `<base>/<user>.keys`.
pub fn github_keys_url(base: &str, user: &str) -> String {
    format!("{}/{user}.keys", base.trim_end_matches('/'))
}

/// Fetches `<base>/<user>.keys`: the valid keys and the skipped lines.
pub fn fetch_github_keys(base: &str, user: &str) -> Result<KeyFile, String> {
    validate_github_user(user)?;
    let url = github_keys_url(base, user);
    // As ureq 2 behaved: no proxy taken from the environment, at most 5 redirects; the timeout
    // covers the whole exchange, body included.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(GITHUB_TIMEOUT))
        .proxy(None)
        .max_redirects(5)
        .build()
        .into();
    let resp = match agent.get(&url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(404)) => {
            return Err(format!(
                "GitHub user {user} not found ({url} answered 404): check the spelling"
            ))
        }
        Err(ureq::Error::StatusCode(code)) => {
            let reason = ureq::http::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            return Err(format!(
                "cannot fetch {url}: HTTP {code} {reason}; try again later or use --key/--key-file"
            ));
        }
        Err(t) => {
            return Err(format!(
                "cannot fetch {url}: {t}; check the network (or auth.github_url) or use \
                 --key/--key-file"
            ))
        }
    };
    let mut body = Vec::new();
    resp.into_body()
        .into_reader()
        .take(crate::core::keys::MAX_FILE_LEN + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
    if body.len() as u64 > crate::core::keys::MAX_FILE_LEN {
        return Err(format!("the answer of {url} is larger than 1 MiB"));
    }
    let (keys, invalid) = crate::core::keys::parse_key_bytes(&body);
    Ok(KeyFile { keys, invalid })
}

/// Appends the keys of `new` that `existing` does not have; returns all keys and how many were
/// added (pure).
pub fn merge_keys(existing: Vec<PublicKey>, new: Vec<PublicKey>) -> (Vec<PublicKey>, usize) {
    let mut all = crate::core::keys::dedupe(existing);
    let before = all.len();
    for k in new {
        if !all.iter().any(|e| e.same_key(&k)) {
            all.push(k);
        }
    }
    let added = all.len() - before;
    (all, added)
}

pub fn add_user(cfg: &Config, args: &AddUserArgs) -> Result<(), String> {
    crate::host::nixos::refuse_user_changes("add-user")?;
    require_root("add-user")?;
    let name = args.name.as_str();
    accounts::check_name_allowed(name)?;
    let key_path = keys::key_file(&cfg.auth.key_dir, name);
    let no_keys_given = args.key.is_empty() && args.key_file.is_empty() && args.github.is_empty();
    if no_keys_given && !keys::is_registered(&cfg.auth.key_dir, name) {
        return Err(format!(
            "no keys given: use --key \"ssh-ed25519 AAAA... {name}@laptop\", --key-file FILE.pub \
             or --github GITHUB_USER (each may be repeated); without them add-user only sets up \
             the account of a user who already has a key file ({})",
            key_path.display()
        ));
    }

    // (a) Validate and fetch everything before changing anything.
    let mut collected = Vec::new();
    for k in &args.key {
        collected.push(parse_key_arg(k)?);
    }
    for f in &args.key_file {
        collected.extend(read_key_file_arg(f)?);
    }
    for gh in &args.github {
        let KeyFile {
            keys: found,
            invalid: skipped,
        } = fetch_github_keys(&cfg.auth.github_url, gh)?;
        let url = github_keys_url(&cfg.auth.github_url, gh);
        if !skipped.is_empty() {
            eprintln!(
                "warning: skipped invalid lines from GitHub:{}",
                format_bad_lines(&url, &skipped)
            );
        }
        if found.is_empty() {
            return Err(format!(
                "GitHub user {gh} has no usable SSH keys ({url}); nothing was written"
            ));
        }
        collected.extend(found);
    }
    let collected = crate::core::keys::dedupe(collected);
    let plan = accounts::plan_host_account(name)?;
    plan.check(name, args.convert)?;
    let existing = match keys::load_key_file(&key_path) {
        Ok(kf) => {
            if !kf.invalid.is_empty() {
                eprintln!(
                    "warning: dropping invalid lines from {}:{}",
                    key_path.display(),
                    format_bad_lines(&key_path.display().to_string(), &kf.invalid)
                );
            }
            kf.keys
        }
        Err(KeyFileError::NotFound) => Vec::new(),
        Err(KeyFileError::Refused(m)) => {
            return Err(format!(
                "{m}; then run add-user again (nothing was written)"
            ))
        }
    };
    let (all, added) = merge_keys(existing, collected);

    // (b) System identities (the config and key files are owned by the podspawn group).
    let ids = accounts::ensure_system_identities()?;

    // (c) A default config, if there is none.
    if !cfg.path.exists() {
        crate::host::fs::create_parent_dirs(&cfg.path)?;
        crate::host::fs::write_file_atomic(
            &cfg.path,
            crate::core::config::default_config_yaml().as_bytes(),
            0,
            ids.podspawn_gid,
            0o640,
        )?;
        println!("wrote the default configuration to {}", cfg.path.display());
    }

    // (d) The host account.
    let setup = accounts::apply_host_plan(name, &plan)?;
    if setup.created {
        println!(
            "created host account {name} (shell {}, home {}, no password login)",
            setup.account.shell.display(),
            setup.account.home.display()
        );
    } else {
        for change in &setup.changes {
            println!("{change}");
        }
    }
    for note in &setup.notes {
        eprintln!("note: {note}");
    }
    if !setup.converted.is_empty() {
        audit(
            cfg,
            Event::UserConvert {
                user: name.to_string(),
                changes: setup.converted.iter().map(|c| c.describe(name)).collect(),
                actor: actor(),
            },
        );
    }

    // (e) The key file.
    keys::ensure_key_dir(&cfg.auth.key_dir, ids.podspawn_gid)?;
    keys::write_key_file(&cfg.auth.key_dir, name, &all, ids.podspawn_gid)?;
    if no_keys_given {
        println!("kept {name}'s {}", plural(all.len(), "key"));
    } else if added == 0 {
        println!("{name} already has all these keys");
    } else {
        println!(
            "added {} for {name} ({} total)",
            plural(added, "key"),
            all.len()
        );
        audit(
            cfg,
            Event::UserAdd {
                user: name.to_string(),
                keys: added,
                actor: actor(),
            },
        );
    }
    Ok(())
}

/// Who ran an admin command: the invoking user behind sudo, else the current account.
fn actor() -> String {
    std::env::var("SUDO_USER")
        .ok()
        .filter(|u| crate::core::names::validate_user(u).is_ok())
        .or_else(|| {
            // SAFETY: getuid cannot fail.
            accounts::lookup_uid(nix::unistd::getuid().as_raw()).map(|a| a.name)
        })
        .unwrap_or_else(|| "root".to_string())
}

/// Records an admin event when `log.audit_log` is set; a failure to open it is reported, not fatal.
fn audit(cfg: &Config, ev: Event) {
    match Audit::open(cfg) {
        Ok(Some(a)) => a.record(&ev),
        Ok(None) => {}
        Err(e) => eprintln!("warning: audit log: {e}"),
    }
}

/// `podspawn stop` target of a session (`alice`, or `alice@backend`): from the session's project,
/// never parsed back out of a container name (names may be alternatives).
pub fn stop_target(user: &str, project: &str) -> String {
    if project.is_empty() {
        user.to_string()
    } else {
        format!("{user}@{project}")
    }
}

pub fn remove_user(cfg: &Config, args: &RemoveUserArgs) -> Result<(), String> {
    crate::host::nixos::refuse_user_changes("remove-user")?;
    require_root("remove-user")?;
    let name = args.name.as_str();
    crate::core::names::validate_user(name)?;
    let key_path = keys::key_file(&cfg.auth.key_dir, name);
    if !keys::is_registered(&cfg.auth.key_dir, name) {
        return Err(format!(
            "{name} is not a podspawn user (there is no key file {})",
            key_path.display()
        ));
    }

    match crate::commands::session::user_sessions(cfg, name) {
        Ok(sessions) if sessions.is_empty() => {}
        Ok(sessions) => {
            if !args.force {
                let targets: Vec<String> = sessions
                    .iter()
                    .map(|(c, p)| format!("{c} (podspawn stop {})", stop_target(name, p)))
                    .collect();
                return Err(format!(
                    "{name} has running sessions: {}. Stop them with `podspawn stop \
                     {name}@PROJECT` (or `podspawn stop {name}`), or pass --force to stop them \
                     and remove {name}; nothing was removed",
                    targets.join(", ")
                ));
            }
            let n = crate::commands::session::stop_user(cfg, name)
                .map_err(|e| format!("cannot stop {name}'s sessions: {e}; nothing was removed"))?;
            println!("stopped {} of {name}", plural(n, "session"));
        }
        Err(e) => {
            if !args.force {
                return Err(format!(
                    "cannot ask the broker about {name}'s sessions: {e}. Start it with \
                     `systemctl start podspawn.socket`, or pass --force to remove {name} anyway; \
                     nothing was removed"
                ));
            }
            eprintln!(
                "warning: cannot ask the broker about {name}'s sessions ({e}); removing {name} \
                 anyway (its containers, if any, are left to `podspawn cleanup`)"
            );
        }
    }

    let mut problems = Vec::new();
    match std::fs::remove_file(&key_path) {
        Ok(()) => println!("removed {name}'s keys ({})", key_path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", key_path.display())),
    }
    if let Some(parent) = key_path.parent() {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }

    if accounts::lookup(name).is_some() && accounts::is_member(name, accounts::USERS_GROUP) {
        match accounts::remove_from_group(name, accounts::USERS_GROUP) {
            Ok(()) => println!("removed {name} from {}", accounts::USERS_GROUP),
            Err(e) => problems.push(e.into()),
        }
    }

    if args.purge {
        let home = cfg.state.homes_dir.join(name);
        match remove_path(&home) {
            Ok(true) => println!("deleted persistent home {}", home.display()),
            Ok(false) => {}
            Err(e) => problems.push(e),
        }
        let overrides = cfg.users_dir.join(format!("{name}.yaml"));
        match remove_path(&overrides) {
            Ok(true) => println!("deleted overrides {}", overrides.display()),
            Ok(false) => {}
            Err(e) => problems.push(e),
        }
        if accounts::lookup(name).is_some() {
            match accounts::delete_host_account(name) {
                Ok(true) => println!("deleted host account {name} and its home directory"),
                Ok(false) => println!(
                    "kept host account {name}: podspawn did not create it (delete it yourself \
                     with `userdel -r {name}` if you want)"
                ),
                Err(e) => problems.push(e.into()),
            }
        }
    } else if accounts::lookup(name).is_some() {
        println!(
            "kept host account {name} and any persistent home (remove-user --purge deletes \
             them)"
        );
    }

    if problems.is_empty() {
        audit(
            cfg,
            Event::UserRemove {
                user: name.to_string(),
                purge: args.purge,
                actor: actor(),
            },
        );
        Ok(())
    } else {
        Err(format!(
            "{name} is no longer a podspawn user, but: {}",
            problems.join("; ")
        ))
    }
}

/// Removes a file, symlink or directory tree; false if there was nothing.
fn remove_path(p: &Path) -> Result<bool, String> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot stat {}: {e}", p.display())),
    };
    let r = if meta.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    r.map(|()| true)
        .map_err(|e| format!("cannot delete {}: {e}", p.display()))
}

/// One `list-users` line (pure).
pub fn format_user_line(name: &str, keys: &Result<usize, String>) -> String {
    match keys {
        Ok(n) => format!("{name}  ({})", plural(*n, "key")),
        Err(why) => format!("{name}  (unreadable: {why})"),
    }
}

/// The registered user names in `key_dir`: regular files with valid user names, sorted; dotfiles
/// (including temp files), directories and symlinks are skipped.
pub fn registered_users(key_dir: &Path) -> Result<Vec<String>, String> {
    let entries = match std::fs::read_dir(key_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "cannot read {}: {e}: run it with sudo",
                key_dir.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", key_dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", key_dir.display()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || crate::core::names::validate_user(&name).is_err() {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

pub fn list_users(cfg: &Config) -> Result<(), String> {
    let names = registered_users(&cfg.auth.key_dir)?;
    if names.is_empty() {
        println!(
            "no podspawn users (no key files in {})",
            cfg.auth.key_dir.display()
        );
        return Ok(());
    }
    for name in names {
        let count = keys::load_key_file(&keys::key_file(&cfg.auth.key_dir, &name))
            .map(|kf| kf.keys.len())
            .map_err(|e| e.to_string());
        println!("{}", format_user_line(&name, &count));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4Zou test-ed25519@podspawn";
    const SK_ECDSA: &str = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBLhGc1+TLq4ogDMPBg0gJUXeeo48xhBRoAgZzMxZIDhZg4i44m8/wDGJU6gKbTafgOZJlJeUzBhrdzlZdgJjamcAAAAEc3NoOg== test-skec@podspawn";

    #[test]
    fn key_args_and_files() {
        assert!(parse_key_arg(ED25519).is_ok());
        let e = parse_key_arg("command=\"x\" ssh-ed25519 AAAA").unwrap_err();
        assert!(
            e.starts_with("--key \"command=\\\"x\\\" ssh-ed25519 AAAA\": "),
            "{e}"
        );
        assert!(e.contains("nothing was written"), "{e}");

        let text = format!("# mine\n{ED25519}\n\n{SK_ECDSA}\n");
        assert_eq!(
            keys_from_file_text("k.pub", text.as_bytes()).unwrap().len(),
            2
        );
        let text = format!("{ED25519}\nssh-foo AAAA\n{SK_ECDSA}\nrestrict {ED25519}\n");
        let e = keys_from_file_text("k.pub", text.as_bytes()).unwrap_err();
        assert!(e.contains("\n  k.pub:2: unknown key type"), "{e}");
        assert!(e.contains("\n  k.pub:4: "), "{e}");
        let e = keys_from_file_text("k.pub", b"# nothing\n\n").unwrap_err();
        assert!(e.contains("contains no public keys"), "{e}");
        let e = keys_from_file_text(
            "id_ed25519",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn==\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("is a private key"), "{e}");
    }

    #[test]
    fn github_names_and_urls() {
        for ok in ["octocat", "a", "Some-User-9", &"x".repeat(39)] {
            assert!(validate_github_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "../x", "a.b", "a_b", &"x".repeat(40), "é"] {
            assert!(validate_github_user(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            github_keys_url("https://github.com/", "octocat"),
            "https://github.com/octocat.keys"
        );
        assert_eq!(
            github_keys_url("http://127.0.0.1:9", "x"),
            "http://127.0.0.1:9/x.keys"
        );
    }

    /// Serves one canned HTTP answer on 127.0.0.1; returns the base URL and the request line.
    fn serve_once(status: &str, body: String) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let status = status.to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut request_line = String::new();
            r.read_line(&mut request_line).unwrap();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
            }
            write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            request_line
        });
        (base, h)
    }

    #[test]
    fn fetches_github_keys() {
        let (base, h) = serve_once("200 OK", format!("{ED25519}\nbogus\n{SK_ECDSA}\n"));
        let KeyFile {
            keys,
            invalid: skipped,
        } = fetch_github_keys(&base, "octocat").unwrap();
        assert_eq!(h.join().unwrap(), "GET /octocat.keys HTTP/1.1\r\n");
        assert_eq!(keys.len(), 2);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, 2);

        let (base, h) = serve_once("404 Not Found", "Not Found".into());
        let e = fetch_github_keys(&base, "nobody-here").unwrap_err();
        h.join().unwrap();
        assert_eq!(
            e,
            format!(
                "GitHub user nobody-here not found ({base}/nobody-here.keys answered 404): check \
                 the spelling"
            )
        );

        let (base, h) = serve_once("500 Internal Server Error", String::new());
        let e = fetch_github_keys(&base, "x").unwrap_err();
        h.join().unwrap();
        assert_eq!(
            e,
            format!(
                "cannot fetch {base}/x.keys: HTTP 500 Internal Server Error; try again later or \
                 use --key/--key-file"
            )
        );

        let (base, h) = serve_once("200 OK", String::new());
        let kf = fetch_github_keys(&base, "x").unwrap();
        h.join().unwrap();
        assert!(kf.keys.is_empty() && kf.invalid.is_empty());

        // Nothing listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = fetch_github_keys(&format!("http://127.0.0.1:{port}"), "x").unwrap_err();
        assert!(e.contains("cannot fetch"), "{e}");
        assert!(e.ends_with("; check the network (or auth.github_url) or use --key/--key-file"));
        assert!(fetch_github_keys(&base, "../etc/passwd").is_err());
    }

    #[test]
    fn merges_keys() {
        let a = PublicKey::parse(ED25519).unwrap();
        let b = PublicKey::parse(SK_ECDSA).unwrap();
        let mut a2 = a.clone();
        a2.comment = "renamed".into();
        let (all, added) = merge_keys(vec![a.clone()], vec![a2.clone(), b.clone(), b.clone()]);
        assert_eq!(all, vec![a.clone(), b.clone()]);
        assert_eq!(added, 1);
        let (all, added) = merge_keys(vec![a.clone(), b.clone()], vec![a2]);
        assert_eq!((all.len(), added), (2, 0));
        let (all, added) = merge_keys(vec![], vec![b.clone()]);
        assert_eq!((all, added), (vec![b], 1));
    }

    #[test]
    fn formats_list_lines_and_stop_targets() {
        assert_eq!(format_user_line("alice", &Ok(1)), "alice  (1 key)");
        assert_eq!(format_user_line("bob", &Ok(3)), "bob  (3 keys)");
        assert_eq!(format_user_line("carl", &Ok(0)), "carl  (0 keys)");
        assert_eq!(
            format_user_line("dora", &Err("is a symlink".into())),
            "dora  (unreadable: is a symlink)"
        );
        assert_eq!(stop_target("alice", ""), "alice");
        assert_eq!(stop_target("alice", "backend"), "alice@backend");
    }

    #[test]
    fn lists_registered_users() {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from(format!("/tmp/podspawn-users-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _c = Cleanup(dir.clone());
        for n in ["zed", "alice", ".alice.tmp-1-2", ".hidden", "Bad Name"] {
            std::fs::write(dir.join(n), format!("{ED25519}\n")).unwrap();
        }
        std::fs::create_dir(dir.join("adir")).unwrap();
        std::os::unix::fs::symlink(dir.join("alice"), dir.join("linked")).unwrap();
        assert_eq!(registered_users(&dir).unwrap(), vec!["alice", "zed"]);
        assert_eq!(
            registered_users(&dir.join("missing")).unwrap(),
            Vec::<String>::new()
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _ = list_users(&Config {
            auth: crate::core::config::AuthConfig {
                key_dir: dir.clone(),
                github_url: String::new(),
            },
            ..Config::default()
        });
    }
}
