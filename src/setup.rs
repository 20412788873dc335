//! `podspawn server-setup`: the install-time setup of the packages, for tarball installs (and the
//! package scripts). Idempotent; `--dry-run` prints the plan and changes nothing.
//!
//! 1. Must run as root; `sshd -t -f <config>` must pass before anything is touched.
//! 2. System identities (`podspawn`, `podspawn-users`), podspawn's directories with the modes of
//!    `systemd/tmpfiles.d/podspawn.conf`, the default configuration (root:podspawn 0640) if
//!    missing, and the owner and mode of existing key files (root:podspawn 0640) and state files.
//! 3. sshd: `sshd_config.d/10-podspawn.conf` when the main file has a top-level `Include` that
//!    covers it, otherwise a marked block before the first `Match` of the main file.
//! 4. `sshd -t` again, and the effective settings of a member of podspawn-users with
//!    `sshd -T -C user=…`; any failure restores every sshd file byte for byte.
//! 5. `systemctl reload` only when something changed.
//!
//! sshd semantics this relies on (checked with OpenSSH 9.2): for most keywords sshd keeps the
//! first value it reads, and the values of matching `Match` blocks replace global ones. So a
//! global `AuthorizedKeysCommand` (anywhere, even before the Include, or on the command line with
//! `-o`) does not affect podspawn users, while an earlier `Match` block that matches them
//! (e.g. `Match all` in a `05-…` drop-in) does. The text analysis below mirrors that, and
//! `sshd -T -C user=<member>` is the final word.
use crate::accounts;
use crate::config::Config;
use crate::keys;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// sshd resolves relative `Include` paths against this directory.
pub const SSHD_DIR: &str = "/etc/ssh";
pub const DROPIN_DIR: &str = "sshd_config.d";
pub const DROPIN_NAME: &str = "10-podspawn.conf";
/// The sshd drop-in shipped by the packages (`systemd/sshd/10-podspawn.conf`).
pub const DROPIN_TEMPLATE: &str = include_str!("../systemd/sshd/10-podspawn.conf");
/// The binary path in the shipped units and drop-in.
pub const TEMPLATE_BINARY: &str = "/usr/bin/podspawn";
pub const BLOCK_BEGIN: &str = "# BEGIN podspawn (managed by podspawn server-setup)";
pub const BLOCK_END: &str = "# END podspawn";
/// What follows the binary in podspawn's AuthorizedKeysCommand.
pub const AUTH_KEYS_ARGS: &str = "auth-keys %u %t %k";
/// Where units go on tarball installs (packages put them in /usr/lib/systemd/system).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where the packages install the units.
pub const PACKAGE_UNIT_DIRS: &[&str] = &["/usr/lib/systemd/system", "/lib/systemd/system"];

/// The unit files shared by all packages, embedded for tarball installs.
pub const UNITS: &[(&str, &str)] = &[
    (
        "podspawn.socket",
        include_str!("../systemd/podspawn.socket"),
    ),
    (
        "podspawn.service",
        include_str!("../systemd/podspawn.service"),
    ),
    (
        "podspawn-cleanup.service",
        include_str!("../systemd/podspawn-cleanup.service"),
    ),
    (
        "podspawn-cleanup-once.service",
        include_str!("../systemd/podspawn-cleanup-once.service"),
    ),
    (
        "podspawn-cleanup.timer",
        include_str!("../systemd/podspawn-cleanup.timer"),
    ),
    (
        "podspawn-metrics.socket",
        include_str!("../systemd/podspawn-metrics.socket"),
    ),
    (
        "podspawn-metrics@.service",
        include_str!("../systemd/podspawn-metrics@.service"),
    ),
];

/// Units `server-setup` enables (the packages' presets do the same).
pub const ENABLED_UNITS: &[&str] = &["podspawn.socket", "podspawn-cleanup.service"];

#[derive(Debug, Clone, clap::Args)]
pub struct ServerSetupArgs {
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The main sshd configuration file.
    #[arg(long, value_name = "PATH", default_value = SSHD_CONFIG)]
    pub sshd_config: PathBuf,
    /// systemd unit of sshd to reload (default: ssh or sshd, whichever is active).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// The podspawn binary sshd runs as AuthorizedKeysCommand (default: this executable). Its
    /// path must be root-owned and not group- or world-writable all the way up, or sshd refuses it.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Do not reload sshd (or start units); print how to do it instead.
    #[arg(long)]
    pub no_reload: bool,
    /// Check sshd's effective settings for this account (default: a member of podspawn-users).
    #[arg(long, value_name = "USER")]
    pub probe_user: Option<String>,
    /// Do not install systemd units (by default they are written to /etc/systemd/system and
    /// podspawn.socket and podspawn-cleanup.service enabled, unless a package installed them).
    #[arg(long)]
    pub no_units: bool,
    /// Only bring the registered users (key files) to the state add-user leaves them in:
    /// accounts, podspawn-users, homes, key file owners and modes (see src/reconcile.rs).
    #[arg(long)]
    pub users: bool,
}

