#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/seeds/<target>/ (run from the repository root).

Seeds come from the test fixtures (sshd_config files, the keys of src/core/keys.rs's tests, the
default config) and from small hand-written inputs. Crash inputs found by fuzzing are added to
the same directories by hand (named crash-*), never overwritten here."""
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


# --- keys -----------------------------------------------------------------------------------
src = read("src/core/keys.rs").decode()
keys = {}
for name in ["ED25519", "RSA", "ECDSA256", "ECDSA384", "DSA", "SK_ED25519", "SK_ECDSA"]:
    m = re.search(r'const %s: &str = "(.*?)";' % name, src)
    if m:
        keys[name] = m.group(1)
for name, line in keys.items():
    put("keys", name.lower(), line + "\n")
put("keys", "file", "# alice's keys\n\n%s\n  %s  \r\nnot a key\n%s\n" % (keys["ED25519"], keys["RSA"], keys["ED25519"]))
put("keys", "options", 'alice\nrestrict,command="x" %s\n' % keys["ED25519"])
put("keys", "cert", "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t x\n")
put("keys", "badb64", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyf*nRg x\nssh-rsa QQ==\n")
put("keys", "user", "bob-2\n" + keys["ECDSA256"] + "\n")

# --- config ---------------------------------------------------------------------------------
cfg = read("src/core/config/mod.rs").decode()
m = re.search(r'const DEFAULT_CONFIG_YAML: &str = r#"(.*?)"#;', cfg, re.S)
put("config", "default", m.group(1))
put("config", "empty", "")
put("config", "small", "defaults: {image: 'ubuntu:24.04', cpus: 0.25, memory: 512m}\n"
    "session: {grace_period: 30s, mode: named, max_lifetime: 8h}\n")
put("config", "security", "security:\n  cap_add: [CAP_NET_RAW, SYS_ADMIN]\n  cap_drop: [CAP_ALL]\n"
    "  tmpfs:\n    /tmp: 64m\n  runtime: ''\n  pids_limit: 256\n")
put("config", "user", "image: debian:12\nenv:\n  EDITOR: vim\nshell: /bin/zsh\nmode: named\n")
put("config", "dup", "auth:\n  key_dir: /etc/podspawn/keys\nauth:\n  github_url: https://github.com\n")
put("config", "anchors", "a: &x {b: 1}\ndefaults: *x\nbroker: {socket: /run/podspawn/p.sock}\n")

# --- broker protocol ------------------------------------------------------------------------
msgs = [
    '{"op":"open","project":"","command":"echo hi","tty":false,"term":"xterm-256color","rows":24,"cols":80,"env":[["LANG","C.UTF-8"],["SSH_CONNECTION","127.0.0.1 50022 127.0.0.1 22"]]}',
    '{"op":"resume","project":"web","exec_id":"abc"}',
    '{"op":"resize","rows":50,"cols":200}',
    '{"op":"wait"}',
    '{"op":"list","user":null}',
    '{"op":"stop","user":"alice","project":"web","purge":true}',
    '{"op":"status"}',
    '{"reply":"attached","container":"podspawn-alice","exec_id":"e1","created":true}',
    '{"reply":"ok"}',
    '{"reply":"exited","code":-1}',
    '{"reply":"sessions","sessions":[{"user":"alice","project":"","container":"c","container_id":"id","image":"i","mode":"grace","status":"running","connections":2,"created_at":1,"grace_expiry":null,"expires_at":3}]}',
    '{"reply":"stopped","containers":["c"],"homes":["h"]}',
    '{"reply":"status","snapshot":{"sessions_running":1,"sessions_grace":0,"sessions_idle":0,"connections":1,"containers_docker":1,"oldest_session_seconds":5,"cleanup_passes":2,"removals":{"expired":1}}}',
    '{"reply":"notice","message":"your session ends in 5 minutes"}',
    '{"reply":"error","kind":"limit-reached","message":"too many"}',
    '{"reply":"error","message":"x"}',
    '{"op":"session_dir"}',
    '{"reply":"session_dir","path":"/run/podspawn/sessions/alice"}',
    '{"op":"open","project":"","command":null,"tty":true,"term":"xterm","rows":24,"cols":80,"env":[],"agent":"0123456789abcdef.sock"}',
    '{"reply":"exited","code":130,"signal":2}',
    '{"op":"netns","user":"alice"}',
    '{"reply":"netns","holder":"podspawn-alice.netns"}',
    '{"op":"netns","user":"../../etc"}',
]
for i, m_ in enumerate(msgs):
    put("protocol_message", "msg%02d" % i, m_)
notice = '{"reply":"notice","message":"hi"}\n'
put("protocol_stream", "ok", '{"reply":"ok"}\n')
put("protocol_stream", "notice_then_attached", notice + "\x01\x02" + msgs[7] + "\n")
put("protocol_stream", "split", '{"reply":"ex\x01ited","code":0}\n\x01{"reply":"ok"}\n')
put("protocol_stream", "two_fds", "\x03" + msgs[7] + "\n\x01\x02" + '{"reply":"ok"}\n')
put("protocol_stream", "bad", '{"reply":"ok"}\nnot json\n{"reply":"ok"}\n')

# --- sshd_config ----------------------------------------------------------------------------
fx = "tests/fixtures/sshd/"
for f in sorted(os.listdir(os.path.join(ROOT, fx))):
    put("sshd_config", f, read(fx + f))
dropin = read("systemd/sshd/10-podspawn.conf")
debian = read(fx + "debian12.sshd_config")
put("sshd_config", "debian_with_dropin", debian + b"\0" + dropin + b"\0" + read(fx + "05-cloud-match-all.conf"))
put("sshd_config", "block", b"Port 22\n# BEGIN podspawn (managed by podspawn server-setup)\nMatch Group podspawn-users\n"
    b"  AuthorizedKeysCommand /usr/bin/podspawn auth-keys %u %t %k\n# END podspawn\nMatch all\n  X11Forwarding yes\n")
put("sshd_config", "unclosed", b"Include sshd_config.d/*.conf\n# BEGIN podspawn\nPasswordAuthentication no")
put("sshd_config", "include_glob", b"Include /etc/ssh/sshd_config.d/[0-9]*.conf \"/etc/ssh/other.conf\"\n\0"
    + dropin + b"\0Match all\n AuthorizedKeysFile none\n\0Include=other.conf\n")
put("sshd_config", "sshd_t", b"\0\0\0\0authorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k\n"
    b"forcecommand /usr/bin/podspawn spawn\nacceptenv PODSPAWN_PROJECT LANG LC_*\n"
    b"authorizedkeyscommanduser podspawn\npermittunnel no\n")

# --- Podfiles -------------------------------------------------------------------------------
full = ("# a project\nbase: ubuntu:24.04\npackages: [git, build-essential, node@20, go@1.22.5]\n"
        "env:\n  EDITOR: vim\n  DB: ${PODSPAWN_USER}_db\n  N: 3\n"
        "services:\n  - name: postgres\n    image: postgres:16\n    env: {POSTGRES_PASSWORD: dev}\n"
        "    ports: [5432]\n    volumes: [\"pgdata:/var/lib/postgresql/data\", \"/srv/x:/x:ro\"]\n"
        "on_create: make setup\non_start: [echo one, echo two]\n"
        "extra_commands:\n  - curl -fsSL https://example.com/x | sh\nshell: /bin/zsh\n"
        "resources: {cpus: 1.5, memory: 2g}\nmode: persistent\n")
put("podfile", "full", full)
put("podfile", "extends", "extends: ./base.yaml\npackages: [\"!git\", vim]\nenv: {A: b}\n\0" + full)
put("podfile", "replace", "extends: common/base.yaml\npackages!: [curl]\nservices:\n  postgres: \"!x\"\n\0\0base: debian:12\npackages: [git]\n")
put("podfile", "chain", "extends: a.yaml\n\0base: x\n\0\0\0extends: ./base.yaml\n")
put("podfile", "dotdir", "\0\0base: debian:12\n\0extends: ../common/base.yaml\nshell: /bin/bash\n")
put("podfile", "cycle", "extends: ./podfile.yaml\n")
put("podfile", "errors", "base: a\npackages: [node@abc]\nresources: {cpus: -1}\nunknown: 1\n")

# --- SFTP -----------------------------------------------------------------------------------


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def pkt(kind, body):
    p = bytes([kind]) + body
    return struct.pack(">I", len(p)) + p


def req(kind, rid, body=b""):
    return pkt(kind, struct.pack(">I", rid) + body)


def ext(rid, name, body=b""):
    return req(200, rid, s(name) + body)


u32 = lambda v: struct.pack(">I", v)
u64 = lambda v: struct.pack(">Q", v)
init = pkt(1, u32(3))
h0 = u32(0) + u32(1)  # the first handle the server hands out (slot 0, generation 1)
h1 = u32(1) + u32(2)
attrs_none = u32(0)
attrs_perm = u32(0x4) + u32(0o644)
put("sftp", "init", init)
put("sftp", "realpath", init + req(16, 1, s(".")) + req(16, 2, s("nope/x")) + ext(3, "expand-path@openssh.com", s("~/x")))
put("sftp", "write_read", init + req(3, 1, s("f") + u32(0x1 | 0x2 | 0x8 | 0x10) + attrs_perm)
    + req(6, 2, s(h0) + u64(0) + s("hello world")) + req(5, 3, s(h0) + u64(0) + u32(100))
    + req(5, 4, s(h0) + u64(100) + u32(100)) + req(8, 5, s(h0)) + req(4, 6, s(h0)) + req(4, 7, s(h0)))
put("sftp", "dirs", init + req(14, 1, s("d") + attrs_none) + req(11, 2, s(".")) + req(12, 3, s(h0))
    + req(12, 4, s(h0)) + req(4, 5, s(h0)) + req(15, 6, s("d")) + req(17, 7, s("etc/passwd")) + req(7, 8, s("etc")))
put("sftp", "links", init + req(3, 1, s("a") + u32(0x2 | 0x8) + attrs_none) + req(20, 2, s("a") + s("l"))
    + req(19, 3, s("l")) + ext(4, "hardlink@openssh.com", s("a") + s("b")) + req(18, 5, s("b") + s("c"))
    + ext(6, "posix-rename@openssh.com", s("c") + s("a")) + req(13, 7, s("l")) + req(13, 8, s("a")))
put("sftp", "setstat", init + req(3, 1, s("f") + u32(0x2 | 0x8) + attrs_none)
    + req(9, 2, s("f") + u32(0x1 | 0x4 | 0x8) + u64(10) + u32(0o600) + u32(1) + u32(2))
    + req(10, 3, s(h0) + u32(0x2) + u32(0) + u32(0)) + ext(4, "lsetstat@openssh.com", s("f") + u32(0x4) + u32(0o755))
    + ext(5, "fsync@openssh.com", s(h0)) + ext(6, "fstatvfs@openssh.com", s(h0)) + ext(7, "statvfs@openssh.com", s(".")))
put("sftp", "extensions", init + ext(1, "limits@openssh.com") + ext(2, "home-directory", s("alice"))
    + ext(3, "home-directory", s("")) + ext(4, "nope@example.com") + req(99, 5)
    + req(9, 6, s("f") + u32(0x80000000) + u32(1) + s("k") + s("v")))
put("sftp", "copy_data", init + req(3, 1, s("a") + u32(0x1 | 0x2 | 0x8) + attrs_none)
    + req(6, 2, s(h0) + u64(0) + s("0123456789"))
    + req(3, 3, s("b") + u32(0x1 | 0x2 | 0x8 | 0x20) + attrs_none)
    + ext(4, "copy-data", s(h0) + u64(2) + u64(5) + s(h1) + u64(1)) + req(5, 5, s(h1) + u64(0) + u32(10)))
put("sftp", "malformed", init + pkt(3, u32(7) + u32(100)) + pkt(5, b""))
put("sftp", "before_init", req(16, 1, s(".")))
put("sftp", "passwd", b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/bash\nstaff:x:50:\n")
