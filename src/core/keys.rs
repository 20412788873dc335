//! Public keys (pure): parsing and validating authorized_keys lines with `ssh-key`. Key lines
//! podspawn keeps hold no options (`<algorithm> <base64> [comment]`).

/// Longest accepted public key line (an RSA-16384 key is about 2.8 KiB).
pub const MAX_LINE_LEN: usize = 16 * 1024;
/// Largest accepted key file.
pub const MAX_FILE_LEN: u64 = 1024 * 1024;

/// Every OpenSSH public key type podspawn accepts. Certificates (`*-cert-v01@openssh.com`) are not
/// keys and are refused; so are algorithms OpenSSH does not know.
pub const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
    "ssh-dss",
];

/// authorized_keys option names, to recognise a line that starts with options.
const OPTION_NAMES: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "command",
    "environment",
    "expiry-time",
    "from",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "permitlisten",
    "permitopen",
    "port-forwarding",
    "principals",
    "pty",
    "restrict",
    "tunnel",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// One bare public key (no options), as stored in `/etc/podspawn/keys/<user>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// e.g. `ssh-ed25519`, `sk-ssh-ed25519@openssh.com`.
    pub algorithm: String,
    /// The base64 key blob exactly as sshd passes it in `%k`.
    pub data: String,
    /// May be empty.
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

fn err<T>(msg: impl Into<String>) -> Result<T, KeyError> {
    Err(KeyError(msg.into()))
}

/// Is `alg` one of [`ALGORITHMS`]?
pub fn is_known_algorithm(alg: &str) -> bool {
    ALGORITHMS.contains(&alg)
}

/// A short, escaped rendering of untrusted text for messages.
pub fn preview(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

impl PublicKey {
    /// Parses and validates one bare OpenSSH public key line: `<algorithm> <base64> [comment]`.
    pub fn parse(line: &str) -> Result<PublicKey, KeyError> {
        if line.len() > MAX_LINE_LEN {
            return err(format!(
                "the line is {} bytes long, more than the 16 KiB a public key line can have: \
                 put one key per line",
                line.len()
            ));
        }
        let line = line.trim_matches([' ', '\t', '\r', '\n']);
        if line.is_empty() {
            return err(
                "empty line: give a public key line such as \"ssh-ed25519 AAAA... alice@laptop\" \
                 (the contents of ~/.ssh/id_ed25519.pub)",
            );
        }
        if line.starts_with('#') {
            return err("this is a comment line, not a public key");
        }
        let (alg, rest) = split_field(line);
        if !is_known_algorithm(alg) {
            return Err(unknown_first_field(line, alg));
        }
        let (data, comment) = split_field(rest);
        if data.is_empty() {
            return err(format!(
                "the key data is missing after {alg}: give the whole line of the .pub file, \
                 \"{alg} AAAA... comment\""
            ));
        }
        let blob = base64_decode(data).map_err(|why| {
            KeyError(format!(
                "the key data is not valid base64 ({why}): copy the whole line again from the \
                 .pub file (it may have been cut or wrapped)"
            ))
        })?;
        let mut reader = SshReader::new(&blob);
        let blob_alg = reader
            .string()
            .ok()
            .and_then(|b| std::str::from_utf8(b).ok());
        match blob_alg {
            Some(b) if b == alg => {}
            Some(b) if is_known_algorithm(b) => {
                return err(format!(
                    "the line says {alg} but the key data is a {b} key: fix the first word or \
                     copy the whole line again from the .pub file"
                ))
            }
            Some(b) => {
                return err(format!(
                    "the line says {alg} but the key data is of type {}: copy the whole line \
                     again from the .pub file",
                    preview(b)
                ))
            }
            None => {
                return err(
                    "the key data is truncated or is not an SSH public key: copy the whole line \
                     again from the .pub file",
                )
            }
        }
        validate_blob(alg, data, &blob)?;
        let comment = comment.trim_matches([' ', '\t']);
        if let Some(c) = comment.chars().find(|c| c.is_control()) {
            return err(format!(
                "the comment {} contains the control character {c:?}: remove it (the comment \
                 is only a label)",
                preview(comment)
            ));
        }
        if comment.contains('"') {
            return err(format!(
                "the comment {} contains a double quote: remove it (the comment is only a label)",
                preview(comment)
            ));
        }
        Ok(PublicKey {
            algorithm: alg.to_string(),
            data: data.to_string(),
            comment: comment.to_string(),
        })
    }

    /// `<algorithm> <data>[ <comment>]`.
    pub fn to_line(&self) -> String {
        if self.comment.is_empty() {
            format!("{} {}", self.algorithm, self.data)
        } else {
            format!("{} {} {}", self.algorithm, self.data, self.comment)
        }
    }

    /// Same key material (algorithm and data); comments are ignored.
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.algorithm == other.algorithm && self.data == other.data
    }
}