impl Default for ServerSetupArgs {
    fn default() -> Self {
        ServerSetupArgs {
            dry_run: false,
            sshd_config: PathBuf::from(SSHD_CONFIG),
            service_name: None,
            binary: None,
            no_reload: false,
            probe_user: None,
            no_units: false,
            users: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sshd_config text (pure).

/// Splits an sshd_config line into its lowercase keyword and its arguments (`Keyword args`,
/// `Keyword=args`, `Keyword = args`); `None` for blank and comment lines.
pub fn directive(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    let keyword = t[..end].to_ascii_lowercase();
    let mut rest = t[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    Some((keyword, rest.to_string()))
}

/// Splits arguments on whitespace, honouring double quotes.
pub fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// glob(3) matching of a whole path: `*`, `?` and `[...]` never match `/`, nor a leading `.` of
/// a path component.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = path.chars().collect();
    glob_rec(&p, &t, true)
}

fn glob_rec(p: &[char], t: &[char], at_start: bool) -> bool {
    let Some(&pc) = p.first() else {
        return t.is_empty();
    };
    let leading_dot = at_start && t.first() == Some(&'.');
    match pc {
        '*' => {
            if leading_dot {
                return false;
            }
            for i in 0..=t.len() {
                if glob_rec(&p[1..], &t[i..], at_start && i == 0) {
                    return true;
                }
                if i < t.len() && t[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !t.is_empty() && t[0] != '/' && !leading_dot && glob_rec(&p[1..], &t[1..], false),
        '[' => match bracket(&p[1..], t.first().copied()) {
            Some((matched, used)) => {
                matched && !leading_dot && glob_rec(&p[1 + used..], &t[1..], false)
            }
            None => t.first() == Some(&'[') && glob_rec(&p[1..], &t[1..], false),
        },
        '\\' if p.len() > 1 => t.first() == Some(&p[1]) && glob_rec(&p[2..], &t[1..], p[1] == '/'),
        c => t.first() == Some(&c) && glob_rec(&p[1..], &t[1..], c == '/'),
    }
}

/// A bracket expression after its `[`: (whether `c` matches, pattern chars used incl. `]`);
/// `None` when it is not closed (then `[` is literal).
fn bracket(p: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            let ok = match c {
                Some(c) if c != '/' => matched != negate,
                _ => false,
            };
            return Some((ok, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if let Some(c) = c {
                if p[i] <= c && c <= p[i + 2] {
                    matched = true;
                }
            }
            i += 3;
        } else {
            if c == Some(p[i]) {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Absolute path of an `Include` argument (relative ones are relative to /etc/ssh, like sshd).
pub fn include_path(arg: &str) -> String {
    if arg.starts_with('/') {
        arg.to_string()
    } else {
        format!("{SSHD_DIR}/{arg}")
    }
}

/// The line (1-based) of a top-level `Include` (before the first `Match`) of the main sshd_config
/// whose pattern covers `target`.
pub fn include_covering(main_text: &str, target: &Path) -> Option<usize> {
    let target = target.to_str()?;
    for (i, line) in main_text.lines().enumerate() {
        let Some((kw, rest)) = directive(line) else {
            continue;
        };
        if kw == "match" {
            break;
        }
        if kw == "include"
            && split_args(&rest)
                .iter()
                .any(|a| glob_match(&include_path(a), target))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Is `binary` usable in an sshd AuthorizedKeysCommand line? (absolute, nothing sshd would split
/// or expand).
pub fn validate_binary_path(binary: &Path) -> Result<String, String> {
    let s = binary
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", binary.display()))?;
    if !s.starts_with('/') {
        return Err(format!(
            "{s} is not an absolute path: sshd needs one for AuthorizedKeysCommand"
        ));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '%' | '\\'))
    {
        return Err(format!(
            "{s:?} contains a space, quote, backslash or %: sshd would split or expand it; \
             install podspawn at a plain path such as /usr/local/bin/podspawn"
        ));
    }
    Ok(s.to_string())
}

/// The drop-in for `binary` (with the default broker socket).
pub fn render_dropin(binary: &str) -> String {
    render_dropin_with(binary, None)
}

/// The spawn command sshd forces for members: `<binary> spawn [--socket <path>]`.
pub fn spawn_command(binary: &str, socket: Option<&str>) -> String {
    match socket {
        Some(s) => format!("{binary} spawn --socket {s}"),
        None => format!("{binary} spawn"),
    }
}

/// The drop-in for `binary`; `socket`: the broker socket when the config moves it (it then goes
/// into the forced command, since spawn runs as the user and cannot read the config).
pub fn render_dropin_with(binary: &str, socket: Option<&str>) -> String {
    DROPIN_TEMPLATE
        .replace(
            &format!("AuthorizedKeysCommand {TEMPLATE_BINARY} auth-keys"),
            &format!("AuthorizedKeysCommand {binary} auth-keys"),
        )
        .replace(
            &format!("ForceCommand {TEMPLATE_BINARY} spawn"),
            &format!("ForceCommand {}", spawn_command(binary, socket)),
        )
}

/// The `--socket` value for the forced command: `None` for the default socket.
pub fn socket_arg(cfg: &Config) -> Result<Option<String>, String> {
    if cfg.broker.socket == Path::new(crate::config::DEFAULT_SOCKET) {
        return Ok(None);
    }
    validate_binary_path(&cfg.broker.socket)
        .map(Some)
        .map_err(|e| format!("broker.socket: {e}"))
}

/// The marked block for a main sshd_config without a suitable Include.
pub fn render_block(binary: &str) -> String {
    render_block_with(binary, None)
}

/// [`render_block`] with a non-default broker socket (see [`render_dropin_with`]).
pub fn render_block_with(binary: &str, socket: Option<&str>) -> String {
    let dropin = render_dropin_with(binary, socket);
    let body: Vec<&str> = dropin
        .lines()
        .skip_while(|l| directive(l).is_none())
        .collect();
    format!(
        "{BLOCK_BEGIN}\n# The settings of {DROPIN_DIR}/{DROPIN_NAME}: this sshd_config has no \
         Include for that directory.\n{}\n{BLOCK_END}\n",
        body.join("\n")
    )
}

fn is_begin(line: &str) -> bool {
    line.trim_end().starts_with("# BEGIN podspawn")
}

fn is_end(line: &str) -> bool {
    line.trim_end() == BLOCK_END
}

/// The 1-based line ranges (BEGIN..=END) of podspawn's marked blocks.
pub fn block_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, line) in text.lines().enumerate() {
        match start {
            None if is_begin(line) => start = Some(i + 1),
            Some(s) if is_end(line) => {
                out.push((s, i + 1));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Removes podspawn's marked blocks; returns the text and whether there were any. A BEGIN line
/// without its END is an error (nothing is guessed).
pub fn remove_block(text: &str) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(text.len());
    let mut inside: Option<usize> = None;
    let mut removed = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if inside.is_none() && is_begin(line) {
            inside = Some(i + 1);
            removed = true;
            continue;
        }
        if inside.is_some() {
            if is_end(line) {
                inside = None;
            }
            continue;
        }
        out.push_str(line);
    }
    if let Some(n) = inside {
        return Err(format!(
            "line {n} starts a podspawn block (\"{BLOCK_BEGIN}\") that has no \"{BLOCK_END}\" \
             line: remove the podspawn lines by hand and run server-setup again"
        ));
    }
    Ok((out, removed))
}

/// Puts `block` before the first `Match` line (or at the end), replacing existing marked blocks.
pub fn insert_block(text: &str, block: &str) -> Result<String, String> {
    let (base, _) = remove_block(text)?;
    let mut out = String::with_capacity(base.len() + block.len() + 1);
    let mut done = false;
    for line in base.split_inclusive('\n') {
        if !done && matches!(directive(line), Some((k, _)) if k == "match") {
            out.push_str(block);
            done = true;
        }
        out.push_str(line);
    }
    if !done {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(block);
    }
    Ok(out)
}

/// `sshd -T` output: keyword → values (repeated keywords such as acceptenv keep every line).
pub fn parse_sshd_t(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        map.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.to_string());
    }
    map
}

/// The binary of a podspawn AuthorizedKeysCommand (`<abs path> auth-keys %u %t %k`).
pub fn podspawn_command(args: &str) -> Option<String> {
    let a = split_args(args);
    if a.len() == 5 && a[0].starts_with('/') && a[1..] == ["auth-keys", "%u", "%t", "%k"] {
        Some(a[0].clone())
    } else {
        None
    }
}

/// Does a Match line's criteria name the group podspawn-users?
pub fn is_podspawn_match(criteria: &str) -> bool {
    let a = split_args(criteria);
    a.windows(2).any(|w| {
        w[0].eq_ignore_ascii_case("group") && w[1].split(',').any(|g| g == accounts::USERS_GROUP)
    })
}

/// One directive of the flattened configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// Lowercase.
    pub keyword: String,
    pub args: String,
    /// The criteria of the Match block it is in (`None`: global).
    pub context: Option<String>,
    /// The line as written (trimmed).
    pub text: String,
}

impl Directive {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// `file:line: Keyword args (in "Match …")` for messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{}: {}", self.location(), self.text);
        if let Some(c) = &self.context {
            s.push_str(&format!(" (in \"Match {c}\")"));
        }
        s
    }
}

/// Where the configuration text comes from (the real file system, or a test's map).
pub trait ConfigSource {
    fn read(&self, path: &Path) -> Option<String>;
    /// Paths matching a glob pattern, sorted like glob(3).
    fn glob(&self, pattern: &str) -> Vec<PathBuf>;
}

/// The real file system.
pub struct RealFs;

impl ConfigSource for RealFs {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        glob_paths(pattern)
    }
}

/// The real file system with some files replaced (for a plan's would-be configuration).
pub struct Overlay<'a> {
    pub base: &'a dyn ConfigSource,
    pub files: BTreeMap<PathBuf, String>,
}

impl ConfigSource for Overlay<'_> {
    fn read(&self, path: &Path) -> Option<String> {
        self.files
            .get(path)
            .cloned()
            .or_else(|| self.base.read(path))
    }
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let mut v = self.base.glob(pattern);
        for p in self.files.keys() {
            if p.to_str().is_some_and(|s| glob_match(pattern, s)) && !v.contains(p) {
                v.push(p.clone());
            }
        }
        v.sort();
        v
    }
}

/// Expands an absolute glob pattern against the file system, sorted.
pub fn glob_paths(pattern: &str) -> Vec<PathBuf> {
    if !pattern.starts_with('/') {
        return Vec::new();
    }
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = vec![PathBuf::from("/")];
    for c in comps {
        let wild = c.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for base in &cur {
            if !wild {
                next.push(base.join(c));
                continue;
            }
            let Ok(rd) = std::fs::read_dir(base) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| glob_match(c, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        cur = next;
    }
    cur.retain(|p| p.exists());
    cur.sort();
    cur
}

/// The configuration as sshd reads it: directives in order, Includes expanded in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flat {
    pub directives: Vec<Directive>,
    /// Every file read, main file first.
    pub files: Vec<PathBuf>,
}

/// Reads `main` and its Includes (a Match inside an included file ends with that file).
pub fn flatten(main: &Path, src: &dyn ConfigSource) -> Result<Flat, String> {
    let text = src
        .read(main)
        .ok_or_else(|| format!("cannot read {}", main.display()))?;
    let mut flat = Flat::default();
    walk(main, &text, None, src, &mut flat, 0);
    Ok(flat)
}

fn walk(
    file: &Path,
    text: &str,
    ctx: Option<String>,
    src: &dyn ConfigSource,
    flat: &mut Flat,
    depth: usize,
) {
    flat.files.push(file.to_path_buf());
    let mut ctx = ctx;
    for (i, line) in text.lines().enumerate() {
        let Some((keyword, args)) = directive(line) else {
            continue;
        };
        if keyword == "match" {
            ctx = Some(args.clone());
        }
        let include = keyword == "include";
        flat.directives.push(Directive {
            file: file.to_path_buf(),
            line: i + 1,
            keyword,
            args: args.clone(),
            context: ctx.clone(),
            text: line.trim().to_string(),
        });
        if include && depth < 16 {
            for a in split_args(&args) {
                for p in src.glob(&include_path(&a)) {
                    if let Some(t) = src.read(&p) {
                        walk(&p, &t, ctx.clone(), src, flat, depth + 1);
                    }
                }
            }
        }
    }
}

/// Keywords whose earlier values (in a Match block that matches podspawn users) win over ours
/// and break podspawn.
pub const CRITICAL_KEYWORDS: &[&str] = &[
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedkeysfile",
];

/// What in the configuration competes with podspawn's block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowReport {
    /// podspawn's AuthorizedKeysCommand in its managed block.
    pub ours: Option<Directive>,
    /// Critical settings in other Match blocks read before ours: they win for podspawn users
    /// whom they match.
    pub earlier_match: Vec<Directive>,
    /// Global AuthorizedKeysCommand lines: they apply to everyone else only.
    pub global: Vec<Directive>,
}

impl ShadowReport {
    /// Earlier `Match all` settings: they certainly shadow ours.
    pub fn definite(&self) -> Vec<&Directive> {
        self.earlier_match
            .iter()
            .filter(|d| {
                d.context
                    .as_deref()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("all"))
            })
            .collect()
    }
}

/// Finds what may shadow podspawn's settings; `managed` says which directives are podspawn's own.
pub fn analyze(directives: &[Directive], managed: &dyn Fn(&Directive) -> bool) -> ShadowReport {
    let ours_idx = directives.iter().position(|d| {
        managed(d)
            && d.keyword == "authorizedkeyscommand"
            && d.context.as_deref().is_some_and(is_podspawn_match)
    });
    let limit = ours_idx.unwrap_or(directives.len());
    ShadowReport {
        ours: ours_idx.map(|i| directives[i].clone()),
        earlier_match: directives[..limit]
            .iter()
            .filter(|d| {
                d.context.is_some()
                    && CRITICAL_KEYWORDS.contains(&d.keyword.as_str())
                    && !managed(d)
            })
            .cloned()
            .collect(),
        global: directives
            .iter()
            .filter(|d| d.context.is_none() && d.keyword == "authorizedkeyscommand")
            .cloned()
            .collect(),
    }
}

/// A directive is podspawn's when it is in the drop-in or inside a marked block of `main`.
pub fn managed_predicate(
    dropin: PathBuf,
    main: PathBuf,
    blocks: Vec<(usize, usize)>,
) -> impl Fn(&Directive) -> bool {
    move |d: &Directive| {
        d.file == dropin
            || (d.file == main && blocks.iter().any(|&(a, b)| d.line >= a && d.line <= b))
    }
}

/// An effective setting that differs from podspawn's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub keyword: String,
    pub expected: String,
    pub actual: String,
    /// Logins break (or bypass the forced command) without it.
    pub required: bool,
}

/// Is `cmd` a podspawn forced command (`<abs path>/podspawn* spawn [--socket <abs path>]`)?
pub fn is_podspawn_spawn(cmd: &str) -> bool {
    let a = split_args(cmd);
    let named = |p: &str| {
        p.starts_with('/')
            && Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("podspawn"))
    };
    match a.as_slice() {
        [bin, sub] => named(bin) && sub == "spawn",
        [bin, sub, flag, path] => {
            named(bin) && sub == "spawn" && flag == "--socket" && path.starts_with('/')
        }
        _ => false,
    }
}

/// The authentication and confinement settings of podspawn's Match block that are not about keys:
/// (sshd -T keyword, value, whether a missing keyword is fine). GSSAPI is absent from `sshd -T`
/// when sshd is built without it, and then nobody can use it.
pub const CONFINEMENT: &[(&str, &str, bool)] = &[
    ("authenticationmethods", "publickey", false),
    ("pubkeyauthentication", "yes", false),
    ("passwordauthentication", "no", false),
    ("kbdinteractiveauthentication", "no", false),
    ("gssapiauthentication", "no", true),
    ("hostbasedauthentication", "no", false),
];

/// Compares `sshd -T -C user=<member>` output with podspawn's settings. `spawn`: the expected
/// ForceCommand and `binary` the expected AuthorizedKeysCommand binary (`None`: any absolute path
/// named podspawn*).
pub fn effective_mismatches(
    t: &BTreeMap<String, Vec<String>>,
    spawn: Option<&str>,
    binary: Option<&str>,
) -> Vec<Mismatch> {
    let get = |k: &str| {
        t.get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| "(unset)".to_string())
    };
    let mut out = Vec::new();
    let akc = get("authorizedkeyscommand");
    let akc_ok = match binary {
        Some(b) => akc == format!("{b} {AUTH_KEYS_ARGS}"),
        None => podspawn_command(&akc).is_some_and(|b| {
            Path::new(&b)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("podspawn"))
        }),
    };
    if !akc_ok {
        out.push(Mismatch {
            keyword: "authorizedkeyscommand".into(),
            expected: format!("{} {AUTH_KEYS_ARGS}", binary.unwrap_or("/…/podspawn")),
            actual: akc,
            required: true,
        });
    }
    let fc = get("forcecommand");
    let fc_ok = match spawn {
        Some(s) => split_args(&fc) == split_args(s),
        None => is_podspawn_spawn(&fc),
    };
    if !fc_ok {
        out.push(Mismatch {
            keyword: "forcecommand".into(),
            expected: spawn.unwrap_or("/…/podspawn spawn").to_string(),
            actual: fc,
            required: true,
        });
    }
    for &(k, want, may_be_missing) in CONFINEMENT {
        let got = get(k);
        let absent_ok = may_be_missing && !t.contains_key(k);
        if got != want && !absent_ok {
            out.push(Mismatch {
                keyword: k.into(),
                expected: want.into(),
                actual: got,
                required: true,
            });
        }
    }
    for (k, want, required) in [
        ("authorizedkeyscommanduser", accounts::SYSTEM_USER, true),
        ("authorizedkeysfile", "none", true),
        ("permituserrc", "no", true),
        ("allowstreamlocalforwarding", "no", true),
        ("allowtcpforwarding", "no", true),
        ("x11forwarding", "no", true),
        ("permittunnel", "no", true),
    ] {
        let got = get(k);
        if got != want {
            out.push(Mismatch {
                keyword: k.into(),
                expected: want.into(),
                actual: got,
                required,
            });
        }
    }
    let env = t.get("acceptenv").cloned().unwrap_or_default();
    if !env
        .iter()
        .flat_map(|v| v.split_whitespace())
        .any(|v| v == "PODSPAWN_PROJECT")
    {
        out.push(Mismatch {
            keyword: "acceptenv".into(),
            expected: "PODSPAWN_PROJECT LANG LC_*".into(),
            actual: if env.is_empty() {
                "(unset)".into()
            } else {
                env.join(" ")
            },
            required: false,
        });
    }
    out
}

