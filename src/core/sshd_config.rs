//! The sshd_config model (pure): directives, Includes and Match blocks as sshd reads them, the
//! effective values podspawn needs, and the rendering of podspawn's own Match block.
//!
//! sshd semantics this relies on (checked with OpenSSH 9.2): for most keywords sshd keeps the
//! first value it reads, and the values of matching `Match` blocks replace global ones. So a
//! global `AuthorizedKeysCommand` (anywhere, even before the Include, or on the command line with
//! `-o`) does not affect podspawn users, while an earlier `Match` block that matches them
//! (e.g. `Match all` in a `05-…` drop-in) does. The text analysis below mirrors that, and
//! `sshd -T -C user=<member>` is the final word.
use crate::core::config::Config;
use crate::core::names as accounts;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// sshd resolves relative `Include` paths against this directory.
pub const SSHD_DIR: &str = "/etc/ssh";
pub const DROPIN_DIR: &str = "sshd_config.d";
pub const DROPIN_NAME: &str = "10-podspawn.conf";
/// The sshd drop-in shipped by the packages (`systemd/sshd/10-podspawn.conf`).
pub const DROPIN_TEMPLATE: &str = include_str!("../../systemd/sshd/10-podspawn.conf");
/// The drop-in that turns TCP forwarding on for podspawn users (written by server-setup only
/// where pam_podspawn.so moves their connections into their container's network namespace).
pub const FORWARDING_DROPIN_NAME: &str = "09-podspawn-forwarding.conf";
/// Its text (`systemd/sshd/09-podspawn-forwarding.conf`).
pub const FORWARDING_TEMPLATE: &str =
    include_str!("../../systemd/sshd/09-podspawn-forwarding.conf");
/// The first line of the forwarding part of a marked block.
pub const FORWARDING_MARK: &str =
    "# TCP forwarding for podspawn users (pam_podspawn.so is in place; security.port_forwarding)";
/// The binary path in the shipped units and drop-in.
pub const TEMPLATE_BINARY: &str = "/usr/bin/podspawn";
pub const BLOCK_BEGIN: &str = "# BEGIN podspawn (managed by podspawn server-setup)";
pub const BLOCK_END: &str = "# END podspawn";
/// What follows the binary in podspawn's AuthorizedKeysCommand.
pub const AUTH_KEYS_ARGS: &str = "auth-keys %u %t %k";

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
    // Memoised on (pattern position, path position, at a component start): every state is
    // computed once, so patterns with many `*` stay quadratic instead of exponential.
    let mut memo = vec![None; (p.len() + 1) * (t.len() + 1) * 2];
    glob_rec(&p, &t, 0, 0, true, &mut memo)
}