/// Splits off the first space/tab-separated field; the rest has its leading blanks removed.
fn split_field(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

/// Explains why the first field of `line` is not a key type.
fn unknown_first_field(line: &str, first: &str) -> KeyError {
    if starts_with_options(line) {
        return KeyError(format!(
            "the line starts with authorized_keys options ({}): remove the options; podspawn \
             adds its own",
            preview(first)
        ));
    }
    if first.ends_with("-cert-v01@openssh.com") {
        return KeyError(format!(
            "{} is a certificate, not a public key: register the plain public key (the .pub \
             file without -cert)",
            preview(first)
        ));
    }
    if first.starts_with("-----BEGIN") || first == "---- BEGIN" || first == "----" {
        return KeyError(
            "this is not an OpenSSH public key line (a PEM/RFC 4716 block or a private key?): \
             give the one-line contents of the .pub file, or convert it with \
             `ssh-keygen -i -f FILE`"
                .into(),
        );
    }
    if first.starts_with("AAAA") {
        return KeyError(
            "the key type is missing: the line must start with it, e.g. \"ssh-ed25519 AAAA...\""
                .into(),
        );
    }
    KeyError(format!(
        "unknown key type {}: expected one of {}",
        preview(first),
        ALGORITHMS.join(", ")
    ))
}

/// Does `line` begin with authorized_keys options (`command="…",no-pty ssh-ed25519 …`)?
fn starts_with_options(line: &str) -> bool {
    // Skip the option string the way sshd does: up to the first blank outside double quotes.
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let opts = &line[..end];
    let rest = line[end..].trim_start_matches([' ', '\t']);
    let (next, _) = split_field(rest);
    if is_known_algorithm(next) || next.ends_with("-cert-v01@openssh.com") {
        return true;
    }
    let name_end = opts.find(['=', ',']).unwrap_or(opts.len());
    let name = opts[..name_end].to_ascii_lowercase();
    OPTION_NAMES.contains(&name.as_str())
}

/// Why a key's base64 does not decode (shown inside the key's error message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base64Error {
    Length(usize),
    MisplacedPadding,
    Byte(u8),
    NonCanonical,
}

impl std::fmt::Display for Base64Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Base64Error::Length(n) => write!(f, "its length {n} is not a multiple of 4"),
            Base64Error::MisplacedPadding => f.write_str("misplaced '=' padding"),
            Base64Error::Byte(c) if c.is_ascii_graphic() => {
                write!(f, "unexpected character {:?}", char::from(c))
            }
            Base64Error::Byte(c) => write!(f, "unexpected byte 0x{c:02x}"),
            Base64Error::NonCanonical => f.write_str("non-canonical padding bits"),
        }
    }
}

/// Strict, canonical standard base64 (with padding), as OpenSSH writes it.
fn base64_decode(s: &str) -> Result<Vec<u8>, Base64Error> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(Base64Error::Length(bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (n, chunk) in bytes.chunks(4).enumerate() {
        let last = (n + 1) * 4 == bytes.len();
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(Base64Error::MisplacedPadding);
        }
        let mut acc: u32 = 0;
        for &c in &chunk[..4 - pad] {
            let v = val(c).ok_or(Base64Error::Byte(c))?;
            acc = (acc << 6) | v;
        }
        match pad {
            0 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            1 => {
                if acc & 0x3 != 0 {
                    return Err(Base64Error::NonCanonical);
                }
                let acc = acc >> 2;
                out.extend_from_slice(&[(acc >> 8) as u8, acc as u8]);
            }
            _ => {
                if acc & 0xf != 0 {
                    return Err(Base64Error::NonCanonical);
                }
                out.push((acc >> 4) as u8);
            }
        }
    }
    Ok(out)
}

