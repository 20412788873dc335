//! sshd's PAM configuration as far as podspawn cares: is `pam_podspawn.so` in the *session*
//! stack of the `sshd` service, with which control, path and arguments; is the module file on
//! this host; and does sshd run with `UsePAM yes`.
//!
//! The parser is pure (a loader callback supplies file texts) and follows what Linux-PAM does:
//! `@include NAME` (Debian's common-* files, every type), `include` and `substack` controls
//! (Fedora's password-auth, system-auth, postlogin: only lines of the including type), comments
//! from `#` to the end of the line, `\` continuation lines, `[value=action ...]` controls and
//! `[...]` arguments with spaces, a leading `-` on the type (skip the line when the module file
//! is missing).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The module's file name.
pub const MODULE_NAME: &str = "pam_podspawn.so";
/// Where PAM service files live.
pub const PAM_DIR: &str = "/etc/pam.d";
/// Distribution defaults for service files (Linux-PAM's vendor directory), read when
/// `/etc/pam.d/<name>` does not exist.
pub const VENDOR_PAM_DIR: &str = "/usr/lib/pam.d";
/// The PAM service sshd uses.
pub const SSHD_SERVICE: &str = "sshd";
/// Linux-PAM refuses deeper include/substack nesting.
const MAX_DEPTH: usize = 16;

/// A line's control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Required,
    Requisite,
    Sufficient,
    Optional,
    /// `[value=action ...]`, the pairs in order (lowercase).
    Bracket(Vec<(String, String)>),
    /// Anything else (as written).
    Other(String),
}

impl Control {
    fn parse(s: &str) -> Control {
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return Control::Bracket(
                inner
                    .split_whitespace()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_ascii_lowercase(), v.to_ascii_lowercase()),
                        None => (kv.to_ascii_lowercase(), String::new()),
                    })
                    .collect(),
            );
        }
        match s.to_ascii_lowercase().as_str() {
            "required" => Control::Required,
            "requisite" => Control::Requisite,
            "sufficient" => Control::Sufficient,
            "optional" => Control::Optional,
            _ => Control::Other(s.to_string()),
        }
    }

    /// As written in a PAM file.
    pub fn text(&self) -> String {
        match self {
            Control::Required => "required".into(),
            Control::Requisite => "requisite".into(),
            Control::Sufficient => "sufficient".into(),
            Control::Optional => "optional".into(),
            Control::Bracket(kv) => format!(
                "[{}]",
                kv.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Control::Other(s) => s.clone(),
        }
    }

    /// Does a failure of the module fail the session (so a connection is never let through in
    /// the host's network namespace)? `required` and `requisite` do; a bracket control does when
    /// its default and every failure value it names are `bad` or `die` (`success` and `ignore`,
    /// PAM_IGNORE for non-members, may do anything).
    pub fn fail_closed(&self) -> bool {
        match self {
            Control::Required | Control::Requisite => true,
            Control::Bracket(kv) => {
                let closed = |a: &str| a == "bad" || a == "die";
                kv.iter().any(|(k, v)| k == "default" && closed(v))
                    && kv
                        .iter()
                        .filter(|(k, _)| k != "success" && k != "ignore")
                        .all(|(_, v)| closed(v))
            }
            Control::Sufficient | Control::Optional | Control::Other(_) => false,
        }
    }

    /// May this line end the stack (or jump) so that lines after it are skipped? `sufficient`,
    /// and bracket controls with `done` or a jump count (returned as the largest jump).
    fn skips(&self) -> Option<usize> {
        match self {
            Control::Sufficient => Some(usize::MAX),
            Control::Bracket(kv) => kv
                .iter()
                .filter_map(|(_, v)| {
                    if v == "done" {
                        Some(usize::MAX)
                    } else {
                        v.parse::<usize>().ok()
                    }
                })
                .max(),
            _ => None,
        }
    }
}

/// One module line of a stack, after includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `auth`, `account`, `password` or `session` (lowercase, without the `-`).
    pub kind: String,
    /// A leading `-`: PAM skips the line when the module file is missing.
    pub skip_if_missing: bool,
    pub control: Control,
    /// The module as written (`pam_unix.so` or an absolute path).
    pub module: String,
    pub args: Vec<String>,
    /// The service file (name as loaded) and 1-based line it comes from.
    pub file: String,
    pub line: usize,
    /// The substacks it is nested in (ids; an empty list: the service's own stack).
    pub scope: Vec<usize>,
}

