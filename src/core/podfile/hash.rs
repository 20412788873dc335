//! The image tag: SHA-256 (FIPS 180-4, written here and checked against the standard's test
//! vectors, so no hash crate is needed) over a canonical serialisation of the resolved Podfile.
//!
//! Canonical means: every field in a fixed order, each string length-prefixed (so no two
//! different Podfiles encode alike), maps in key order, packages sorted (apt and the recipes do
//! not depend on their order). Key order, comments, YAML style and the split into `extends`
//! files therefore do not change the tag; any change of content, of the generated Dockerfile
//! (e.g. a recipe podspawn changed), of the project name or of the base image ID does.

use super::Podfile;

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

fn compress(state: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 64];
    for (i, chunk) in block.chunks_exact(4).enumerate().take(16) {
        w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut state = H0;
    let mut chunks = data.chunks_exact(64);
    for block in &mut chunks {
        compress(&mut state, block);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut out = [0u8; 32];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_be_bytes());
    }
    out
}

/// SHA-256 of `data` as 64 lowercase hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Length-prefixed, tagged fields: `name=<len>:<bytes>;`.
struct Canon(Vec<u8>);

impl Canon {
    fn str(&mut self, name: &str, value: &str) {
        self.0
            .extend_from_slice(format!("{name}={}:", value.len()).as_bytes());
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(b';');
    }
    fn list<'a>(&mut self, name: &str, values: impl ExactSizeIterator<Item = &'a str>) {
        self.str(name, &values.len().to_string());
        for v in values {
            self.str("-", v);
        }
    }
}

/// The canonical bytes hashed for the tag.
pub(super) fn canonical(p: &Podfile, project: &str, base_image_id: &str) -> Vec<u8> {
    let mut c = Canon(Vec::new());
    c.str("podspawn-podfile", "1");
    c.str("project", project);
    c.str("base-image-id", base_image_id);
    c.str("base", &p.base);
    let mut packages: Vec<String> = p.packages.iter().map(|p| p.to_string()).collect();
    packages.sort();
    c.list("packages", packages.iter().map(String::as_str));
    c.str("env", &p.env.len().to_string());
    for (k, v) in &p.env {
        c.str("k", k);
        c.str("v", v);
    }
    c.str("services", &p.services.len().to_string());
    for s in &p.services {
        c.str("name", &s.name);
        c.str("image", &s.image);
        c.str("env", &s.env.len().to_string());
        for (k, v) in &s.env {
            c.str("k", k);
            c.str("v", v);
        }
        let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
        c.list("ports", ports.iter().map(String::as_str));
        c.str("volumes", &s.volumes.len().to_string());
        for v in &s.volumes {
            match &v.source {
                super::VolumeSource::Named(n) => c.str("named", n),
                super::VolumeSource::HostBind(h) => c.str("bind", h),
            }
            c.str("target", &v.target);
            c.str("ro", if v.read_only { "1" } else { "0" });
        }
    }
    c.list("on_create", p.on_create.iter().map(String::as_str));
    c.list("on_start", p.on_start.iter().map(String::as_str));
    c.list(
        "extra_commands",
        p.extra_commands.iter().map(String::as_str),
    );
    c.str("shell", p.shell.as_deref().unwrap_or(""));
    // f64's Display is the shortest text that reads back to the same value.
    c.str(
        "cpus",
        &p.resources.cpus.map(|n| n.to_string()).unwrap_or_default(),
    );
    c.str(
        "memory",
        &p.resources
            .memory
            .map(|n| n.to_string())
            .unwrap_or_default(),
    );
    c.str("mode", p.mode.map(|m| m.as_str()).unwrap_or(""));
    // What is built from it: a change in the generator (a recipe, quoting) is a new image too.
    c.str("dockerfile", &super::dockerfile::generate(p));
    c.0
}

pub(super) fn content_hash(p: &Podfile, project: &str, base_image_id: &str) -> String {
    sha256_hex(&canonical(p, project, base_image_id))
}

pub(super) fn image_repository(project: &str) -> String {
    let mut name: String = project
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() {
        "podspawn-project".to_string()
    } else {
        format!("podspawn-project-{name}")
    }
}

pub(super) fn image_tag(p: &Podfile, project: &str, base_image_id: &str) -> String {
    let hash = content_hash(p, project, base_image_id);
    let short = hash.get(..12).unwrap_or(&hash);
    format!("{}:{short}", image_repository(project))
}