fn glob_rec(
    pat: &[char],
    text: &[char],
    pi: usize,
    ti: usize,
    at_start: bool,
    memo: &mut [Option<bool>],
) -> bool {
    let key = (pi * (text.len() + 1) + ti) * 2 + usize::from(at_start);
    if let Some(Some(known)) = memo.get(key) {
        return *known;
    }
    let (p, t) = (&pat[pi..], &text[ti..]);
    let result = match p.first() {
        None => t.is_empty(),
        Some(&pc) => {
            let leading_dot = at_start && t.first() == Some(&'.');
            match pc {
                '*' => {
                    if leading_dot {
                        false
                    } else {
                        let mut found = false;
                        for i in 0..=t.len() {
                            if glob_rec(pat, text, pi + 1, ti + i, at_start && i == 0, memo) {
                                found = true;
                                break;
                            }
                            if i < t.len() && t[i] == '/' {
                                break;
                            }
                        }
                        found
                    }
                }
                '?' => {
                    !t.is_empty()
                        && t[0] != '/'
                        && !leading_dot
                        && glob_rec(pat, text, pi + 1, ti + 1, false, memo)
                }
                '[' => match bracket(&p[1..], t.first().copied()) {
                    Some((matched, used)) => {
                        matched
                            && !leading_dot
                            && glob_rec(pat, text, pi + 1 + used, ti + 1, false, memo)
                    }
                    None => {
                        t.first() == Some(&'[') && glob_rec(pat, text, pi + 1, ti + 1, false, memo)
                    }
                },
                '\\' if p.len() > 1 => {
                    t.first() == Some(&p[1])
                        && glob_rec(pat, text, pi + 2, ti + 1, p[1] == '/', memo)
                }
                c => t.first() == Some(&c) && glob_rec(pat, text, pi + 1, ti + 1, c == '/', memo),
            }
        }
    };
    if let Some(slot) = memo.get_mut(key) {
        *slot = Some(result);
    }
    result
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

/// What keeps a configuration from being turned into podspawn's sshd lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotUtf8(PathBuf),
    NotAbsolute(String),
    /// A space, quote, backslash or % that sshd would split or expand.
    Unquotable(String),
    /// The broker socket path cannot go into the forced command.
    Socket(Box<Error>),
    /// A BEGIN line (at this 1-based line) without its END.
    UnclosedBlock {
        line: usize,
    },
    /// The main sshd_config could not be read.
    Unreadable(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotUtf8(p) => write!(f, "{} is not valid UTF-8", p.display()),
            Error::NotAbsolute(s) => write!(
                f,
                "{s} is not an absolute path: sshd needs one for AuthorizedKeysCommand"
            ),
            Error::Unquotable(s) => write!(
                f,
                "{s:?} contains a space, quote, backslash or %: sshd would split or expand it; \
                 install podspawn at a plain path such as /usr/local/bin/podspawn"
            ),
            Error::Socket(e) => write!(f, "broker.socket: {e}"),
            Error::UnclosedBlock { line } => write!(
                f,
                "line {line} starts a podspawn block (\"{BLOCK_BEGIN}\") that has no \"{BLOCK_END}\" \
                 line: remove the podspawn lines by hand and run server-setup again"
            ),
            Error::Unreadable(p) => write!(f, "cannot read {}", p.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Socket(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

/// Is `binary` usable in an sshd AuthorizedKeysCommand line? (absolute, nothing sshd would split
/// or expand).
pub fn validate_binary_path(binary: &Path) -> Result<String, Error> {
    let s = binary
        .to_str()
        .ok_or_else(|| Error::NotUtf8(binary.to_path_buf()))?;
    if !s.starts_with('/') {
        return Err(Error::NotAbsolute(s.to_string()));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '%' | '\\'))
    {
        return Err(Error::Unquotable(s.to_string()));
    }
    Ok(s.to_string())
}

/// The drop-in for `binary` (with the default broker socket).
pub fn render_dropin(binary: &str) -> String {
    render_dropin_with(binary, None)
}

/// The spawn command sshd forces for members: `exec <binary> spawn [--socket <path>]`. sshd runs
/// it with the account's shell (`$SHELL -c`); `exec` makes spawn sshd's own child, so that when
/// the session's command is killed by a signal, spawn ending the same way reaches sshd (which then
/// reports `exit-signal`) instead of a shell that would print "Terminated" and exit 143.
pub fn spawn_command(binary: &str, socket: Option<&str>) -> String {
    match socket {
        Some(s) => format!("exec {binary} spawn --socket {s}"),
        None => format!("exec {binary} spawn"),
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
            &format!("ForceCommand exec {TEMPLATE_BINARY} spawn"),
            &format!("ForceCommand {}", spawn_command(binary, socket)),
        )
}

/// The template's `AcceptEnv` line (for the default `session.accept_env`).
const TEMPLATE_ACCEPT_ENV: &str = "AcceptEnv PODSPAWN_PROJECT LANG LANGUAGE LC_*";

/// `dropin` (or block) with its `AcceptEnv` line listing `accept` (`session.accept_env`, already
/// validated as plain names or prefixes) after PODSPAWN_PROJECT.
pub fn with_accept_env(dropin: &str, accept: &[String]) -> String {
    let mut line = String::from("AcceptEnv PODSPAWN_PROJECT");
    for a in accept {
        line.push(' ');
        line.push_str(a);
    }
    dropin.replace(TEMPLATE_ACCEPT_ENV, &line)
}

/// The `session.accept_env` entries that sshd's effective `AcceptEnv` (from `sshd -T`) lacks:
/// clients' values for them never reach the container.
pub fn accept_env_missing(t: &BTreeMap<String, Vec<String>>, accept: &[String]) -> Vec<String> {
    let have: Vec<&str> = t
        .get("acceptenv")
        .map(|v| v.iter().flat_map(|l| l.split_whitespace()).collect())
        .unwrap_or_default();
    accept
        .iter()
        .filter(|a| !have.contains(&a.as_str()))
        .cloned()
        .collect()
}

/// The `--socket` value for the forced command: `None` for the default socket.
pub fn socket_arg(cfg: &Config) -> Result<Option<String>, Error> {
    if cfg.broker.socket == Path::new(crate::core::config::DEFAULT_SOCKET) {
        return Ok(None);
    }
    validate_binary_path(&cfg.broker.socket)
        .map(Some)
        .map_err(|e| Error::Socket(Box::new(e)))
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

/// The text of `09-podspawn-forwarding.conf`: a self-contained `Match Group podspawn-users`
/// block with `AllowTcpForwarding yes` and `GatewayPorts no`, to be read before the main drop-in
/// (sshd keeps the first value).
pub fn render_forwarding_dropin() -> String {
    FORWARDING_TEMPLATE.to_string()
}

/// The directive lines of the forwarding drop-in (its Match line and settings), no comments.
fn forwarding_lines() -> Vec<&'static str> {
    FORWARDING_TEMPLATE
        .lines()
        .filter(|l| directive(l).is_some())
        .collect()
}

/// [`render_block_with`], with the forwarding Match block (before podspawn's main one) when
/// `forwarding`.
pub fn render_block_forwarding(binary: &str, socket: Option<&str>, forwarding: bool) -> String {
    let block = render_block_with(binary, socket);
    if !forwarding {
        return block;
    }
    // The block was just rendered, so it is well formed.
    set_block_forwarding(&block, true).unwrap_or(block)
}

/// Does the marked block in `text` carry the forwarding Match block?
pub fn block_has_forwarding(text: &str) -> bool {
    block_ranges(text).iter().any(|&(a, b)| {
        text.lines()
            .skip(a - 1)
            .take(b + 1 - a)
            .any(|l| l.trim_end() == FORWARDING_MARK)
    })
}

/// Adds (`on`) or removes the forwarding Match block inside podspawn's marked blocks in `text`
/// (before the block's first Match line); text outside the blocks is untouched. A BEGIN without
/// END is an error.
pub fn set_block_forwarding(text: &str, on: bool) -> Result<String, Error> {
    // Checks that every block is closed.
    remove_block(text)?;
    let mut out = String::with_capacity(text.len() + 200);
    let mut inside = false;
    // Inside the forwarding part: 0 = no, 1 = after the mark, 2 = after its Match line.
    let mut skipping = 0;
    let mut added = false;
    for line in text.split_inclusive('\n') {
        if !inside {
            if is_begin(line) {
                inside = true;
                added = false;
            }
            out.push_str(line);
            continue;
        }
        if is_end(line) {
            inside = false;
            skipping = 0;
            out.push_str(line);
            continue;
        }
        let is_match = matches!(directive(line), Some((k, _)) if k == "match");
        if line.trim_end() == FORWARDING_MARK {
            skipping = 1;
            continue;
        }
        if skipping == 1 {
            if is_match {
                skipping = 2;
            }
            continue;
        }
        if skipping == 2 {
            if !is_match {
                continue;
            }
            skipping = 0;
        }
        if is_match && on && !added {
            out.push_str(FORWARDING_MARK);
            out.push('\n');
            for l in forwarding_lines() {
                out.push_str(l);
                out.push('\n');
            }
            added = true;
        }
        out.push_str(line);
    }
    Ok(out)
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
pub fn remove_block(text: &str) -> Result<(String, bool), Error> {
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
    if let Some(line) = inside {
        return Err(Error::UnclosedBlock { line });
    }
    Ok((out, removed))
}

/// Puts `block` before the first `Match` line (or at the end), replacing existing marked blocks.
pub fn insert_block(text: &str, block: &str) -> Result<String, Error> {
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

/// Files read at most while following Includes (repeats included). sshd refuses Includes nested
/// more than 16 deep; a file that includes itself twice would otherwise be read 2^16 times.
pub const MAX_INCLUDED_FILES: usize = 256;

/// The configuration as sshd reads it: directives in order, Includes expanded in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flat {
    pub directives: Vec<Directive>,
    /// Every file read, main file first.
    pub files: Vec<PathBuf>,
}

/// Reads `main` and its Includes (a Match inside an included file ends with that file).
pub fn flatten(main: &Path, src: &dyn ConfigSource) -> Result<Flat, Error> {
    let text = src
        .read(main)
        .ok_or_else(|| Error::Unreadable(main.to_path_buf()))?;
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
                    if flat.files.len() >= MAX_INCLUDED_FILES {
                        continue;
                    }
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
    let mut a = split_args(cmd);
    // `exec` first (what server-setup writes), or not (earlier versions).
    if a.first().is_some_and(|w| w == "exec") {
        a.remove(0);
    }
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
/// named podspawn*). TCP forwarding is expected off ([`effective_mismatches_with`]).
pub fn effective_mismatches(
    t: &BTreeMap<String, Vec<String>>,
    spawn: Option<&str>,
    binary: Option<&str>,
) -> Vec<Mismatch> {
    effective_mismatches_with(t, spawn, binary, false)
}

/// [`effective_mismatches`], `forwarding`: whether TCP forwarding is expected on (pam_podspawn.so
/// in place). Expected off, any other `allowtcpforwarding` than `no` is required (forwards would
/// open in the host's network namespace); expected on, `yes` is not required (without it
/// forwarding is merely unavailable), and where forwarding is effective `gatewayports no` is a
/// hardening setting. Unix-socket forwarding, X11 and tunnels are always `no`.
pub fn effective_mismatches_with(
    t: &BTreeMap<String, Vec<String>>,
    spawn: Option<&str>,
    binary: Option<&str>,
    forwarding: bool,
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
            expected: spawn.unwrap_or("exec /…/podspawn spawn").to_string(),
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
        if forwarding {
            ("allowtcpforwarding", "yes", false)
        } else {
            ("allowtcpforwarding", "no", true)
        },
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
    // GatewayPorts matters only where forwarding is effective.
    if forwarding && get("allowtcpforwarding") != "no" {
        let got = get("gatewayports");
        if got != "no" {
            out.push(Mismatch {
                keyword: "gatewayports".into(),
                expected: "no".into(),
                actual: got,
                required: false,
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
        let e = remove_block(&broken).unwrap_err();
        assert!(matches!(e, Error::UnclosedBlock { .. }), "{e:?}");
        assert!(e.to_string().contains("no \"# END podspawn\""), "{e}");
        assert_eq!(insert_block(&broken, &block).unwrap_err(), e);
    }

    #[test]
    fn a_socket_sshd_would_split_is_refused_as_the_socket() {
        let mut cfg = Config::default();
        assert_eq!(socket_arg(&cfg), Ok(None));
        cfg.broker.socket = "/run/other.sock".into();
        assert_eq!(socket_arg(&cfg), Ok(Some("/run/other.sock".into())));
        cfg.broker.socket = "/run/my sock".into();
        let e = socket_arg(&cfg).unwrap_err();
        assert_eq!(
            e,
            Error::Socket(Box::new(Error::Unquotable("/run/my sock".into())))
        );
        assert!(String::from(e).starts_with("broker.socket: \"/run/my sock\" contains a space"),);
    }

    #[test]
    fn dropin_rendering() {
        let d = render_dropin("/usr/local/bin/podspawn");
        assert!(
            d.contains("\n    AuthorizedKeysCommand /usr/local/bin/podspawn auth-keys %u %t %k\n")
        );
        assert!(!d.contains("/usr/bin/podspawn"));
        assert_eq!(render_dropin(TEMPLATE_BINARY), DROPIN_TEMPLATE);
        assert!(d.contains("\n    ForceCommand exec /usr/local/bin/podspawn spawn\n"));
        let moved = render_dropin_with("/usr/local/bin/podspawn", Some("/run/x/b.sock"));
        assert!(moved.contains(
            "\n    ForceCommand exec /usr/local/bin/podspawn spawn --socket /run/x/b.sock\n"
        ));
        assert!(render_block_with("/b/podspawn", Some("/s"))
            .contains("ForceCommand exec /b/podspawn spawn --socket /s\n"));
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
            "AcceptEnv PODSPAWN_PROJECT LANG LANGUAGE LC_*",
        ] {
            assert!(d.lines().any(|l| l.trim() == line), "{line}");
        }
    }

    #[test]
    fn forwarding_dropin_and_block() {
        let f = render_forwarding_dropin();
        let lines: Vec<&str> = f
            .lines()
            .filter(|l| directive(l).is_some())
            .map(str::trim)
            .collect();
        assert_eq!(
            lines,
            vec![
                "Match Group podspawn-users",
                "AllowTcpForwarding yes",
                "GatewayPorts no"
            ]
        );
        // The main drop-in keeps forwarding off (it is a conffile; the 09 file turns it on).
        assert!(DROPIN_TEMPLATE
            .lines()
            .any(|l| l.trim() == "AllowTcpForwarding no"));
        assert!(FORWARDING_DROPIN_NAME < DROPIN_NAME);

        let plain = render_block_with("/usr/bin/podspawn", None);
        assert_eq!(
            render_block_forwarding("/usr/bin/podspawn", None, false),
            plain
        );
        let fwd = render_block_forwarding("/usr/bin/podspawn", Some("/s"), true);
        assert!(block_has_forwarding(&fwd) && !block_has_forwarding(&plain));
        // The forwarding Match block comes first inside the marked block.
        let matches: Vec<usize> = fwd
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "Match Group podspawn-users")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(matches.len(), 2);
        let yes = fwd
            .lines()
            .position(|l| l.trim() == "AllowTcpForwarding yes")
            .unwrap();
        let no = fwd
            .lines()
            .position(|l| l.trim() == "AllowTcpForwarding no")
            .unwrap();
        assert!(
            matches[0] < yes && yes < matches[1] && matches[1] < no,
            "{fwd}"
        );
        assert!(fwd.contains("spawn --socket /s\n"));
        // Added and removed in place, idempotently, in a whole sshd_config.
        let main = insert_block("Port 22\nMatch User x\n  X11Forwarding no\n", &plain).unwrap();
        let on = set_block_forwarding(&main, true).unwrap();
        assert_eq!(set_block_forwarding(&on, true).unwrap(), on);
        assert_eq!(
            on,
            insert_block(
                &main,
                &render_block_forwarding("/usr/bin/podspawn", None, true)
            )
            .unwrap()
        );
        assert!(block_has_forwarding(&on));
        assert_eq!(set_block_forwarding(&on, false).unwrap(), main);
        assert_eq!(set_block_forwarding(&main, false).unwrap(), main);
        assert!(on.ends_with("Match User x\n  X11Forwarding no\n"));
        // Without a block nothing changes; an unclosed block is an error.
        assert_eq!(
            set_block_forwarding("Port 22\n", true).unwrap(),
            "Port 22\n"
        );
        assert!(set_block_forwarding(&format!("{BLOCK_BEGIN}\nMatch all\n"), true).is_err());
    }

    #[test]
    fn forwarding_expectation_in_the_effective_values() {
        let base = "authorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k\n\
                    authorizedkeyscommanduser podspawn\nauthorizedkeysfile none\n\
                    permituserrc no\nforcecommand /usr/bin/podspawn spawn\n\
                    authenticationmethods publickey\npubkeyauthentication yes\n\
                    passwordauthentication no\nkbdinteractiveauthentication no\n\
                    hostbasedauthentication no\nallowstreamlocalforwarding no\n\
                    x11forwarding no\npermittunnel no\nacceptenv PODSPAWN_PROJECT\n";
        let with = |fwd: &str, gw: &str| {
            parse_sshd_t(&format!(
                "{base}allowtcpforwarding {fwd}\ngatewayports {gw}\n"
            ))
        };
        let kws = |m: Vec<Mismatch>| -> Vec<(String, bool)> {
            m.into_iter().map(|m| (m.keyword, m.required)).collect()
        };
        // Expected off: only `no` passes, anything else is required.
        assert!(effective_mismatches_with(&with("no", "no"), None, None, false).is_empty());
        assert_eq!(effective_mismatches(&with("no", "yes"), None, None), vec![]);
        for v in ["yes", "local", "remote", "all"] {
            assert_eq!(
                kws(effective_mismatches_with(&with(v, "no"), None, None, false)),
                vec![("allowtcpforwarding".to_string(), true)]
            );
        }
        // Expected on: `yes` and gatewayports no; otherwise not required (forwarding is merely
        // unavailable).
        assert!(effective_mismatches_with(&with("yes", "no"), None, None, true).is_empty());
        assert_eq!(
            kws(effective_mismatches_with(
                &with("no", "clientspecified"),
                None,
                None,
                true
            )),
            vec![("allowtcpforwarding".to_string(), false)]
        );
        assert_eq!(
            kws(effective_mismatches_with(
                &with("yes", "clientspecified"),
                None,
                None,
                true
            )),
            vec![("gatewayports".to_string(), false)]
        );
        // Unix sockets, X11 and tunnels stay off either way.
        let t = parse_sshd_t(&format!(
            "{}allowtcpforwarding yes\ngatewayports no\n",
            base.replace("x11forwarding no", "x11forwarding yes")
        ));
        assert_eq!(
            kws(effective_mismatches_with(&t, None, None, true)),
            vec![("x11forwarding".to_string(), true)]
        );
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
        assert!(is_podspawn_spawn("exec /usr/bin/podspawn spawn"));
        assert!(!is_podspawn_spawn("exec exec /usr/bin/podspawn spawn"));
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
        assert_eq!(
            flatten(Path::new("/nonexistent"), &fs),
            Err(Error::Unreadable("/nonexistent".into()))
        );
        assert_eq!(
            Error::Unreadable("/nonexistent".into()).to_string(),
            "cannot read /nonexistent"
        );
    }

    #[test]
    fn include_fan_out_is_bounded() {
        // Found by fuzzing: drop-ins that include their own directory (themselves and each
        // other) doubled the reads at each of the 16 levels.
        let fs = mem(&[
            (
                "/etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n",
            ),
            (
                "/etc/ssh/sshd_config.d/05-a.conf",
                "Include /etc/ssh/sshd_config.d/*.conf\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-b.conf",
                "Include /etc/ssh/sshd_config.d/*.conf\n",
            ),
        ]);
        let flat = flatten(Path::new("/etc/ssh/sshd_config"), &fs).unwrap();
        assert_eq!(flat.files.len(), MAX_INCLUDED_FILES);
        // The main file's own directives after the Include are still read.
        let last = flat.directives.last().unwrap();
        assert_eq!((last.line, last.args.as_str()), (2, "22"));
    }

    #[test]
    fn glob_with_many_stars_is_fast() {
        let pattern = format!("/etc/{}x", "*?".repeat(40));
        let path = format!("/etc/{}", "a".repeat(200));
        let start = std::time::Instant::now();
        assert!(!glob_match(&pattern, &path));
        assert!(glob_match("/etc/*?*?*a", "/etc/xyza"));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
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
}