impl Entry {
    pub fn is_podspawn(&self) -> bool {
        Path::new(&self.module)
            .file_name()
            .is_some_and(|n| n == MODULE_NAME)
    }

    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// `session required pam_podspawn.so args (file:line)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}{} {} {}",
            if self.skip_if_missing { "-" } else { "" },
            self.kind,
            self.control.text(),
            self.module
        );
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        format!("{s} ({})", self.location())
    }
}

/// Joins `\` continuation lines and strips comments: (1-based first line, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if cur.is_empty() {
            start = i + 1;
        }
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push((start, std::mem::take(&mut cur)));
            }
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out.into_iter()
        .map(|(n, l)| {
            let l = match l.find('#') {
                Some(i) => l[..i].to_string(),
                None => l,
            };
            (n, l.trim().to_string())
        })
        .filter(|(_, l)| !l.is_empty())
        .collect()
}

/// Splits a line into words; a word starting with `[` runs to its `]` (spaces included).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '[' {
            // Linux-PAM: `\]` inside brackets is a literal `]`.
            let mut prev = '\0';
            for c in chars.by_ref() {
                if c == ']' && prev != '\\' {
                    w.push(c);
                    break;
                }
                w.push(c);
                prev = c;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        out.push(w);
    }
    out
}

/// What went wrong reading a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The service's own file (or an included one) could not be loaded.
    Missing(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Missing(n) => write!(f, "cannot read the PAM file {n}"),
        }
    }
}

/// The stack of type `kind` (e.g. `session`) of `service`, includes followed. `load` returns a
/// service file's text by name (`sshd`, `common-session`, or an absolute path). A missing
/// included file is skipped like Linux-PAM does (with an error for the include line there);
/// a missing service file is an error.
pub fn stack(
    service: &str,
    kind: &str,
    load: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Entry>, Error> {
    let text = load(service).ok_or_else(|| Error::Missing(service.to_string()))?;
    let mut out = Vec::new();
    let mut next_scope = 0;
    walk(
        service,
        &text,
        kind,
        None,
        &[],
        load,
        &mut out,
        &mut next_scope,
        0,
    );
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    file: &str,
    text: &str,
    kind: &str,
    // `include`/`substack` bring only lines of this type; `@include` all.
    only: Option<&str>,
    scope: &[usize],
    load: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<Entry>,
    next_scope: &mut usize,
    depth: usize,
) {
    for (n, line) in logical_lines(text) {
        let w = words(&line);
        let Some(first) = w.first() else {
            continue;
        };
        if first == "@include" {
            if let (Some(name), true) = (w.get(1), depth < MAX_DEPTH) {
                if let Some(t) = load(name) {
                    walk(
                        name,
                        &t,
                        kind,
                        only,
                        scope,
                        load,
                        out,
                        next_scope,
                        depth + 1,
                    );
                }
            }
            continue;
        }
        let (skip_if_missing, ty) = match first.strip_prefix('-') {
            Some(t) => (true, t.to_ascii_lowercase()),
            None => (false, first.to_ascii_lowercase()),
        };
        if ty != kind || only.is_some_and(|o| o != ty) {
            continue;
        }
        let (Some(control), Some(module)) = (w.get(1), w.get(2)) else {
            continue;
        };
        let lc = control.to_ascii_lowercase();
        if lc == "include" || lc == "substack" {
            if depth >= MAX_DEPTH {
                continue;
            }
            let Some(t) = load(module) else {
                continue;
            };
            let inner: Vec<usize> = if lc == "substack" {
                *next_scope += 1;
                let mut s = scope.to_vec();
                s.push(*next_scope);
                s
            } else {
                scope.to_vec()
            };
            walk(
                module,
                &t,
                kind,
                Some(&ty),
                &inner,
                load,
                out,
                next_scope,
                depth + 1,
            );
            continue;
        }
        out.push(Entry {
            kind: ty,
            skip_if_missing,
            control: Control::parse(control),
            module: module.clone(),
            args: w[3..]
                .iter()
                .map(|a| {
                    a.strip_prefix('[')
                        .and_then(|r| r.strip_suffix(']'))
                        .map(|r| r.replace("\\]", "]"))
                        .unwrap_or_else(|| a.clone())
                })
                .collect(),
            file: file.to_string(),
            line: n,
            scope: scope.to_vec(),
        });
    }
}

/// The first pam_podspawn.so line of a stack, and the earlier lines that may skip it
/// (`sufficient`, `done`, or a jump that reaches past it, in its own stack or an enclosing one).
pub fn find_module(stack: &[Entry]) -> Option<(&Entry, Vec<&Entry>)> {
    let idx = stack.iter().position(Entry::is_podspawn)?;
    let ours = &stack[idx];
    let skippers = stack[..idx]
        .iter()
        .enumerate()
        .filter(|(_, e)| ours.scope.starts_with(&e.scope))
        .filter(|(i, e)| {
            e.control
                .skips()
                .is_some_and(|n| i.saturating_add(n) >= idx)
        })
        .map(|(_, e)| e)
        .collect();
    Some((ours, skippers))
}

/// The Debian multiarch triplet of this build (`x86_64-linux-gnu`).
pub fn multiarch() -> Option<&'static str> {
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le-linux-gnu",
        "powerpc64" => "powerpc64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "loongarch64" => "loongarch64-linux-gnu",
        _ => return None,
    })
}