/// Explains mismatches, naming the lines that probably cause them.
pub fn explain_mismatches(mismatches: &[Mismatch], report: &ShadowReport) -> String {
    let mut s = String::new();
    for m in mismatches {
        s.push_str(&format!(
            "\n  {}: effective \"{}\", podspawn needs \"{}\"",
            m.keyword, m.actual, m.expected
        ));
        let culprits: Vec<&Directive> = report
            .earlier_match
            .iter()
            .filter(|d| d.keyword == m.keyword)
            .collect();
        let exact: Vec<&&Directive> = culprits
            .iter()
            .filter(|d| split_args(&d.args) == split_args(&m.actual))
            .collect();
        let shown: Vec<&Directive> = if exact.is_empty() {
            culprits
        } else {
            exact.into_iter().copied().collect()
        };
        for d in shown {
            s.push_str(&format!("\n    set first by {}", d.describe()));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The AuthorizedKeysCommand binary: sshd's safe_path() rules.

/// One element of a path chain (the file first, then each parent up to /).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    pub path: PathBuf,
    pub uid: u32,
    pub mode: u32,
    pub is_file: bool,
}

/// A path-chain problem and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub detail: String,
    pub fix: String,
}

/// The resolved file and its parents, as sshd checks them (it resolves symlinks first).
pub fn path_chain(path: &Path) -> Result<Vec<PathEntry>, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut cur = Some(real.as_path());
    while let Some(p) = cur {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(PathEntry {
            path: p.to_path_buf(),
            uid: m.uid(),
            mode: m.mode(),
            is_file: m.is_file(),
        });
        cur = p.parent();
    }
    Ok(out)
}

/// sshd runs an AuthorizedKeysCommand only if it is a regular executable file and it and every
/// directory above it are owned by root and not group- or world-writable.
pub fn check_chain(entries: &[PathEntry]) -> Result<(), ChainProblem> {
    let Some(file) = entries.first() else {
        return Err(ChainProblem {
            detail: "empty path".into(),
            fix: "sudo podspawn server-setup".into(),
        });
    };
    let fp = file.path.display();
    if !file.is_file {
        return Err(ChainProblem {
            detail: format!("{fp} is not a regular file"),
            fix: format!("install the podspawn binary at {fp} (or run: sudo podspawn server-setup --binary PATH)"),
        });
    }
    if file.mode & 0o111 == 0 {
        return Err(ChainProblem {
            detail: format!("{fp} is not executable (mode {:04o})", file.mode & 0o7777),
            fix: format!("sudo chmod 0755 {fp}"),
        });
    }
    for e in entries {
        let p = e.path.display();
        if e.uid != 0 {
            return Err(ChainProblem {
                detail: format!(
                    "{p} is owned by uid {}, not root, so sshd refuses the command (\"Unsafe \
                     AuthorizedKeysCommand\")",
                    e.uid
                ),
                fix: format!("sudo chown root {p}"),
            });
        }
        if e.mode & 0o022 != 0 {
            return Err(ChainProblem {
                detail: format!(
                    "{p} is group- or world-writable (mode {:04o}), so sshd refuses the command \
                     (\"Unsafe AuthorizedKeysCommand\")",
                    e.mode & 0o7777
                ),
                fix: format!("sudo chmod go-w {p}"),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running sshd and systemctl.

/// The sshd binary.
pub fn find_sshd() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("sshd"))
        .find(|p| p.is_file())
}

fn sshd_or_err() -> Result<PathBuf, String> {
    find_sshd().ok_or_else(|| {
        "sshd not found: install the OpenSSH server (Debian/Ubuntu: openssh-server, \
         Fedora/RHEL: openssh-server)"
            .to_string()
    })
}

fn output_text(out: &std::process::Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if e.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        e
    }
}

/// `sshd -t -f <config>`.
pub fn sshd_test(sshd: &Path, config: &Path) -> Result<(), String> {
    let out = Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", sshd.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(output_text(&out))
    }
}

/// `sshd -T -f <config> [-C user=<user>,host=localhost,addr=127.0.0.1]`.
pub fn sshd_dump(sshd: &Path, config: &Path, user: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(sshd);
    cmd.arg("-T").arg("-f").arg(config);
    if let Some(u) = user {
        cmd.arg("-C")
            .arg(format!("user={u},host=localhost,addr=127.0.0.1"));
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", sshd.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(output_text(&out))
    }
}

/// An existing account in podspawn-users (supplementary members first, then primary ones).
pub fn podspawn_member() -> Option<String> {
    let g = uzers::get_group_by_name(accounts::USERS_GROUP)?;
    use uzers::os::unix::GroupExt;
    let mut members: Vec<String> = g
        .members()
        .iter()
        .filter_map(|m| m.to_str().map(str::to_string))
        .collect();
    members.sort();
    if let Some(m) = members.into_iter().find(|m| accounts::lookup(m).is_some()) {
        return Some(m);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let gid = g.gid().to_string();
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[3] == gid).then(|| f[0].to_string())
    })
}