/// Reads SSH wire-format strings (`uint32 length || bytes`).
struct SshReader<'a> {
    buf: &'a [u8],
}

impl<'a> SshReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        SshReader { buf }
    }
    fn string(&mut self) -> Result<&'a [u8], ()> {
        let (len, rest) = self.buf.split_first_chunk::<4>().ok_or(())?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(());
        }
        let (s, rest) = rest.split_at(len);
        self.buf = rest;
        Ok(s)
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn is_ecdsa_family(alg: &str) -> bool {
    alg.starts_with("ecdsa-sha2-") || alg == "sk-ecdsa-sha2-nistp256@openssh.com"
}

/// Validates the decoded key blob with the `ssh-key` crate.
fn validate_blob(alg: &str, data: &str, blob: &[u8]) -> Result<(), KeyError> {
    let text = format!("{alg} {data}");
    match ssh_key::PublicKey::from_openssh(&text) {
        Ok(key) => {
            if key.key_data().is_other() || key.algorithm().as_str() != alg {
                return err(format!("unknown key type {}", preview(alg)));
            }
            // sshd re-encodes the key it parsed for %k; a non-canonical blob would never match.
            match key.to_bytes() {
                Ok(b) if b == blob => Ok(()),
                _ => err(format!(
                    "the {alg} key data is not in canonical form: copy the whole line again \
                     from the .pub file"
                )),
            }
        }
        // ssh-key is built without its `ecdsa` feature: it recognises the ECDSA algorithms but
        // cannot decode them, so check their structure here.
        Err(ssh_key::Error::AlgorithmUnknown | ssh_key::Error::AlgorithmUnsupported { .. })
            if is_ecdsa_family(alg) =>
        {
            validate_ecdsa_blob(alg, blob)
        }
        Err(e) => err(describe_ssh_key_error(alg, &e)),
    }
}

fn describe_ssh_key_error(alg: &str, e: &ssh_key::Error) -> String {
    match e {
        ssh_key::Error::TrailingData { remaining } => format!(
            "the {alg} key data has {remaining} unexpected trailing byte(s): copy the whole line \
             again from the .pub file"
        ),
        ssh_key::Error::AlgorithmUnknown | ssh_key::Error::AlgorithmUnsupported { .. } => {
            format!("the key data does not hold a valid {alg} key")
        }
        other => format!(
            "the key data is not a valid {alg} key ({other}): copy the whole line again from \
             the .pub file"
        ),
    }
}

/// `ecdsa-sha2-nistpN`: string alg, string curve, string Q (uncompressed point).
/// `sk-ecdsa-sha2-nistp256@openssh.com`: the same for nistp256, then string application.
fn validate_ecdsa_blob(alg: &str, blob: &[u8]) -> Result<(), KeyError> {
    let (curve, coord_len, sk) = match alg {
        "ecdsa-sha2-nistp256" => ("nistp256", 32, false),
        "ecdsa-sha2-nistp384" => ("nistp384", 48, false),
        "ecdsa-sha2-nistp521" => ("nistp521", 66, false),
        "sk-ecdsa-sha2-nistp256@openssh.com" => ("nistp256", 32, true),
        _ => return err(format!("unknown key type {}", preview(alg))),
    };
    let bad = || KeyError(format!("the key data does not hold a valid {alg} key"));
    let mut r = SshReader::new(blob);
    r.string().map_err(|_| bad())?; // algorithm, checked by the caller
    let c = r.string().map_err(|_| bad())?;
    if c != curve.as_bytes() {
        return err(format!(
            "the key data of this {alg} key names the curve {}, not {curve}",
            preview(&String::from_utf8_lossy(c))
        ));
    }
    let q = r.string().map_err(|_| bad())?;
    if q.len() != 1 + 2 * coord_len || q.first() != Some(&0x04) {
        return Err(bad());
    }
    if sk {
        let app = r.string().map_err(|_| bad())?;
        if std::str::from_utf8(app).is_err() {
            return Err(bad());
        }
    }
    if !r.is_empty() {
        return err(format!(
            "the {alg} key data has unexpected trailing bytes: copy the whole line again from \
             the .pub file"
        ));
    }
    Ok(())
}