/// Where PAM looks for a module named without a path, in the order of the distributions'
/// packages: Debian's multiarch directory, Fedora's /usr/lib64/security, then the rest.
pub fn module_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(m) = multiarch() {
        v.push(PathBuf::from(format!("/usr/lib/{m}/security")));
        v.push(PathBuf::from(format!("/lib/{m}/security")));
    }
    for d in [
        "/usr/lib64/security",
        "/lib64/security",
        "/usr/lib/security",
        "/lib/security",
    ] {
        v.push(PathBuf::from(d));
    }
    v
}

/// The paths where pam_podspawn.so may be installed.
pub fn module_path_candidates() -> Vec<PathBuf> {
    module_dirs()
        .into_iter()
        .map(|d| d.join(MODULE_NAME))
        .collect()
}

/// The module file on this host: `written` is the module as the PAM line names it (an absolute
/// path is taken as is), `None` for the usual locations.
pub fn module_file(written: Option<&str>) -> Option<PathBuf> {
    match written {
        Some(p) if p.starts_with('/') => {
            let p = PathBuf::from(p);
            p.is_file().then_some(p)
        }
        _ => module_path_candidates().into_iter().find(|p| p.is_file()),
    }
}

/// sshd's effective `UsePAM` from `sshd -T` output (parsed): `false` when it is `no` or absent
/// (an sshd built without PAM does not print it).
pub fn use_pam(t: &BTreeMap<String, Vec<String>>) -> bool {
    t.get("usepam")
        .and_then(|v| v.first())
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
}

/// A loader for [`stack`] over the real file system: names are files of `dir` (falling back to
/// /usr/lib/pam.d when `dir` is /etc/pam.d), absolute paths are read as they are.
pub fn loader(dir: &Path) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        let read = |p: &Path| {
            std::fs::read(p)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        if name.starts_with('/') {
            return read(Path::new(name));
        }
        if name.contains('/') || name.is_empty() {
            return None;
        }
        read(&dir.join(name)).or_else(|| {
            (dir == Path::new(PAM_DIR))
                .then(|| read(&Path::new(VENDOR_PAM_DIR).join(name)))
                .flatten()
        })
    }
}

/// What podspawn needs to know about PAM on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamFacts {
    /// sshd's effective UsePAM (`None`: `sshd -T` could not be run).
    pub use_pam: Option<bool>,
    /// The sshd service file, for messages (`/etc/pam.d/sshd`).
    pub service_file: PathBuf,
    /// The session stack of the sshd service (`Err`: its file is unreadable).
    pub session: Result<Vec<Entry>, String>,
    /// The module file found (from the PAM line's path, else the usual locations).
    pub module_file: Option<PathBuf>,
}

impl PamFacts {
    /// The pam_podspawn.so line of sshd's session stack and the lines that may skip it.
    pub fn module(&self) -> Option<(&Entry, Vec<&Entry>)> {
        self.session.as_ref().ok().and_then(|s| find_module(s))
    }