/// Is systemd the init system (sd_booted)?
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl is-active <unit>` state (`None` when systemctl cannot be run).
pub fn unit_state(unit: &str) -> Option<String> {
    let out = Command::new("systemctl")
        .args(["is-active", unit])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The active sshd unit: `ssh` (Debian/Ubuntu) or `sshd` (Fedora/RHEL/Arch).
pub fn detect_ssh_service() -> Option<String> {
    ["ssh", "sshd"]
        .into_iter()
        .find(|s| unit_state(&format!("{s}.service")).as_deref() == Some("active"))
        .map(str::to_string)
}

/// How to reload sshd when server-setup cannot.
pub fn reload_hint(service: Option<&str>, pidfile: Option<&str>) -> String {
    if systemd_running() {
        format!("sudo systemctl reload {}", service.unwrap_or("ssh"))
    } else {
        format!(
            "sudo kill -HUP $(cat {})",
            pidfile.unwrap_or("/run/sshd.pid")
        )
    }
}

fn run_systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`systemctl {}` failed: {}",
            args.join(" "),
            output_text(&out)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// File system part.

/// Directories never re-owned or re-moded, even if the configuration points there.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/etc",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/var/run",
    "/var/cache",
    "/run",
    "/tmp",
    "/usr",
    "/usr/local",
    "/home",
    "/root",
    "/opt",
    "/srv",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
];

/// The directories podspawn owns, from the configuration: (path, group, mode). The same modes
/// as systemd/tmpfiles.d/podspawn.conf.
pub fn wanted_dirs(cfg: &Config) -> Vec<(PathBuf, &'static str, u32)> {
    let root = "root";
    let sys = accounts::SYSTEM_USER;
    let parent = |p: &Path| p.parent().map(Path::to_path_buf);
    let mut v: Vec<(PathBuf, &'static str, u32)> = Vec::new();
    if let Some(d) = parent(&cfg.path) {
        v.push((d, root, 0o755));
    }
    v.push((cfg.auth.key_dir.clone(), sys, 0o750));
    v.push((cfg.users_dir.clone(), root, 0o755));
    if let Some(d) = parent(&cfg.state.db_path) {
        v.push((d, root, 0o700));
    }
    v.push((cfg.state.lock_dir.clone(), root, 0o700));
    v.push((cfg.state.homes_dir.clone(), root, 0o711));
    if let Some(d) = parent(&cfg.broker.socket) {
        v.push((d, root, 0o755));
    }
    let logs: Vec<PathBuf> = [&cfg.log.file, &cfg.log.audit_log]
        .into_iter()
        .flatten()
        .filter(|p| !p.as_os_str().is_empty())
        .filter_map(|p| parent(p))
        .collect();
    if logs.is_empty() {
        v.push((PathBuf::from("/var/log/podspawn"), root, 0o750));
    }
    for d in logs {
        v.push((d, root, 0o750));
    }
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|(p, _, _)| {
        p.is_absolute()
            && !SYSTEM_DIRS.contains(&p.to_str().unwrap_or("/"))
            && seen.insert(p.clone())
    });
    v
}

/// Collects what was (or would be) done.
struct Log<'a> {
    out: &'a mut dyn Write,
    dry: bool,
    changes: Vec<String>,
    notes: Vec<String>,
}

impl Log<'_> {
    fn change(&mut self, what: String) {
        let _ = writeln!(self.out, "  {}{what}", if self.dry { "would " } else { "" });
        self.changes.push(what);
    }
    fn note(&mut self, what: String) {
        let _ = writeln!(self.out, "  note: {what}");
        self.notes.push(what);
    }
}

fn ensure_dir_step(
    log: &mut Log,
    path: &Path,
    group: &str,
    gid: Option<u32>,
    mode: u32,
) -> Result<(), String> {
    let desc = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("create {} (root:{group} {mode:04o})", path.display())
        }
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{} is a symlink: replace it with a real directory and run server-setup again",
                path.display()
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "{} exists but is not a directory: move it away and run server-setup again",
                path.display()
            ))
        }
        Ok(m) => {
            if m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == mode {
                return Ok(());
            }
            format!(
                "change {} from {} {:04o} to root:{group} {mode:04o}",
                path.display(),
                crate::accounts::owner_text(m.uid(), m.gid()),
                m.mode() & 0o7777
            )
        }
    };
    if !log.dry {
        let gid = gid.ok_or_else(|| format!("group {group} does not exist"))?;
        keys::ensure_dir(path, 0, gid, mode)?;
    }
    log.change(desc);
    Ok(())
}

/// Fixes the owner and mode of an existing regular file (symlinks and others are only reported).
fn fix_file_step(
    log: &mut Log,
    path: &Path,
    group: &str,
    gid: Option<u32>,
    mode: u32,
    what: &str,
) -> Result<(), String> {
    let m = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) => m,
    };
    if m.file_type().is_symlink() {
        log.note(format!(
            "{what} {} is a symlink, which podspawn refuses: replace it with a regular file \
             (root:{group} {mode:04o})",
            path.display()
        ));
        return Ok(());
    }
    if !m.is_file() {
        log.note(format!(
            "{what} {} is not a regular file: remove it",
            path.display()
        ));
        return Ok(());
    }
    if m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == mode {
        return Ok(());
    }
    let desc = format!(
        "change {what} {} from {} {:04o} to root:{group} {mode:04o}",
        path.display(),
        crate::accounts::owner_text(m.uid(), m.gid()),
        m.mode() & 0o7777
    );
    if !log.dry {
        let gid = gid.ok_or_else(|| format!("group {group} does not exist"))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        std::os::unix::fs::fchown(&f, Some(0), Some(gid))
            .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    log.change(desc);
    Ok(())
}

fn filesystem_steps(cfg: &Config, log: &mut Log) -> Result<(), String> {
    // System identities.
    let mut missing = Vec::new();
    if accounts::group_gid(accounts::SYSTEM_USER).is_none() {
        missing.push(format!("group {}", accounts::SYSTEM_USER));
    }
    if accounts::lookup(accounts::SYSTEM_USER).is_none() {
        missing.push(format!("system user {}", accounts::SYSTEM_USER));
    }
    if accounts::group_gid(accounts::USERS_GROUP).is_none() {
        missing.push(format!("group {}", accounts::USERS_GROUP));
    }
    if !log.dry {
        accounts::ensure_system_identities()?;
    }
    if !missing.is_empty() {
        log.change(format!("create {}", missing.join(", ")));
    }
    let gid_of = |g: &str| {
        if g == "root" {
            Some(0)
        } else {
            accounts::group_gid(g)
        }
    };

    // Directories.
    let wanted = wanted_dirs(cfg);
    for (path, group, mode) in &wanted {
        ensure_dir_step(log, path, group, gid_of(group), *mode)?;
    }
    if let Some(d) = cfg.path.parent() {
        if !wanted.iter().any(|(p, _, _)| p == d) && !d.exists() {
            log.change(format!("create {} (root:root 0755)", d.display()));
            if !log.dry {
                keys::ensure_dir(d, 0, 0, 0o755)?;
            }
        }
    }

    // The configuration: auth-keys runs as the podspawn user and must be able to read it.
    let sys = accounts::SYSTEM_USER;
    let sys_gid = gid_of(sys);
    match std::fs::symlink_metadata(&cfg.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !log.dry {
                let gid = sys_gid.ok_or_else(|| format!("group {sys} does not exist"))?;
                keys::write_file_atomic(
                    &cfg.path,
                    crate::config::default_config_yaml().as_bytes(),
                    0,
                    gid,
                    0o640,
                )?;
            }
            log.change(format!(
                "write the default configuration {} (root:{sys} 0640)",
                cfg.path.display()
            ));
        }
        Err(e) => return Err(format!("cannot stat {}: {e}", cfg.path.display())),
        Ok(_) => fix_file_step(log, &cfg.path, sys, sys_gid, 0o640, "configuration")?,
    }

    // Key files.
    if let Ok(rd) = std::fs::read_dir(&cfg.auth.key_dir) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            fix_file_step(log, &p, sys, sys_gid, 0o640, "key file")?;
        }
    }

    // State database (the broker creates it 0600; fix what an older install left).
    for suffix in ["", "-wal", "-shm"] {
        let mut p = cfg.state.db_path.clone().into_os_string();
        p.push(suffix);
        fix_file_step(log, Path::new(&p), "root", Some(0), 0o600, "state file")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// sshd files: planned changes, backups, rollback.

/// A file server-setup writes.
#[derive(Debug, Clone)]
struct FileChange {
    path: PathBuf,
    /// Previous bytes, owner and mode (`None`: the file is new).
    old: Existing,
    new: Vec<u8>,
    /// Owner and mode of the new file.
    uid: u32,
    gid: u32,
    mode: u32,
    what: String,
}

/// A file's bytes, owner and mode (`None`: it does not exist).
type Existing = Option<(Vec<u8>, u32, u32, u32)>;

fn read_existing(path: &Path) -> Result<Existing, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symlink: server-setup only edits regular files; edit it by hand or \
             replace the symlink with a copy",
            path.display()
        )),
        Ok(m) => {
            let b =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Some((b, m.uid(), m.gid(), m.mode() & 0o7777)))
        }
    }
}

/// Plans a write of `new` to `path` (with a backup of a changed existing file); nothing if equal.
fn plan_write(
    changes: &mut Vec<FileChange>,
    path: &Path,
    new: String,
    backup_dir: &Path,
    what: &str,
) -> Result<(), String> {
    let old = read_existing(path)?;
    if let Some((bytes, uid, gid, mode)) = old.clone() {
        if bytes == new.as_bytes() {
            return Ok(());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bak = backup_dir.join(format!("{name}.podspawn.bak"));
        changes.push(FileChange {
            old: read_existing(&bak)?,
            path: bak,
            new: bytes,
            uid,
            gid,
            mode,
            what: format!("back up {}", path.display()),
        });
        changes.push(FileChange {
            path: path.to_path_buf(),
            old,
            new: new.into_bytes(),
            uid,
            gid,
            mode,
            what: what.to_string(),
        });
    } else {
        changes.push(FileChange {
            path: path.to_path_buf(),
            old: None,
            new: new.into_bytes(),
            uid: 0,
            gid: 0,
            mode: 0o644,
            what: what.to_string(),
        });
    }
    Ok(())
}

fn apply_changes(changes: &[FileChange]) -> (usize, Result<(), String>) {
    for (i, c) in changes.iter().enumerate() {
        if let Err(e) = keys::write_file_atomic(&c.path, &c.new, c.uid, c.gid, c.mode) {
            return (i, Err(e));
        }
    }
    (changes.len(), Ok(()))
}

/// Undoes the first `n` changes, last first; returns what was restored and what could not be.
fn rollback(changes: &[FileChange], n: usize, created_dir: Option<&Path>) -> Vec<String> {
    let mut msgs = Vec::new();
    for c in changes[..n].iter().rev() {
        let r = match &c.old {
            Some((bytes, uid, gid, mode)) => {
                keys::write_file_atomic(&c.path, bytes, *uid, *gid, *mode)
                    .map(|_| format!("restored {}", c.path.display()))
            }
            None => std::fs::remove_file(&c.path)
                .map(|_| format!("removed {}", c.path.display()))
                .map_err(|e| format!("cannot remove {}: {e}", c.path.display())),
        };
        msgs.push(r.unwrap_or_else(|e| format!("FAILED to restore: {e}")));
    }
    if let Some(d) = created_dir {
        if std::fs::remove_dir(d).is_ok() {
            msgs.push(format!("removed {}", d.display()));
        }
    }
    msgs
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// Every change made (or, with --dry-run, planned), in order.
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    /// An sshd file was written.
    pub sshd_changed: bool,
    /// How sshd's settings reach podspawn users: the drop-in path or the main file.
    pub sshd_target: PathBuf,
    /// The account whose effective settings were checked with `sshd -T -C`.
    pub probed_user: Option<String>,
    pub reloaded: bool,
}

/// `podspawn server-setup`.
pub fn server_setup(cfg: &Config, args: &ServerSetupArgs) -> Result<(), String> {
    let mut out = std::io::stdout();
    if args.users {
        return users_only(cfg, args.dry_run, &mut out);
    }
    run(cfg, args, &mut out).map(|_| ())
}

/// `server-setup --users`: only the registered users.
pub fn users_only(cfg: &Config, dry_run: bool, out: &mut dyn Write) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "server-setup --users changes accounts and /etc/podspawn: run it with sudo".into(),
        );
    }
    let opts = crate::reconcile::Options {
        dry_run,
        prefix: "podspawn: ",
        identities: true,
    };
    let report = crate::reconcile::reconcile(cfg, opts, out);
    users_result(&report)
}

fn users_result(report: &crate::reconcile::Report) -> Result<(), String> {
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} change(s) to registered users could not be applied (listed above); the rest was \
             done",
            report.problems.len()
        ))
    }
}

/// The binary to configure: `--binary` or this executable; checked like sshd checks it.
pub fn choose_binary(arg: Option<&Path>) -> Result<String, String> {
    let path = match arg {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find this executable: {e}; pass --binary PATH"))?;
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.starts_with("podspawn") {
                return Err(format!(
                    "this executable ({}) does not look like podspawn; pass --binary PATH",
                    exe.display()
                ));
            }
            exe
        }
    };
    let s = validate_binary_path(&path)?;
    let chain = path_chain(&path).map_err(|e| format!("cannot use {s} as the binary: {e}"))?;
    check_chain(&chain).map_err(|p| {
        format!(
            "cannot use {s} as sshd's AuthorizedKeysCommand: {}; fix: {} (or install podspawn \
             under /usr/local/bin and pass --binary)",
            p.detail, p.fix
        )
    })?;
    Ok(s)
}

/// Does the work of `server-setup`, printing to `out`.
pub fn run(
    cfg: &Config,
    args: &ServerSetupArgs,
    out: &mut dyn Write,
) -> Result<SetupReport, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "server-setup changes accounts, /etc/podspawn and sshd's configuration: run it with \
             sudo"
                .into(),
        );
    }
    let binary = choose_binary(args.binary.as_deref())?;
    let socket = socket_arg(cfg)?;
    let config = &args.sshd_config;
    if !config.is_absolute() {
        return Err(format!(
            "--sshd-config {} must be an absolute path",
            config.display()
        ));
    }
    if let Some(u) = &args.probe_user {
        if accounts::lookup(u).is_none() {
            return Err(format!("--probe-user {u}: no such account"));
        }
        if !accounts::is_member(u, accounts::USERS_GROUP) {
            return Err(format!(
                "--probe-user {u} is not in {}, so it says nothing about podspawn's settings",
                accounts::USERS_GROUP
            ));
        }
    }
    let sshd = sshd_or_err()?;
    sshd_test(&sshd, config).map_err(|e| {
        format!(
            "the current sshd configuration is invalid, so nothing was changed (`{} -t -f {}`): \
             {e}",
            sshd.display(),
            config.display()
        )
    })?;

    let dry = args.dry_run;
    if dry {
        let _ = writeln!(out, "server-setup --dry-run: nothing is changed");
    }
    let mut log = Log {
        out,
        dry,
        changes: Vec::new(),
        notes: Vec::new(),
    };
    let _ = writeln!(log.out, "podspawn files and accounts:");
    filesystem_steps(cfg, &mut log)?;
    let _ = writeln!(log.out, "registered users:");
    let users = crate::reconcile::reconcile(
        cfg,
        crate::reconcile::Options {
            dry_run: dry,
            prefix: "  ",
            identities: false,
        },
        log.out,
    );
    log.changes.extend(users.changes.iter().cloned());
    log.notes.extend(users.left.iter().cloned());
    log.notes.extend(users.problems.iter().cloned());

    // sshd.
    let _ = writeln!(log.out, "sshd ({}):", config.display());
    let config_dir = config.parent().unwrap_or(Path::new("/")).to_path_buf();
    let dropin_dir = config_dir.join(DROPIN_DIR);
    let dropin = dropin_dir.join(DROPIN_NAME);
    let main_text = match read_existing(config)? {
        Some((b, ..)) => {
            String::from_utf8(b).map_err(|_| format!("{} is not valid UTF-8", config.display()))?
        }
        None => return Err(format!("{} does not exist", config.display())),
    };
    let (without_block, _) =
        remove_block(&main_text).map_err(|e| format!("{}: {e}", config.display()))?;
    let covering = include_covering(&without_block, &dropin);
    let mut changes = Vec::new();
    let mut created_dir = None;
    let target = if let Some(line) = covering {
        let _ = writeln!(
            log.out,
            "  {}:{line} includes {}",
            config.display(),
            dropin.display()
        );
        if !dropin_dir.exists() {
            created_dir = Some(dropin_dir.clone());
        }
        plan_write(
            &mut changes,
            &dropin,
            render_dropin_with(&binary, socket.as_deref()),
            &config_dir,
            &format!("write {}", dropin.display()),
        )?;
        plan_write(
            &mut changes,
            config,
            without_block,
            &config_dir,
            &format!(
                "remove the old podspawn block from {} (the drop-in replaces it)",
                config.display()
            ),
        )?;
        dropin.clone()
    } else {
        let new = insert_block(&main_text, &render_block_with(&binary, socket.as_deref()))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        plan_write(
            &mut changes,
            config,
            new,
            &config_dir,
            &format!(
                "write podspawn's block into {} (before its first Match; it has no Include for \
                 {})",
                config.display(),
                dropin_dir.display()
            ),
        )?;
        config.clone()
    };
    for c in &changes {
        log.change(c.what.clone());
    }
    let sshd_changed = !changes.is_empty();

    let mut report = SetupReport {
        sshd_changed,
        sshd_target: target.clone(),
        ..SetupReport::default()
    };

    if dry {
        if let Some(c) = changes.iter().find(|c| c.path == target) {
            let text = String::from_utf8_lossy(&c.new);
            if target == dropin {
                let _ = writeln!(log.out, "  --- {} ---\n{text}  ---", dropin.display());
            } else {
                let _ = writeln!(
                    log.out,
                    "  --- block ---\n{}  ---",
                    render_block_with(&binary, socket.as_deref())
                );
            }
        }
        let overlay = Overlay {
            base: &RealFs,
            files: changes
                .iter()
                .map(|c| (c.path.clone(), String::from_utf8_lossy(&c.new).into_owned()))
                .collect(),
        };
        let new_main = overlay.read(config).unwrap_or_default();
        let flat = flatten(config, &overlay)?;
        let managed = managed_predicate(dropin.clone(), config.clone(), block_ranges(&new_main));
        let rep = analyze(&flat.directives, &managed);
        if rep.ours.is_none() {
            log.note("sshd would not read podspawn's settings (check the Include lines)".into());
        }
        for d in rep.definite() {
            log.note(format!(
                "would fail: {} shadows podspawn's AuthorizedKeysCommand",
                d.describe()
            ));
        }
        if sshd_changed {
            log.change(format!(
                "reload sshd ({})",
                args.service_name.as_deref().unwrap_or("ssh or sshd")
            ));
        }
        units_step(&mut log, &binary, args)?;
        report.changes = log.changes;
        report.notes = log.notes;
        return Ok(report);
    }

    // Apply, validate, roll back on any failure.
    if let Some(d) = &created_dir {
        keys::ensure_dir(d, 0, 0, 0o755)?;
    }
    let (n, applied) = apply_changes(&changes);
    let verdict = applied.and_then(|()| {
        verify(
            &sshd,
            config,
            &dropin,
            &binary,
            socket.as_deref(),
            args,
            &mut log,
        )
    });
    match verdict {
        Ok(probed) => report.probed_user = probed,
        Err(e) => {
            if n == 0 && created_dir.is_none() {
                return Err(format!("{e}\n(no sshd file was changed by this run)"));
            }
            let msgs = rollback(&changes, n, created_dir.as_deref());
            return Err(format!(
                "{e}\nrolled back every sshd file to what it was before:\n  {}",
                msgs.join("\n  ")
            ));
        }
    }

    // Reload.
    if sshd_changed {
        let pidfile = sshd_dump(&sshd, config, None).ok().and_then(|t| {
            parse_sshd_t(&t)
                .get("pidfile")
                .and_then(|v| v.first().cloned())
        });
        let service = args.service_name.clone().or_else(detect_ssh_service);
        if args.no_reload {
            log.note(format!(
                "sshd was not reloaded (--no-reload): the changes apply after `{}`",
                reload_hint(service.as_deref(), pidfile.as_deref())
            ));
        } else if !systemd_running() {
            log.note(format!(
                "systemd is not running, so sshd was not reloaded: run `{}`",
                reload_hint(None, pidfile.as_deref())
            ));
        } else if let Some(svc) = service {
            run_systemctl(&["reload", &svc]).map_err(|e| {
                format!(
                    "the sshd configuration is written and valid, but reloading failed: {e}; \
                     reload it yourself: sudo systemctl reload {svc}"
                )
            })?;
            log.change(format!("reload {svc}"));
            report.reloaded = true;
        } else {
            log.note(
                "neither ssh.service nor sshd.service is active: the settings apply when sshd \
                 starts (sudo systemctl start ssh, or sshd)"
                    .into(),
            );
        }
    } else {
        let _ = writeln!(log.out, "  sshd is already configured");
    }

    units_step(&mut log, &binary, args)?;
    users_result(&users)?;
    let _ = writeln!(
        log.out,
        "{}",
        if log.changes.is_empty() {
            "server-setup: nothing to change".to_string()
        } else {
            format!("server-setup: {} change(s)", log.changes.len())
        }
    );
    report.changes = log.changes;
    report.notes = log.notes;
    Ok(report)
}

/// After writing: sshd -t, then the effective settings. Returns the probed account.
fn verify(
    sshd: &Path,
    config: &Path,
    dropin: &Path,
    binary: &str,
    socket: Option<&str>,
    args: &ServerSetupArgs,
    log: &mut Log,
) -> Result<Option<String>, String> {
    sshd_test(sshd, config).map_err(|e| {
        format!(
            "sshd rejects the new configuration (`{} -t -f {}`): {e}",
            sshd.display(),
            config.display()
        )
    })?;
    let main_text = RealFs.read(config).unwrap_or_default();
    let flat = flatten(config, &RealFs)?;
    let managed = managed_predicate(
        dropin.to_path_buf(),
        config.to_path_buf(),
        block_ranges(&main_text),
    );
    let rep = analyze(&flat.directives, &managed);
    if rep.ours.is_none() {
        return Err(format!(
            "sshd does not read podspawn's settings from {} (the Include of {} does not reach \
             it)",
            dropin.display(),
            config.display()
        ));
    }
    for d in &rep.global {
        if podspawn_command(&d.args).is_some() {
            log.note(format!(
                "{} is an old global podspawn AuthorizedKeysCommand (upstream's server-setup \
                 adds one): podspawn users get the Match block's settings, so it only runs \
                 podspawn for other users; remove it and its AuthorizedKeysCommandUser line",
                d.describe()
            ));
        } else {
            log.note(format!(
                "{} applies to other users only: podspawn users get the Match block's settings",
                d.describe()
            ));
        }
    }
    let member = args.probe_user.clone().or_else(podspawn_member);
    match &member {
        Some(user) => {
            let dump = sshd_dump(sshd, config, Some(user))
                .map_err(|e| format!("`sshd -T -C user={user}` failed: {e}"))?;
            let mm = effective_mismatches(
                &parse_sshd_t(&dump),
                Some(&spawn_command(binary, socket)),
                Some(binary),
            );
            let (required, optional): (Vec<Mismatch>, Vec<Mismatch>) =
                mm.into_iter().partition(|m| m.required);
            if !required.is_empty() {
                return Err(format!(
                    "for podspawn users (checked as {user} with `sshd -T -C user={user}`) sshd \
                     would not use podspawn's settings:{}\nan earlier Match block wins over \
                     podspawn's; change it so that it does not match the group {} (or remove \
                     those settings from it)",
                    explain_mismatches(&required, &rep),
                    accounts::USERS_GROUP
                ));
            }
            if !optional.is_empty() {
                log.note(format!(
                    "for podspawn users some hardening settings are overridden:{}",
                    explain_mismatches(&optional, &rep)
                ));
            }
            let _ = writeln!(
                log.out,
                "  effective settings checked for {user}: podspawn's AuthorizedKeysCommand"
            );
        }
        None => {
            if let Some(d) = rep.definite().first() {
                return Err(format!(
                    "{} shadows podspawn's settings: a Match block read before podspawn's applies \
                     to every user, and sshd uses its value. Change it so that it does not apply \
                     to the group {}",
                    d.describe(),
                    accounts::USERS_GROUP
                ));
            }
            for d in &rep.earlier_match {
                log.note(format!(
                    "{} is read before podspawn's block and wins for podspawn users it matches",
                    d.describe()
                ));
            }
            log.note(format!(
                "the Match Group {} check with `sshd -T -C` was skipped: the group has no members \
                 yet (sshd needs an existing account); `podspawn doctor` checks it after \
                 `podspawn add-user`",
                accounts::USERS_GROUP
            ));
        }
    }
    Ok(member)
}

/// Installs the shared units into /etc/systemd/system unless a package did (tarball installs).
fn units_step(log: &mut Log, binary: &str, args: &ServerSetupArgs) -> Result<(), String> {
    if args.no_units {
        return Ok(());
    }
    if PACKAGE_UNIT_DIRS
        .iter()
        .any(|d| Path::new(d).join("podspawn.service").exists())
    {
        return Ok(());
    }
    if !systemd_running() {
        log.note(
            "systemd is not running, so no units were installed: run `podspawn serve` (the \
             broker) and `podspawn cleanup --daemon` under your service manager"
                .into(),
        );
        return Ok(());
    }
    let _ = writeln!(log.out, "systemd units ({UNIT_DIR}):");
    let mut wrote = false;
    for (name, text) in UNITS {
        let path = Path::new(UNIT_DIR).join(name);
        let want = text.replace(TEMPLATE_BINARY, binary);
        let old = read_existing(&path)?;
        if old.as_ref().is_some_and(|(b, ..)| b == want.as_bytes()) {
            continue;
        }
        if !log.dry {
            keys::write_file_atomic(&path, want.as_bytes(), 0, 0, 0o644)?;
        }
        log.change(format!("write {}", path.display()));
        wrote = true;
    }
    if wrote && !log.dry {
        run_systemctl(&["daemon-reload"])?;
    }
    for unit in ENABLED_UNITS {
        let enabled = Command::new("systemctl")
            .args(["is-enabled", "--quiet", unit])
            .status()
            .is_ok_and(|s| s.success());
        let active = unit_state(unit).as_deref() == Some("active");
        if enabled && active {
            continue;
        }
        if args.no_reload {
            log.note(format!(
                "{unit} is not enabled and started: sudo systemctl enable --now {unit}"
            ));
            continue;
        }
        if !log.dry {
            run_systemctl(&["enable", "--now", unit])?;
        }
        log.change(format!("enable and start {unit}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct MemFs(BTreeMap<PathBuf, String>);

    impl ConfigSource for MemFs {
        fn read(&self, path: &Path) -> Option<String> {
            self.0.get(path).cloned()
        }
        fn glob(&self, pattern: &str) -> Vec<PathBuf> {
            self.0
                .keys()
                .filter(|p| glob_match(pattern, p.to_str().unwrap()))
                .cloned()
                .collect()
        }
    }

    fn mem(files: &[(&str, &str)]) -> MemFs {
        MemFs(
            files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    #[test]
    fn directives_and_args() {
        assert_eq!(directive("  # comment"), None);
        assert_eq!(directive("   "), None);
        assert_eq!(
            directive("Include /etc/ssh/sshd_config.d/*.conf"),
            Some(("include".into(), "/etc/ssh/sshd_config.d/*.conf".into()))
        );
        assert_eq!(
            directive("\tAuthorizedKeysFile=none\r"),
            Some(("authorizedkeysfile".into(), "none".into()))
        );
        assert_eq!(
            directive("PermitRootLogin = no"),
            Some(("permitrootlogin".into(), "no".into()))
        );
        assert_eq!(
            split_args(r#"a "b c"  d"#),
            vec!["a".to_string(), "b c".into(), "d".into()]
        );
        assert_eq!(split_args(r#""""#), vec![String::new()]);
    }

    #[test]
    fn globbing() {
        assert!(glob_match(
            "/etc/ssh/sshd_config.d/*.conf",
            "/etc/ssh/sshd_config.d/10-podspawn.conf"
        ));
        assert!(!glob_match(
            "/etc/ssh/sshd_config.d/*.conf",
            "/etc/ssh/sshd_config.d/x/y.conf"
        ));
        assert!(!glob_match(
            "/etc/ssh/sshd_config.d/*.conf",
            "/etc/ssh/sshd_config.d/.hidden.conf"
        ));
        assert!(!glob_match(
            "/etc/ssh/sshd_config.d/*.conf",
            "/etc/ssh/sshd_config.d/a.conf.bak"
        ));
        assert!(glob_match(
            "/etc/ssh/sshd_config.d/*",
            "/etc/ssh/sshd_config.d/a.conf.bak"
        ));
        assert!(glob_match(
            "/etc/ssh/*/1?-*.conf",
            "/etc/ssh/sshd_config.d/10-podspawn.conf"
        ));
        assert!(glob_match("/x/[0-9]*.conf", "/x/10-a.conf"));
        assert!(!glob_match("/x/[!0-9]*.conf", "/x/10-a.conf"));
        assert!(glob_match("/x/[!0-9]*.conf", "/x/a.conf"));
        assert!(glob_match("/x/[ab].conf", "/x/b.conf"));
        assert!(!glob_match("/x/[ab].conf", "/x/c.conf"));
        assert!(glob_match("/x/[.conf", "/x/[.conf"));
        assert!(glob_match("/exact/path", "/exact/path"));
        assert!(!glob_match("/exact/path", "/exact/pat"));
    }

    #[test]
    fn include_coverage() {
        let d = Path::new("/etc/ssh/sshd_config.d/10-podspawn.conf");
        let debian = "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\nPort 22\n";
        assert_eq!(include_covering(debian, d), Some(2));
        // Relative Includes are relative to /etc/ssh.
        assert_eq!(
            include_covering("Include sshd_config.d/*.conf\n", d),
            Some(1)
        );
        // Several patterns on one line, quotes.
        assert_eq!(
            include_covering("Include /nope/*.conf \"/etc/ssh/sshd_config.d/*\"\n", d),
            Some(1)
        );
        // An Include inside a Match block is conditional: it does not count.
        assert_eq!(
            include_covering(
                "Port 22\nMatch User x\nInclude /etc/ssh/sshd_config.d/*.conf\n",
                d
            ),
            None
        );
        assert_eq!(
            include_covering("Include /etc/ssh/other.d/*.conf\n", d),
            None
        );
        assert_eq!(
            include_covering("#Include /etc/ssh/sshd_config.d/*.conf\n", d),
            None
        );
        assert_eq!(
            include_covering("Include /etc/ssh/sshd_config.d/*.cfg\n", d),
            None
        );
    }

    #[test]
    fn block_insert_replace_remove() {
        let block = render_block("/usr/local/bin/podspawn");
        assert!(block.starts_with(BLOCK_BEGIN));
        assert!(block.ends_with(&format!("{BLOCK_END}\n")));
        assert!(block.contains("AuthorizedKeysCommand /usr/local/bin/podspawn auth-keys %u %t %k"));
        assert!(block.contains("Match Group podspawn-users"));

        let text =
            "Port 22\nPasswordAuthentication no\n\nMatch User backup\n  ForceCommand /bin/false\n";
        let once = insert_block(text, &block).unwrap();
        let b = once.find(BLOCK_BEGIN).unwrap();
        let m = once.find("Match User backup").unwrap();
        assert!(b < m, "{once}");
        assert!(once.starts_with("Port 22\nPasswordAuthentication no\n\n"));
        // Idempotent, and a changed block replaces the old one.
        assert_eq!(insert_block(&once, &block).unwrap(), once);
        let other = render_block("/opt/podspawn");
        let replaced = insert_block(&once, &other).unwrap();
        assert_eq!(replaced.matches(BLOCK_BEGIN).count(), 1);
        assert!(replaced.contains("/opt/podspawn auth-keys"));
        assert!(!replaced.contains("/usr/local/bin/podspawn"));
        let (removed, had) = remove_block(&once).unwrap();
        assert!(had);
        assert_eq!(removed, text);
        assert_eq!(block_ranges(&once).len(), 1);
        let (s, e) = block_ranges(&once)[0];
        assert_eq!(once.lines().nth(s - 1), Some(BLOCK_BEGIN));
        assert_eq!(once.lines().nth(e - 1), Some(BLOCK_END));

        // No Match: appended, a missing final newline added.
        let appended = insert_block("Port 22", &block).unwrap();
        assert_eq!(appended, format!("Port 22\n{block}"));
        assert_eq!(insert_block(&appended, &block).unwrap(), appended);
        // A commented-out Match does not count.
        let t = "#Match User anoncvs\n#\tX11Forwarding no\n";
        assert_eq!(insert_block(t, &block).unwrap(), format!("{t}{block}"));
        // Unterminated block.
        let broken = format!("Port 22\n{BLOCK_BEGIN}\nMatch Group podspawn-users\n");
        assert!(remove_block(&broken)
            .unwrap_err()
            .contains("no \"# END podspawn\""));
        assert!(insert_block(&broken, &block).is_err());
    }

    #[test]
    fn dropin_rendering() {
        let d = render_dropin("/usr/local/bin/podspawn");
        assert!(
            d.contains("\n    AuthorizedKeysCommand /usr/local/bin/podspawn auth-keys %u %t %k\n")
        );
        assert!(!d.contains("/usr/bin/podspawn"));
        assert_eq!(render_dropin(TEMPLATE_BINARY), DROPIN_TEMPLATE);
        assert!(d.contains("\n    ForceCommand /usr/local/bin/podspawn spawn\n"));
        let moved = render_dropin_with("/usr/local/bin/podspawn", Some("/run/x/b.sock"));
        assert!(moved
            .contains("\n    ForceCommand /usr/local/bin/podspawn spawn --socket /run/x/b.sock\n"));
        assert!(render_block_with("/b/podspawn", Some("/s"))
            .contains("ForceCommand /b/podspawn spawn --socket /s\n"));
        for line in [
            "Match Group podspawn-users",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "GSSAPIAuthentication no",
            "HostbasedAuthentication no",
            "AuthorizedKeysCommandUser podspawn",
            "AuthorizedKeysFile none",
            "PermitUserRC no",
            "AllowStreamLocalForwarding no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "AcceptEnv PODSPAWN_PROJECT LANG LC_*",
        ] {
            assert!(d.lines().any(|l| l.trim() == line), "{line}");
        }
    }

    #[test]
    fn binary_paths() {
        assert!(validate_binary_path(Path::new("/usr/bin/podspawn")).is_ok());
        assert!(validate_binary_path(Path::new("podspawn")).is_err());
        assert!(validate_binary_path(Path::new("/opt/my tools/podspawn")).is_err());
        assert!(validate_binary_path(Path::new("/opt/100%/podspawn")).is_err());
        let e = |path: &str, uid, mode, is_file| PathEntry {
            path: path.into(),
            uid,
            mode,
            is_file,
        };
        let good = vec![
            e("/usr/bin/podspawn", 0, 0o100755, true),
            e("/usr/bin", 0, 0o40755, false),
            e("/usr", 0, 0o40755, false),
            e("/", 0, 0o40755, false),
        ];
        assert_eq!(check_chain(&good), Ok(()));
        let mut gw = good.clone();
        gw[1].mode = 0o40775;
        let p = check_chain(&gw).unwrap_err();
        assert!(
            p.detail.contains("/usr/bin is group- or world-writable"),
            "{p:?}"
        );
        assert_eq!(p.fix, "sudo chmod go-w /usr/bin");
        let mut owned = good.clone();
        owned[0].uid = 1000;
        assert_eq!(
            check_chain(&owned).unwrap_err().fix,
            "sudo chown root /usr/bin/podspawn"
        );
        let mut tmp = good.clone();
        tmp[1] = e("/tmp", 0, 0o41777, false);
        assert!(check_chain(&tmp).is_err());
        let mut noexec = good.clone();
        noexec[0].mode = 0o100644;
        assert!(check_chain(&noexec)
            .unwrap_err()
            .detail
            .contains("not executable"));
        let mut dir = good;
        dir[0].is_file = false;
        assert!(check_chain(&dir).is_err());
        assert!(check_chain(&[]).is_err());
    }

    #[test]
    fn sshd_t_parsing_and_mismatches() {
        let out = "port 22\nauthorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k\n\
                   authorizedkeyscommanduser podspawn\nauthorizedkeysfile none\npermituserrc no\n\
                   forcecommand /usr/bin/podspawn spawn\nauthenticationmethods publickey\n\
                   pubkeyauthentication yes\npasswordauthentication no\n\
                   kbdinteractiveauthentication no\ngssapiauthentication no\n\
                   hostbasedauthentication no\n\
                   allowstreamlocalforwarding no\nallowtcpforwarding no\nx11forwarding no\n\
                   permittunnel no\nacceptenv PODSPAWN_PROJECT\nacceptenv LANG\nacceptenv LC_*\n";
        let t = parse_sshd_t(out);
        assert_eq!(t["acceptenv"], vec!["PODSPAWN_PROJECT", "LANG", "LC_*"]);
        let spawn = "/usr/bin/podspawn spawn";
        assert!(effective_mismatches(&t, Some(spawn), Some("/usr/bin/podspawn")).is_empty());
        assert!(effective_mismatches(&t, None, None).is_empty());
        // An sshd built without GSSAPI does not print the keyword: nobody can use it.
        let no_gss = parse_sshd_t(&out.replace("gssapiauthentication no\n", ""));
        assert!(effective_mismatches(&no_gss, None, None).is_empty());
        let m = effective_mismatches(&t, Some(spawn), Some("/usr/local/bin/podspawn"));
        assert_eq!(m.len(), 1);
        assert!(m[0].required && m[0].keyword == "authorizedkeyscommand");
        let m = effective_mismatches(&t, Some("/usr/bin/podspawn spawn --socket /s"), None);
        assert_eq!(m.len(), 1);
        assert!(m[0].required && m[0].keyword == "forcecommand");

        // Stock Debian: passwords on, no forced command; every confinement setting is named.
        let open = out
            .replace(
                "forcecommand /usr/bin/podspawn spawn\n",
                "forcecommand none\n",
            )
            .replace(
                "authenticationmethods publickey",
                "authenticationmethods any",
            )
            .replace("passwordauthentication no", "passwordauthentication yes")
            .replace(
                "kbdinteractiveauthentication no",
                "kbdinteractiveauthentication yes",
            )
            .replace("gssapiauthentication no", "gssapiauthentication yes")
            .replace("hostbasedauthentication no", "hostbasedauthentication yes");
        let m = effective_mismatches(&parse_sshd_t(&open), None, None);
        let kws: Vec<(&str, &str, bool)> = m
            .iter()
            .map(|m| (m.keyword.as_str(), m.actual.as_str(), m.required))
            .collect();
        assert_eq!(
            kws,
            vec![
                ("forcecommand", "none", true),
                ("authenticationmethods", "any", true),
                ("passwordauthentication", "yes", true),
                ("kbdinteractiveauthentication", "yes", true),
                ("gssapiauthentication", "yes", true),
                ("hostbasedauthentication", "yes", true),
            ]
        );

        let other = out
            .replace("/usr/bin/podspawn auth-keys %u %t %k", "/usr/bin/other %u")
            .replace("commanduser podspawn", "commanduser nobody")
            .replace("x11forwarding no", "x11forwarding yes")
            .replace("acceptenv PODSPAWN_PROJECT\n", "");
        let m = effective_mismatches(&parse_sshd_t(&other), None, None);
        let kws: Vec<(&str, bool)> = m.iter().map(|m| (m.keyword.as_str(), m.required)).collect();
        assert_eq!(
            kws,
            vec![
                ("authorizedkeyscommand", true),
                ("authorizedkeyscommanduser", true),
                ("x11forwarding", true),
                ("acceptenv", false)
            ]
        );
        let none = effective_mismatches(&parse_sshd_t("port 22\n"), None, None);
        assert_eq!(none.iter().filter(|m| m.required).count(), 14);
        assert!(is_podspawn_spawn("/usr/bin/podspawn spawn"));
        assert!(is_podspawn_spawn(
            "/opt/x/podspawn spawn --socket /run/p.sock"
        ));
        assert!(!is_podspawn_spawn("/usr/bin/podspawn spawn --user x"));
        assert!(!is_podspawn_spawn("podspawn spawn"));
        assert!(!is_podspawn_spawn("/bin/sh -c podspawn"));
        assert_eq!(
            podspawn_command("/usr/bin/podspawn auth-keys %u %t %k").as_deref(),
            Some("/usr/bin/podspawn")
        );
        assert_eq!(podspawn_command("/usr/bin/podspawn auth-keys %u"), None);
        assert_eq!(podspawn_command("podspawn auth-keys %u %t %k"), None);
        assert!(is_podspawn_match("Group podspawn-users"));
        assert!(is_podspawn_match("User x group wheel,podspawn-users"));
        assert!(!is_podspawn_match("User podspawn-users"));
        assert!(!is_podspawn_match("all"));
    }

    #[test]
    fn flatten_and_shadows() {
        let ours = render_dropin("/usr/bin/podspawn");
        let fs = mem(&[
            (
                "/etc/ssh/sshd_config",
                "AuthorizedKeysCommand /usr/bin/global %u\nAuthorizedKeysCommandUser nobody\n\
                 Include /etc/ssh/sshd_config.d/*.conf\nPort 22\nMatch User backup\n  X11Forwarding no\n",
            ),
            (
                "/etc/ssh/sshd_config.d/05-cloud.conf",
                "Match all\n  AuthorizedKeysCommand /usr/bin/other %u\n  AuthorizedKeysCommandUser nobody\n",
            ),
            (
                "/etc/ssh/sshd_config.d/01-user.conf",
                "Match User alice\n  AuthorizedKeysFile /etc/alice\n",
            ),
            ("/etc/ssh/sshd_config.d/10-podspawn.conf", ours.as_str()),
            (
                "/etc/ssh/sshd_config.d/50-late.conf",
                "Match all\n  AuthorizedKeysCommand /usr/bin/late %u\n",
            ),
            ("/etc/ssh/sshd_config.d/notincluded.txt", "Match all\n"),
        ]);
        let flat = flatten(Path::new("/etc/ssh/sshd_config"), &fs).unwrap();
        let files: Vec<String> = flat.files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            files,
            vec![
                "/etc/ssh/sshd_config",
                "/etc/ssh/sshd_config.d/01-user.conf",
                "/etc/ssh/sshd_config.d/05-cloud.conf",
                "/etc/ssh/sshd_config.d/10-podspawn.conf",
                "/etc/ssh/sshd_config.d/50-late.conf",
            ]
        );
        // A Match in an included file ends with the file: "Port 22" is global again.
        let port = flat
            .directives
            .iter()
            .find(|d| d.keyword == "port")
            .unwrap();
        assert_eq!(port.context, None);
        assert_eq!(port.line, 4);
        let managed = managed_predicate(
            "/etc/ssh/sshd_config.d/10-podspawn.conf".into(),
            "/etc/ssh/sshd_config".into(),
            vec![],
        );
        let rep = analyze(&flat.directives, &managed);
        let ours_d = rep.ours.clone().unwrap();
        assert_eq!(
            ours_d.file,
            Path::new("/etc/ssh/sshd_config.d/10-podspawn.conf")
        );
        let earlier: Vec<String> = rep.earlier_match.iter().map(|d| d.location()).collect();
        assert_eq!(
            earlier,
            vec![
                "/etc/ssh/sshd_config.d/01-user.conf:2",
                "/etc/ssh/sshd_config.d/05-cloud.conf:2",
                "/etc/ssh/sshd_config.d/05-cloud.conf:3",
            ]
        );
        let definite: Vec<String> = rep.definite().iter().map(|d| d.location()).collect();
        assert_eq!(
            definite,
            vec![
                "/etc/ssh/sshd_config.d/05-cloud.conf:2",
                "/etc/ssh/sshd_config.d/05-cloud.conf:3"
            ]
        );
        assert_eq!(rep.global.len(), 1);
        assert_eq!(rep.global[0].location(), "/etc/ssh/sshd_config:1");

        // The explanation names the line whose value sshd used.
        let mm = vec![Mismatch {
            keyword: "authorizedkeyscommand".into(),
            expected: "/usr/bin/podspawn auth-keys %u %t %k".into(),
            actual: "/usr/bin/other %u".into(),
            required: true,
        }];
        let text = explain_mismatches(&mm, &rep);
        assert!(
            text.contains("set first by /etc/ssh/sshd_config.d/05-cloud.conf:2"),
            "{text}"
        );

        // Marked block in the main file.
        let main = insert_block(
            "Port 22\nMatch User x\n  X11Forwarding no\n",
            &render_block("/usr/bin/podspawn"),
        )
        .unwrap();
        let fs = mem(&[("/etc/ssh/sshd_config", main.as_str())]);
        let flat = flatten(Path::new("/etc/ssh/sshd_config"), &fs).unwrap();
        let managed = managed_predicate(
            "/etc/ssh/sshd_config.d/10-podspawn.conf".into(),
            "/etc/ssh/sshd_config".into(),
            block_ranges(&main),
        );
        let rep = analyze(&flat.directives, &managed);
        assert!(rep.ours.is_some());
        assert!(rep.earlier_match.is_empty());
        // Without our block: nothing is ours.
        let fs = mem(&[("/etc/ssh/sshd_config", "Port 22\n")]);
        let flat = flatten(Path::new("/etc/ssh/sshd_config"), &fs).unwrap();
        assert!(analyze(&flat.directives, &managed).ours.is_none());
        assert!(flatten(Path::new("/nonexistent"), &fs).is_err());
    }

    #[test]
    fn include_loops_terminate() {
        let fs = mem(&[("/etc/ssh/a.conf", "Include /etc/ssh/a.conf\nPort 1\n")]);
        let flat = flatten(Path::new("/etc/ssh/a.conf"), &fs).unwrap();
        assert_eq!(flat.files.len(), 17);
    }

    #[test]
    fn overlay_adds_planned_files() {
        let base = mem(&[
            ("/e/sshd_config", "Include /e/d/*.conf\n"),
            ("/e/d/20-x.conf", "Port 2\n"),
        ]);
        let ov = Overlay {
            base: &base,
            files: [(
                PathBuf::from("/e/d/10-podspawn.conf"),
                "Port 1\n".to_string(),
            )]
            .into(),
        };
        assert_eq!(
            ov.glob("/e/d/*.conf"),
            vec![
                PathBuf::from("/e/d/10-podspawn.conf"),
                PathBuf::from("/e/d/20-x.conf")
            ]
        );
        let flat = flatten(Path::new("/e/sshd_config"), &ov).unwrap();
        assert_eq!(flat.files.len(), 3);
    }

    #[test]
    fn wanted_dirs_follow_the_config() {
        let cfg = Config::default();
        let dirs: Vec<(String, &str, u32)> = wanted_dirs(&cfg)
            .into_iter()
            .map(|(p, g, m)| (p.display().to_string(), g, m))
            .collect();
        assert_eq!(
            dirs,
            vec![
                ("/etc/podspawn".to_string(), "root", 0o755),
                ("/etc/podspawn/keys".into(), "podspawn", 0o750),
                ("/etc/podspawn/users".into(), "root", 0o755),
                ("/var/lib/podspawn".into(), "root", 0o700),
                ("/var/lib/podspawn/locks".into(), "root", 0o700),
                ("/var/lib/podspawn/homes".into(), "root", 0o711),
                ("/run/podspawn".into(), "root", 0o755),
                ("/var/log/podspawn".into(), "root", 0o750),
            ]
        );
        // A log file directly in /var/log never re-modes /var/log.
        let mut cfg = Config::default();
        cfg.log.file = Some("/var/log/podspawn.log".into());
        assert!(!wanted_dirs(&cfg)
            .iter()
            .any(|(p, _, _)| p == Path::new("/var/log")));
    }

    #[test]
    fn units_are_embedded() {
        for (name, text) in UNITS {
            assert!(text.contains("[Unit]"), "{name}");
        }
        assert!(UNITS
            .iter()
            .any(|(n, t)| *n == "podspawn.service"
                && t.contains("ExecStart=/usr/bin/podspawn serve")));
    }
}