/// Parses a file's worth of key lines. Blank lines and `#` comment lines are skipped; invalid
/// lines are returned with their 1-based line number.
pub fn parse_keys(text: &str) -> (Vec<PublicKey>, Vec<(usize, KeyError)>) {
    parse_key_bytes(text.as_bytes())
}

/// Like [`parse_keys`], for bytes that may not be UTF-8 (a line that is not is an invalid line).
pub fn parse_key_bytes(bytes: &[u8]) -> (Vec<PublicKey>, Vec<(usize, KeyError)>) {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l,
            Err(_) => {
                bad.push((n, KeyError("the line is not valid UTF-8".into())));
                continue;
            }
        };
        let trimmed = line.trim_matches([' ', '\t', '\r']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match PublicKey::parse(trimmed) {
            Ok(k) => keys.push(k),
            Err(e) => bad.push((n, e)),
        }
    }
    (keys, bad)
}

/// Drops later duplicates (same algorithm and data), keeping the first occurrence.
pub fn dedupe(keys: Vec<PublicKey>) -> Vec<PublicKey> {
    let mut out: Vec<PublicKey> = Vec::with_capacity(keys.len());
    for k in keys {
        if !out.iter().any(|o| o.same_key(&k)) {
            out.push(k);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Generated on this machine with `ssh-keygen -t … -N ''`.
    pub(crate) const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4Zou test-ed25519@podspawn";
    pub(crate) const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDDLEyR1Ktw2WvjQju6iJueKRMBQAEiwDcugfGC6c5c5Pbp+lIU8aRFrRl7BjcqWlN+gT37oTuWYqv81oEZ0tZPzfC8Q95xqklnXQC2/8s8jPGr/tbUCJ42fP0kbrwc9ihGUgOULT/C5UCYOs+6arrp4HQ8WjsLpt09X3VNCdZFTIN808w6gAZBw8s6DzutvbBxo8gb4UHz8UvK3gaVL5/03FWBr837IoK2HR1oCIYSZCBPHG84tdTgEhQpCbwSa6UaPzM/NLGfaqMtQhvIyHE/udKEHBRLRQCtmoibwcJkV6MaeFl6O0GtYHTpPa1hNjiY4or8OJt8uq7lCDw2vCFX test-rsab2048@podspawn";
    const ECDSA256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLhGc1+TLq4ogDMPBg0gJUXeeo48xhBRoAgZzMxZIDhZg4i44m8/wDGJU6gKbTafgOZJlJeUzBhrdzlZdgJjamc= test-ecdsab256@podspawn";
    const ECDSA384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBJHOcBegC4xkkgUpVoVdBwk+xjqaiICi3EM8hvOriaGRaA3Duou+dqMBTC3xdHSNeflFFHco3Ulk/UMKRmwqN4YISHdnp2een6Bfnfpq3SGWjIXGsCWd9jINkTKB7arT0A== test-ecdsab384@podspawn";
    const ECDSA521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAAVyRAZEVAkpFXSla/k+hMAG/O+9cEo2eyc/Zi2NqbyBvuyjM5wh78gWmofPnAbkVH5hoEGgD79jNA/Up4hhYDOrQBIaXIdMjxw8lKd66bHmSSlUfBPEqI2VPQNegH+VISrPGZrn5vmlwey/+jigGK5k5EKKm4HGGC0WM633fdy+h0TRw== test-ecdsab521@podspawn";
    const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAMsnkjNG/Ygk9sCy1ymLQBkYUnPPCp5cwQUoXwcCODlSIDEWBp0N6eAaswKmE5VT0o5TlYsJywp+yD+TLh9H0xQmDt+xNUa8WgaAV3R02lu60HSFFwOTHTwRG8soqgVMA7wTKg5nuW/YXjtLBXaZP0zXwQW0Jxj64n2GfABQaK+BAAAAFQCVjjjtOrew925p4qNnLww1aeBIFwAAAIAca66LOEWRwsyeIQl1nW7neXnPrsAwer+GNrtLyXqpEx7r5y/SbNccA3nsiynYWePN3eFAlmSpkHVyTok9NHDSzX0ym6pfSx3Kw7Tnuiw7HBXRYdkOmEKOySs6IZ7cQ//LAR7dF689wOF4tIu0ceRvJWNb7PQKkrvOHXSndIJ1vQAAAIBF4kyrdPGYnCqFnap5UzsY5MGw4tQrN8W+CVT9ExrPxekuqELUvG123AWDxIUVq3FDll6wpFDW+h6IJeG4zElrfL78dGUqO1SnHMWYs0XEGZPGuya1PrvKbmpulMiClzjc+srr6HqeejDa300GZ5z1otdzLNxi7ABlS24Qxa4otg== test-dsa@podspawn";
    // Security-key blobs built by hand (string alg, [curve,] point/key, application "ssh:") from
    // the keys above; `ssh-keygen -l -f` accepts both.
    const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4ZouAAAABHNzaDo= test-sked@podspawn";
    pub(crate) const SK_ECDSA: &str = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBLhGc1+TLq4ogDMPBg0gJUXeeo48xhBRoAgZzMxZIDhZg4i44m8/wDGJU6gKbTafgOZJlJeUzBhrdzlZdgJjamcAAAAEc3NoOg== test-skec@podspawn";

    const ALL: &[&str] = &[
        ED25519, RSA, ECDSA256, ECDSA384, ECDSA521, DSA, SK_ED25519, SK_ECDSA,
    ];

    fn field(line: &str, n: usize) -> &str {
        line.split(' ').nth(n).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    fn sshstr(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    fn parse_err(line: &str) -> String {
        PublicKey::parse(line).unwrap_err().0
    }

    #[test]
    fn parses_every_key_type() {
        for line in ALL {
            let k = PublicKey::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(k.algorithm, field(line, 0));
            assert_eq!(k.data, field(line, 1));
            assert!(k.comment.starts_with("test-"));
            assert_eq!(k.to_line(), *line);
        }
        let algs: Vec<String> = ALL
            .iter()
            .map(|l| PublicKey::parse(l).unwrap().algorithm)
            .collect();
        for a in ALGORITHMS {
            assert!(algs.iter().any(|x| x == a), "no test key for {a}");
        }
    }

    #[test]
    fn comment_whitespace_and_missing_comment() {
        let bare = format!("{} {}", field(ED25519, 0), field(ED25519, 1));
        let k = PublicKey::parse(&bare).unwrap();
        assert_eq!(k.comment, "");
        assert_eq!(k.to_line(), bare);
        let k = PublicKey::parse(&format!("  {bare}\t  alice laptop 2 \r\n")).unwrap();
        assert_eq!(k.comment, "alice laptop 2");
        let k =
            PublicKey::parse(&format!("{}\t{}\tx", field(ED25519, 0), field(ED25519, 1))).unwrap();
        assert_eq!(k.comment, "x");
    }

    #[test]
    fn rejects_options() {
        for line in [
            format!("command=\"x\" {ED25519}"),
            format!("command=\"echo hi there\",no-pty {ED25519}"),
            format!("restrict {RSA}"),
            format!("no-pty,from=\"10.0.0.1\" {SK_ED25519}"),
            "restrict garbage".to_string(),
            format!("cert-authority {}", "ssh-ed25519-cert-v01@openssh.com AAAA"),
        ] {
            let e = parse_err(&line);
            assert!(
                e.contains("remove the options; podspawn adds its own"),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn rejects_unknown_algorithms_and_other_formats() {
        let e = parse_err(&format!("ssh-foo {}", field(ED25519, 1)));
        assert!(e.contains("unknown key type \"ssh-foo\""), "{e}");
        assert!(e.contains("ssh-ed25519"), "{e}");
        let e = parse_err("ssh-xmss@openssh.com AAAA");
        assert!(e.contains("unknown key type"), "{e}");
        let e = parse_err("ssh-ed25519-cert-v01@openssh.com AAAAB3 x");
        assert!(e.contains("certificate"), "{e}");
        let e = parse_err("-----BEGIN OPENSSH PRIVATE KEY-----");
        assert!(e.contains("not an OpenSSH public key line"), "{e}");
        let e = parse_err(field(ED25519, 1));
        assert!(e.contains("key type is missing"), "{e}");
    }

    #[test]
    fn rejects_bad_base64() {
        let data = field(ED25519, 1);
        for bad in [
            format!("ssh-ed25519 {}", &data[..data.len() - 1]),
            format!("ssh-ed25519 {}!", &data[..data.len() - 1]),
            format!("ssh-ed25519 ={}", &data[1..]),
        ] {
            let e = parse_err(&bad);
            assert!(e.contains("not valid base64"), "{bad}: {e}");
        }
        // Non-canonical trailing bits ("o=" -> "p=" at the end).
        let sk = field(SK_ED25519, 1);
        assert!(sk.ends_with("o="));
        let e = parse_err(&format!(
            "sk-ssh-ed25519@openssh.com {}p=",
            &sk[..sk.len() - 2]
        ));
        assert!(e.contains("non-canonical"), "{e}");
        // Valid base64 of a truncated blob.
        let e = parse_err(&format!("ssh-ed25519 {}", &data[..data.len() - 4]));
        assert!(e.contains("not a valid ssh-ed25519 key"), "{e}");
        // Valid base64, not an SSH blob at all.
        let e = parse_err("ssh-ed25519 aGVsbG8gd29ybGQ=");
        assert!(e.contains("truncated or is not an SSH public key"), "{e}");
        let e = parse_err("ssh-ed25519");
        assert!(e.contains("key data is missing"), "{e}");
    }

    #[test]
    fn rejects_algorithm_mismatch() {
        let e = parse_err(&format!("ssh-rsa {}", field(ED25519, 1)));
        assert!(
            e.contains("says ssh-rsa but the key data is a ssh-ed25519 key"),
            "{e}"
        );
        let e = parse_err(&format!("ssh-ed25519 {}", field(SK_ED25519, 1)));
        assert!(e.contains("sk-ssh-ed25519@openssh.com key"), "{e}");
        let e = parse_err(&format!("ecdsa-sha2-nistp384 {}", field(ECDSA256, 1)));
        assert!(e.contains("ecdsa-sha2-nistp256 key"), "{e}");
        let e = parse_err(&format!("rsa-sha2-256 {}", field(RSA, 1)));
        assert!(e.contains("unknown key type"), "{e}");
    }

    #[test]
    fn rejects_malformed_blobs() {
        // ed25519 with a 31-byte key.
        let mut blob = sshstr(b"ssh-ed25519");
        blob.extend(sshstr(&[7u8; 31]));
        assert!(PublicKey::parse(&format!("ssh-ed25519 {}", b64(&blob))).is_err());
        // ed25519 with trailing data.
        let mut blob = sshstr(b"ssh-ed25519");
        blob.extend(sshstr(&[7u8; 32]));
        blob.extend([0u8; 3]);
        let e = parse_err(&format!("ssh-ed25519 {}", b64(&blob)));
        assert!(e.contains("trailing"), "{e}");
        // ecdsa with the wrong curve name, wrong point size, compressed point, trailing data.
        let good = base64_decode(field(ECDSA256, 1)).unwrap();
        let mut r = SshReader::new(&good);
        let (_, _, q) = (
            r.string().unwrap(),
            r.string().unwrap(),
            r.string().unwrap(),
        );
        let mk = |curve: &[u8], q: &[u8], extra: &[u8]| {
            let mut b = sshstr(b"ecdsa-sha2-nistp256");
            b.extend(sshstr(curve));
            b.extend(sshstr(q));
            b.extend_from_slice(extra);
            format!("ecdsa-sha2-nistp256 {}", b64(&b))
        };
        assert!(PublicKey::parse(&mk(b"nistp256", q, b"")).is_ok());
        assert!(parse_err(&mk(b"nistp384", q, b"")).contains("names the curve"));
        assert!(PublicKey::parse(&mk(b"nistp256", &q[..64], b"")).is_err());
        let mut compressed = q[..33].to_vec();
        compressed[0] = 2;
        assert!(PublicKey::parse(&mk(b"nistp256", &compressed, b"")).is_err());
        assert!(parse_err(&mk(b"nistp256", q, b"\0")).contains("trailing"));
        // sk-ecdsa without its application string.
        let mut b = sshstr(b"sk-ecdsa-sha2-nistp256@openssh.com");
        b.extend(sshstr(b"nistp256"));
        b.extend(sshstr(q));
        assert!(
            PublicKey::parse(&format!("sk-ecdsa-sha2-nistp256@openssh.com {}", b64(&b))).is_err()
        );
        b.extend(sshstr(b"ssh:"));
        assert!(
            PublicKey::parse(&format!("sk-ecdsa-sha2-nistp256@openssh.com {}", b64(&b))).is_ok()
        );
        // RSA with a non-canonical (zero-padded) exponent mpint.
        let rsa = base64_decode(field(RSA, 1)).unwrap();
        let mut r = SshReader::new(&rsa);
        let (_, e, n) = (
            r.string().unwrap(),
            r.string().unwrap(),
            r.string().unwrap(),
        );
        let mut padded = vec![0u8];
        padded.extend_from_slice(e);
        let mut b = sshstr(b"ssh-rsa");
        b.extend(sshstr(&padded));
        b.extend(sshstr(n));
        assert!(PublicKey::parse(&format!("ssh-rsa {}", b64(&b))).is_err());
    }

    #[test]
    fn rejects_bad_comments_empty_and_long_lines() {
        let bare = format!("{} {}", field(ED25519, 0), field(ED25519, 1));
        let e = parse_err(&format!("{bare} a\u{1b}[31mb"));
        assert!(e.contains("control character"), "{e}");
        let e = parse_err(&format!("{bare} a\tb"));
        assert!(e.contains("control character"), "{e}");
        let e = parse_err(&format!("{bare} say \"hi\""));
        assert!(e.contains("double quote"), "{e}");
        let e = parse_err(&format!("{bare} a\nb"));
        assert!(e.contains("control character"), "{e}");
        for empty in ["", "   ", "\n", "\t\r\n"] {
            assert!(parse_err(empty).contains("empty line"));
        }
        assert!(parse_err("# hello").contains("comment line"));
        let long = format!("{bare} {}", "x".repeat(MAX_LINE_LEN));
        assert!(parse_err(&long).contains("16 KiB"));
        // Just under the limit is fine.
        let ok = format!("{bare} {}", "x".repeat(MAX_LINE_LEN - bare.len() - 1));
        assert_eq!(ok.len(), MAX_LINE_LEN);
        assert!(PublicKey::parse(&ok).is_ok());
    }

    #[test]
    fn base64_roundtrip() {
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&b64(&v)).unwrap(), v);
        }
        assert_eq!(base64_decode("QQ"), Err(Base64Error::Length(2)));
        assert_eq!(base64_decode("Q==="), Err(Base64Error::MisplacedPadding));
        assert_eq!(
            base64_decode("QQ==QQ=="),
            Err(Base64Error::MisplacedPadding)
        );
        assert_eq!(base64_decode("QR=="), Err(Base64Error::NonCanonical));
        assert_eq!(base64_decode("QQ*="), Err(Base64Error::Byte(b'*')));
        assert_eq!(
            Base64Error::Byte(b'*').to_string(),
            "unexpected character '*'"
        );
        assert_eq!(Base64Error::Byte(0).to_string(), "unexpected byte 0x00");
        assert_eq!(
            Base64Error::Length(2).to_string(),
            "its length 2 is not a multiple of 4"
        );
    }

    #[test]
    fn same_key_dedupe_and_parse_keys() {
        let a = PublicKey::parse(ED25519).unwrap();
        let mut a2 = a.clone();
        a2.comment = "other".into();
        let b = PublicKey::parse(RSA).unwrap();
        assert!(a.same_key(&a2));
        assert!(!a.same_key(&b));
        let d = dedupe(vec![a.clone(), b.clone(), a2.clone(), b.clone()]);
        assert_eq!(d, vec![a.clone(), b.clone()]);

        let text = format!(
            "# keys\n\n{ED25519}\r\ncommand=\"x\" {RSA}\n   \n  # indented comment\nnonsense\n{SK_ECDSA}"
        );
        let (keys, bad) = parse_keys(&text);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], a);
        assert_eq!(keys[1].algorithm, "sk-ecdsa-sha2-nistp256@openssh.com");
        assert_eq!(bad.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![4, 7]);
        assert!(bad[0].1 .0.contains("remove the options"));

        let (keys, bad) = parse_key_bytes(b"\xff\xfe\n");
        assert!(keys.is_empty());
        assert_eq!(bad[0].0, 1);
    }
}