    /// Reads the facts: `pam_dir` holds the service files (/etc/pam.d), `use_pam` from `sshd -T`.
    pub fn read(pam_dir: &Path, use_pam: Option<bool>) -> PamFacts {
        let load = loader(pam_dir);
        let session = stack(SSHD_SERVICE, "session", &load).map_err(|e| e.to_string());
        let written = session
            .as_ref()
            .ok()
            .and_then(|s| find_module(s).map(|(e, _)| e.module.clone()));
        PamFacts {
            use_pam,
            service_file: pam_dir.join(SSHD_SERVICE),
            session,
            module_file: module_file(written.as_deref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(files: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| m.get(n).cloned()
    }

    const DEBIAN_SSHD: &str = "# PAM configuration for the Secure Shell service\n\
        @include common-auth\n\
        account    required     pam_nologin.so\n\
        @include common-account\n\
        session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close\n\
        session    required     pam_loginuid.so\n\
        session    optional     pam_keyinit.so force revoke\n\
        @include common-session\n\
        session    optional     pam_motd.so  motd=/run/motd.dynamic\n\
        session    optional     pam_mail.so standard noenv # [1]\n\
        session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale\n\
        @include common-password\n";

    const DEBIAN_COMMON_SESSION: &str =
        "# here are the per-package modules (the \"Primary\" block)\n\
        session\t[default=1]\t\t\tpam_permit.so\n\
        session\trequisite\t\t\tpam_deny.so\n\
        session\trequired\t\t\tpam_permit.so\n\
        session\trequired\tpam_unix.so \n\
        session\trequired\tpam_podspawn.so\n\
        session\toptional\tpam_systemd.so\n";

    #[test]
    fn debian_at_include() {
        let load = fs(&[
            ("sshd", DEBIAN_SSHD),
            ("common-session", DEBIAN_COMMON_SESSION),
            ("common-auth", "auth required pam_podspawn.so\n"),
        ]);
        let s = stack("sshd", "session", &load).unwrap();
        let mods: Vec<&str> = s.iter().map(|e| e.module.as_str()).collect();
        assert_eq!(
            mods,
            vec![
                "pam_selinux.so",
                "pam_loginuid.so",
                "pam_keyinit.so",
                "pam_permit.so",
                "pam_deny.so",
                "pam_permit.so",
                "pam_unix.so",
                "pam_podspawn.so",
                "pam_systemd.so",
                "pam_motd.so",
                "pam_mail.so",
                "pam_env.so",
            ]
        );
        // The comment after pam_mail.so's arguments is gone.
        assert_eq!(s[10].args, vec!["standard", "noenv"]);
        let (e, skippers) = find_module(&s).unwrap();
        assert_eq!(e.location(), "common-session:6");
        assert_eq!(e.control, Control::Required);
        assert!(e.control.fail_closed());
        // `[default=1] pam_permit.so` jumps over pam_deny.so only.
        assert!(skippers.is_empty(), "{skippers:?}");
        assert_eq!(
            e.describe(),
            "session required pam_podspawn.so (common-session:6)"
        );
        // The auth line is not in the session stack; without common-session nothing is.
        let load = fs(&[("sshd", DEBIAN_SSHD)]);
        assert!(find_module(&stack("sshd", "session", &load).unwrap()).is_none());
        assert_eq!(
            stack("other", "session", &load),
            Err(Error::Missing("other".into()))
        );
    }

    #[test]
    fn fedora_include_and_substack() {
        let sshd = "#%PAM-1.0\nauth       substack     password-auth\n\
                    account    include      password-auth\n\
                    session    required     pam_selinux.so close\n\
                    session    required     pam_namespace.so\n\
                    session    include      password-auth\n\
                    session    include      postlogin\n";
        let password_auth = "auth required pam_env.so\nauth sufficient pam_unix.so\n\
                             session optional pam_keyinit.so revoke\n\
                             session substack podspawn-session\n\
                             -session optional pam_systemd.so\n";
        let sub = "session requisite /usr/lib64/security/pam_podspawn.so debug \
                   [socket=/run/my podspawn.sock]\n";
        let load = fs(&[
            ("sshd", sshd),
            ("password-auth", password_auth),
            ("podspawn-session", sub),
            ("postlogin", "session optional pam_lastlog.so silent\n"),
        ]);
        let s = stack("sshd", "session", &load).unwrap();
        let mods: Vec<&str> = s.iter().map(|e| e.module.as_str()).collect();
        assert_eq!(
            mods,
            vec![
                "pam_selinux.so",
                "pam_namespace.so",
                "pam_keyinit.so",
                "/usr/lib64/security/pam_podspawn.so",
                "pam_systemd.so",
                "pam_lastlog.so"
            ]
        );
        let (e, _) = find_module(&s).unwrap();
        assert_eq!(e.control, Control::Requisite);
        assert_eq!(e.args, vec!["debug", "socket=/run/my podspawn.sock"]);
        assert_eq!(e.scope, vec![1]);
        assert!(s[4].skip_if_missing && s[4].scope.is_empty());
        // Only session lines come from an `include` under `session`; auth lines never do.
        assert!(stack("sshd", "auth", &load)
            .unwrap()
            .iter()
            .all(|e| e.kind == "auth"));
        // Include loops end.
        let load = fs(&[("sshd", "@include sshd\nsession required pam_x.so\n")]);
        assert_eq!(
            stack("sshd", "session", &load).unwrap().len(),
            MAX_DEPTH + 1
        );
    }

    #[test]
    fn controls() {
        let c = |s: &str| Control::parse(s);
        assert!(c("required").fail_closed());
        assert!(c("Requisite").fail_closed());
        assert!(!c("optional").fail_closed());
        assert!(!c("sufficient").fail_closed());
        assert!(!c("include").fail_closed());
        assert!(c("[success=ok default=bad]").fail_closed());
        assert!(c("[success=ok ignore=ignore default=die]").fail_closed());
        assert!(c("[success=1 default=bad]").fail_closed());
        // A failure value that is let through.
        assert!(!c("[success=ok module_unknown=ignore default=bad]").fail_closed());
        assert!(!c("[success=ok default=ignore]").fail_closed());
        assert!(!c("[success=ok]").fail_closed());
        assert_eq!(
            c("[success=OK  default=bad]").text(),
            "[success=ok default=bad]"
        );
    }

    #[test]
    fn continuation_lines_and_skippers() {
        let text = "session \\\n  required \\\n  pam_podspawn.so a\\\n b\n";
        let load = fs(&[("sshd", text)]);
        let s = stack("sshd", "session", &load).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].line, s[0].args.clone()),
            (1, vec!["a".to_string(), "b".into()])
        );

        let text = "session sufficient pam_succeed_if.so user ingroup wheel\n\
                    session [success=3 default=ignore] pam_x.so\n\
                    session [success=1 default=ignore] pam_y.so\n\
                    session optional pam_z.so\n\
                    session required pam_podspawn.so\n";
        let load = fs(&[("sshd", text)]);
        let s = stack("sshd", "session", &load).unwrap();
        let (_, skippers) = find_module(&s).unwrap();
        let lines: Vec<usize> = skippers.iter().map(|e| e.line).collect();
        // pam_y.so's jump lands on pam_podspawn.so: not skipped.
        assert_eq!(lines, vec![1, 2]);

        // A `done` inside a substack before ours only leaves that substack.
        let load = fs(&[
            (
                "sshd",
                "session substack sub\nsession required pam_podspawn.so\n",
            ),
            ("sub", "session [success=done default=ignore] pam_x.so\n"),
        ]);
        let s = stack("sshd", "session", &load).unwrap();
        assert!(find_module(&s).unwrap().1.is_empty());
    }

