//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the test that replays their
//! seeds and past crash inputs (`tests/fuzz_seeds.rs`). Not an API.
//!
//! Each function feeds arbitrary bytes to one parser (the same code the binary runs on input a
//! user, an admin's file or the network controls) and checks a few invariants on what comes out.
//! A broken invariant is returned as `Err`; the fuzz target and the test turn it into a failure.
//! A panic inside the parser is itself the bug being looked for.

use crate::core::{config, keys, podfile, protocol, sshd_config};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Inputs longer than this are ignored (every parser here bounds its input far below it, and the
/// fuzzer gains nothing from megabyte inputs).
pub const MAX_INPUT: usize = 32 * 1024;

/// Lines of a YAML text as the YAML scanner counts them (`\r\n`, `\n`, a lone `\r` and the
/// YAML 1.1 breaks NEL, LS and PS each end a line), plus one: errors at the end of the input point
/// just past the last line.
fn yaml_lines(text: &str) -> usize {
    let mut n = 1;
    let mut prev_cr = false;
    for c in text.chars() {
        match c {
            '\n' if prev_cr => {}
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => n += 1,
            _ => {}
        }
        prev_cr = c == '\r';
    }
    n + 1
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

// ---------------------------------------------------------------------------------------------
// Key files and auth-keys' output.

/// Splits an authorized_keys line the way sshd does: options (up to the first blank outside
/// double quotes; `\"` escapes a quote), then the key. Options are split on commas outside quotes.
fn split_authorized_line(line: &str) -> Option<(Vec<String>, &str)> {
    let mut opts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quoted => {
                cur.push(c);
                if let Some((_, n)) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => opts.push(std::mem::take(&mut cur)),
            ' ' | '\t' if !quoted => {
                opts.push(cur);
                return Some((opts, &line[i + 1..]));
            }
            _ => cur.push(c),
        }
    }
    None
}

/// Checks one line rendered by auth-keys for `user` and `key`: one line, the forced command
/// quoted as a single option, the restrictions present, and the key re-parsing to the same key.
fn check_rendered(
    line: &str,
    user: &str,
    socket: Option<&str>,
    key: &keys::PublicKey,
    forwarding: bool,
) -> Result<(), String> {
    check(!line.chars().any(|c| c.is_control()), || {
        format!("rendered line has a control character: {line:?}")
    })?;
    let (opts, rest) = split_authorized_line(line)
        .ok_or_else(|| format!("rendered line has no key after its options: {line:?}"))?;
    let mut command = format!("/usr/bin/podspawn spawn --user {user}");
    if let Some(s) = socket {
        command.push_str(" --socket ");
        command.push_str(s);
    }
    let mut want = vec![
        format!("command=\"{command}\""),
        "restrict".to_string(),
        "pty".to_string(),
        "agent-forwarding".to_string(),
    ];
    if forwarding {
        want.push("port-forwarding".to_string());
    }
    check(opts == want, || {
        format!("rendered options {opts:?} are not {want:?} (line {line:?})")
    })?;
    let back = keys::PublicKey::parse(rest)
        .map_err(|e| format!("rendered key {rest:?} does not parse: {e}"))?;
    check(back.same_key(key) && back.comment.is_empty(), || {
        format!("rendered key {back:?} is not {key:?}")
    })
}

/// Key files (`parse_key_bytes`), their rendering back to a key file, and auth-keys' rendering
/// of each key into an authorized_keys line. The first line of the input is also tried as the
/// user name and the socket path of the forced command.
pub fn keys(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    let (parsed, bad) = keys::parse_key_bytes(data);
    let lines = data.split(|&b| b == b'\n').count();
    for (n, e) in &bad {
        check(*n >= 1 && *n <= lines, || {
            format!("line number {n} of {lines}")
        })?;
        check(!e.to_string().is_empty(), || "empty key error".into())?;
    }
    for k in &parsed {
        let again = keys::PublicKey::parse(&k.to_line())
            .map_err(|e| format!("{k:?} does not re-parse from {:?}: {e}", k.to_line()))?;
        check(&again == k, || format!("{k:?} re-parses as {again:?}"))?;
    }
    let file = crate::store::keys::render_key_file(&parsed);
    let (back, back_bad) = keys::parse_key_bytes(file.as_bytes());
    check(back == parsed && back_bad.is_empty(), || {
        format!("key file {file:?} re-parses as {back:?} / {back_bad:?}")
    })?;
    let deduped = keys::dedupe(parsed.clone());
    check(deduped.len() <= parsed.len(), || "dedupe grew".into())?;

    let exe = Path::new("/usr/bin/podspawn");
    let first = std::str::from_utf8(data.split(|&b| b == b'\n').next().unwrap_or_default())
        .unwrap_or_default();
    for k in &parsed {
        // Every parsed key renders, for a valid user, with or without a socket.
        for socket in [None, Some("/run/podspawn/other.sock")] {
            for fwd in [false, true] {
                let line = crate::roles::auth_keys::render_line_with(
                    exe,
                    socket.map(Path::new),
                    "alice",
                    k,
                    fwd,
                )
                .map_err(|e| format!("{k:?} does not render: {e}"))?;
                check_rendered(&line, "alice", socket, k, fwd)?;
            }
        }
        // Untrusted user names and socket paths either are refused or cannot break the line.
        if let Ok(line) = crate::roles::auth_keys::render_line(exe, None, first, k) {
            check_rendered(&line, first, None, k, false)?;
        }
        if let Ok(line) =
            crate::roles::auth_keys::render_line(exe, Some(Path::new(first)), "alice", k)
        {
            check_rendered(&line, "alice", Some(first), k, false)?;
        }
        let chosen =
            crate::roles::auth_keys::select_keys(&parsed, Some(&k.algorithm), Some(&k.data));
        check(chosen.len() == 1 && chosen[0].same_key(k), || {
            format!("select_keys for {k:?} chose {chosen:?}")
        })?;
    }
    // A line given as one key (`add-user --key`).
    if let Ok(k) = keys::PublicKey::parse(first) {
        check(keys::is_known_algorithm(&k.algorithm), || {
            format!("parsed an unknown algorithm {:?}", k.algorithm)
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The config file.

/// `config.yaml` and per-user override files, from text.
pub fn config(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    let text = String::from_utf8_lossy(data);
    let lines = yaml_lines(&text);
    let path = Path::new("/etc/podspawn/config.yaml");
    match config::Config::parse(&text, path) {
        Ok(c) => {
            // What callers do with a loaded config.
            let _ = sshd_config::socket_arg(&c);
            let _ = format!("{c:?}");
        }
        Err(e) => {
            check(e.line.is_none_or(|l| l >= 1 && l <= lines), || {
                format!(
                    "error line {:?} outside the text ({lines} lines): {e}",
                    e.line
                )
            })?;
            let _ = e.to_string();
        }
    }
    let path = Path::new("/etc/podspawn/users/alice.yaml");
    match config::UserOverrides::parse(&text, path) {
        Ok(u) => {
            let _ = format!("{u:?}");
        }
        Err(e) => {
            check(e.line.is_none_or(|l| l >= 1 && l <= lines), || {
                format!(
                    "error line {:?} outside the text ({lines} lines): {e}",
                    e.line
                )
            })?;
            let _ = e.to_string();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The broker protocol.

fn roundtrip<T>(msg: &T) -> Result<(), String>
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let line = protocol::encode(msg);
    let nl = line.iter().filter(|&&b| b == b'\n').count();
    check(nl == 1 && line.last() == Some(&b'\n'), || {
        format!("{msg:?} encodes to more than one line: {line:?}")
    })?;
    let back: T = protocol::decode(&line[..line.len() - 1])
        .map_err(|e| format!("{msg:?} does not decode after encoding: {e}"))?;
    check(&back == msg, || format!("{msg:?} round-trips as {back:?}"))
}

/// One message line, decoded both as a request (the broker's side) and as a response (the
/// client's side); what decodes must round-trip, and an `Open` request is validated.
pub fn protocol_message(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    if let Ok(req) = protocol::decode::<protocol::Request>(data) {
        roundtrip(&req)?;
        if let protocol::Request::Open(o) = &req {
            let _ = o.validate();
        }
    }
    if let Ok(resp) = protocol::decode::<protocol::Response>(data) {
        roundtrip(&resp)?;
    }
    Ok(())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The client's receive path: the input is the byte stream from the broker, cut into writes at
/// each `0x01` byte (removed); a write that starts with `0x02` (removed) carries a descriptor,
/// one with `0x03` carries two. The responses the client returns must be the lines' decodings,
/// notices set aside, and every descriptor must be closed or handed over exactly once.
pub fn protocol_stream(data: &[u8]) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    let before = open_fds();
    {
        let (server, client) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let (spare_a, spare_b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut sent = Vec::new();
        // At most 32 writes (each is a socket buffer of its own in the kernel: thousands of tiny
        // ones would fill the socket before the client reads).
        let mut chunks: Vec<&[u8]> = data.split(|&b| b == 1).take(32).collect();
        let used: usize = chunks.iter().map(|c| c.len() + 1).sum();
        if used < data.len() {
            chunks.push(&data[used..]);
        }
        for chunk in chunks {
            let (fds, body) = match chunk.first() {
                Some(2) => (1, &chunk[1..]),
                Some(3) => (2, &chunk[1..]),
                _ => (0, chunk),
            };
            if body.is_empty() {
                continue;
            }
            match fds {
                0 => std::io::Write::write_all(&mut &server, body)
                    .map_err(|e| format!("write: {e}"))?,
                _ => {
                    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
                    let raw = [spare_a.as_raw_fd(), spare_b.as_raw_fd()];
                    let cmsg = [ControlMessage::ScmRights(&raw[..fds])];
                    let iov = [std::io::IoSlice::new(body)];
                    let n = sendmsg::<()>(server.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
                        .map_err(|e| format!("sendmsg: {e}"))?;
                    std::io::Write::write_all(&mut &server, &body[n..])
                        .map_err(|e| format!("write: {e}"))?;
                }
            }
            sent.extend_from_slice(body);
        }
        drop(server);
        drop(spare_a);
        drop(spare_b);

        // What the client should return: each complete line's decoding, notices skipped, until
        // the first line that does not decode.
        let mut want = Vec::new();
        let mut lines: Vec<&[u8]> = sent.split(|&b| b == b'\n').collect();
        lines.pop(); // the incomplete tail (or the empty piece after the last newline)
        for l in lines {
            match protocol::decode::<protocol::Response>(l) {
                Ok(protocol::Response::Notice { .. }) => {}
                Ok(r) => want.push(Ok(r)),
                Err(_) => {
                    want.push(Err(()));
                    break;
                }
            }
        }
        let mut c = protocol::Client::from_stream(client);
        let mut got = Vec::new();
        loop {
            match c.recv() {
                Ok((r, fd)) => {
                    drop(fd);
                    got.push(Ok(r));
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    if !e.to_string().contains("too long") {
                        got.push(Err(()));
                    }
                    break;
                }
                Err(_) => break,
            }
            if got.len() > want.len() {
                break;
            }
        }
        check(got == want, || {
            format!("client returned {got:?}, the lines decode to {want:?}")
        })?;
        c.collect_notices();
    }
    let after = open_fds();
    check(after <= before, || {
        format!(
            "{} descriptors leaked ({before} open before, {after} after)",
            after - before
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The sshd_config model.

/// A set of sshd_config files in memory.
struct MemSource(BTreeMap<PathBuf, String>);

impl sshd_config::ConfigSource for MemSource {
    fn read(&self, path: &Path) -> Option<String> {
        self.0.get(path).cloned()
    }
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        self.0
            .keys()
            .filter(|p| {
                p.to_str()
                    .is_some_and(|s| sshd_config::glob_match(pattern, s))
            })
            .cloned()
            .collect()
    }
}

/// The files the sshd_config input is split into (at each NUL byte).
pub const SSHD_FILES: &[&str] = &[
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/10-podspawn.conf",
    "/etc/ssh/sshd_config.d/05-cloud.conf",
    "/etc/ssh/other.conf",
];

/// sshd_config files (Includes, Match blocks, podspawn's marked block, the shadow analysis) and
/// `sshd -T` output. The input is split at NUL bytes into [`SSHD_FILES`]; the last piece is also
/// read as `sshd -T` output.
pub fn sshd(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    let pieces: Vec<String> = data
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let files: BTreeMap<PathBuf, String> = SSHD_FILES
        .iter()
        .zip(&pieces)
        .map(|(p, t)| (PathBuf::from(p), t.clone()))
        .collect();
    let main_text = pieces.first().cloned().unwrap_or_default();
    let src = MemSource(files);
    let main = Path::new(SSHD_FILES[0]);

    for line in main_text.lines() {
        if let Some((k, args)) = sshd_config::directive(line) {
            check(k == k.to_ascii_lowercase(), || {
                format!("keyword {k:?} not lowercase")
            })?;
            let _ = sshd_config::split_args(&args);
            let _ = sshd_config::podspawn_command(&args);
            let _ = sshd_config::is_podspawn_match(&args);
            let _ = sshd_config::is_podspawn_spawn(&args);
        }
    }
    let _ = sshd_config::include_covering(&main_text, Path::new(SSHD_FILES[1]));

    let flat = sshd_config::flatten(main, &src).map_err(|e| format!("flatten: {e}"))?;
    let blocks = sshd_config::block_ranges(&main_text);
    let managed = sshd_config::managed_predicate(
        PathBuf::from(SSHD_FILES[1]),
        main.to_path_buf(),
        blocks.clone(),
    );
    let report = sshd_config::analyze(&flat.directives, &managed);
    let _ = report.definite();
    for d in &flat.directives {
        let _ = d.describe();
    }

    // podspawn's marked block: inserting it and removing it again gives the text without blocks.
    let removed = sshd_config::remove_block(&main_text);
    let block = sshd_config::render_block("/usr/bin/podspawn");
    let inserted = sshd_config::insert_block(&main_text, &block);
    match (&removed, &inserted) {
        (Ok((base, any)), Ok(with)) => {
            check(*any != blocks.is_empty(), || {
                format!("remove_block says {any}, block_ranges found {blocks:?}")
            })?;
            let (again, found) =
                sshd_config::remove_block(with).map_err(|e| format!("inserted block: {e}"))?;
            check(found, || "the inserted block is not found".into())?;
            check(again == *base || again == format!("{base}\n"), || {
                format!("insert then remove gives {again:?}, not {base:?}")
            })?;
            check(sshd_config::block_ranges(with).len() == 1, || {
                format!("{:?} blocks after insert", sshd_config::block_ranges(with))
            })?;
        }
        (Err(_), Err(_)) => {}
        _ => {
            return Err(format!(
                "remove_block {removed:?} and insert_block {inserted:?} disagree"
            ))
        }
    }

    let t = sshd_config::parse_sshd_t(pieces.last().map_or("", String::as_str));
    let spawn = sshd_config::spawn_command("/usr/bin/podspawn", None);
    for (s, b) in [
        (Some(spawn.as_str()), Some("/usr/bin/podspawn")),
        (None, None),
    ] {
        let m = sshd_config::effective_mismatches(&t, s, b);
        let _ = sshd_config::explain_mismatches(&m, &report);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Podfiles.

/// The repository files the Podfile input is split into (at each NUL byte).
pub const PODFILE_FILES: &[&str] = &[
    "podfile.yaml",
    "base.yaml",
    "common/base.yaml",
    ".podspawn/podfile.yaml",
    "a.yaml",
];

/// Podfiles with their `extends` chains, in an in-memory repository: the input is split at NUL
/// bytes into [`PODFILE_FILES`]. What resolves must give a Dockerfile, a stable image tag and
/// expanded environments; errors must point into the file they name.
pub fn podfile(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    let pieces: Vec<String> = data
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let files = podfile::MemFiles(
        PODFILE_FILES
            .iter()
            .zip(&pieces)
            .map(|(p, t)| (p.to_string(), t.clone()))
            .collect(),
    );
    for result in [
        podfile::resolve(&files, "podfile.yaml").map(Some),
        podfile::load(&files),
    ] {
        match result {
            Ok(Some(p)) => {
                let _ = p.dockerfile();
                let tag = p.image_tag("proj", "sha256:0123");
                check(tag == p.image_tag("proj", "sha256:0123"), || {
                    "unstable tag".into()
                })?;
                check(tag.starts_with("podspawn-project-proj:"), || {
                    format!("tag {tag:?}")
                })?;
                let _ = p.env_for("alice", "proj");
                let _ = p.host_binds();
                for s in &p.services {
                    let _ = s.env_for("alice", "proj");
                }
                check(!p.files.is_empty(), || "a Podfile made of no files".into())?;
            }
            Ok(None) => {}
            Err(e) => {
                let text = files.0.get(&e.file).map_or("", String::as_str);
                let lines = yaml_lines(text);
                check(e.line.is_none_or(|l| l >= 1 && l <= lines), || {
                    format!(
                        "error line {:?} outside {} ({lines} lines): {e}",
                        e.line, e.file
                    )
                })?;
                let _ = e.to_string();
            }
        }
    }
    Ok(())
}