    #[test]
    fn use_pam_and_candidates() {
        let t = crate::core::sshd_config::parse_sshd_t("port 22\nusepam yes\n");
        assert!(use_pam(&t));
        let t = crate::core::sshd_config::parse_sshd_t("port 22\nusepam no\n");
        assert!(!use_pam(&t));
        assert!(!use_pam(&crate::core::sshd_config::parse_sshd_t(
            "port 22\n"
        )));
        let c = module_path_candidates();
        assert!(c.contains(&PathBuf::from("/usr/lib64/security/pam_podspawn.so")));
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                c[0],
                PathBuf::from("/usr/lib/x86_64-linux-gnu/security/pam_podspawn.so")
            );
        }
        assert_eq!(module_file(Some("/nonexistent/pam_podspawn.so")), None);
    }

    #[test]
    fn loader_reads_a_directory() {
        let t = crate::test_support::TempDir::new("pam-loader");
        t.write("sshd", "session required pam_podspawn.so\n");
        let load = loader(t.path());
        assert!(load("sshd").is_some());
        assert!(load("../sshd").is_none());
        assert!(load("missing").is_none());
        let f = PamFacts::read(t.path(), Some(true));
        assert_eq!(f.module().unwrap().0.line, 1);
        assert_eq!(f.service_file, t.path().join("sshd"));
    }
}
