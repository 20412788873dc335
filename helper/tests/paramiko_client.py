"""A second SFTP client implementation against podspawn-helper's sftp-server: paramiko, over a
pair of pipes to the helper (no SSH). Run by sftp_paramiko.rs:
    python paramiko_client.py HELPER SCRATCH_DIR OWNER_NAME
Prints OK at the end; any failed check raises (non-zero exit)."""

import hashlib
import os
import select
import stat
import subprocess
import sys

import paramiko

helper, root, owner = sys.argv[1], sys.argv[2], sys.argv[3]
home, local = os.path.join(root, "home"), os.path.join(root, "local")
os.makedirs(home)
os.makedirs(local)


class Pipe:
    """What paramiko.SFTPClient needs of its channel: send, recv, recv_ready, close, get_name."""

    def __init__(self, proc):
        self.proc = proc

    def send(self, data):
        return os.write(self.proc.stdin.fileno(), data)

    def recv(self, n):
        return os.read(self.proc.stdout.fileno(), n)

    def recv_ready(self):
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def close(self):
        self.proc.stdin.close()

    def get_name(self):
        return "podspawn-helper"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(errno_wanted, fn, *args):
    try:
        fn(*args)
    except IOError as e:
        check(e.errno == errno_wanted, f"{fn.__name__}{args}: errno {e.errno}, wanted {errno_wanted}")
        return
    raise AssertionError(f"{fn.__name__}{args} did not fail")


proc = subprocess.Popen([helper, "sftp-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        env=dict(os.environ, HOME=home))
sftp = paramiko.SFTPClient(Pipe(proc))

check(sftp.normalize(".") == os.path.realpath(home), "normalize('.') is the home directory")

# put/get of 8 MiB (prefetched, pipelined reads) with sha256.
data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(8 * 1024 * 1024 // 32))
with open(os.path.join(local, "src.bin"), "wb") as f:
    f.write(data)
want = hashlib.sha256(data).hexdigest()
sftp.put(os.path.join(local, "src.bin"), "up.bin")
sftp.get("up.bin", os.path.join(local, "back.bin"))
for p in (os.path.join(home, "up.bin"), os.path.join(local, "back.bin")):
    with open(p, "rb") as f:
        check(hashlib.sha256(f.read()).hexdigest() == want, f"sha256 of {p}")

# The file API: write, overwrite at an offset, append, FSTAT, FSETSTAT.
with sftp.open("f.txt", "w") as f:
    f.write(b"hello world")
with sftp.open("f.txt", "r+") as f:
    f.seek(6)
    f.write(b"WORLD")
with sftp.open("f.txt", "a") as f:
    f.write(b"!")
with sftp.open("f.txt", "r") as f:
    check(f.read() == b"hello WORLD!", "read back after seek and append")
    check(f.stat().st_size == 12, "fstat size")
with sftp.open("f.txt", "r+") as f:
    f.chmod(0o640)
    f.truncate(11)
check(stat.S_IMODE(sftp.stat("f.txt").st_mode) == 0o640, "fsetstat mode")
check(sftp.stat("f.txt").st_size == 11, "fsetstat size")

# Directories, renames, links, SETSTAT.
sftp.mkdir("dir", mode=0o700)
check(stat.S_ISDIR(sftp.stat("dir").st_mode), "mkdir")
check(sftp.listdir("dir") == [], "empty listing")
sftp.rename("f.txt", "dir/g.txt")
sftp.posix_rename("up.bin", "dir/up2.bin")
with sftp.open("other.txt", "w") as f:
    f.write(b"other")
raises(None, sftp.rename, "other.txt", "dir/g.txt")  # SSH_FXP_RENAME never replaces
sftp.posix_rename("other.txt", "dir/g.txt")  # posix-rename does
with sftp.open("dir/g.txt") as f:
    check(f.read() == b"other", "posix-rename replaced the target")
sftp.symlink("g.txt", "dir/ln")
check(sftp.readlink("dir/ln") == "g.txt", "readlink")
check(stat.S_ISLNK(sftp.lstat("dir/ln").st_mode), "lstat does not follow")
check(sftp.stat("dir/ln").st_size == 5, "stat follows")
sftp.chmod("dir/g.txt", 0o600)
check(stat.S_IMODE(sftp.stat("dir/g.txt").st_mode) == 0o600, "chmod")
sftp.utime("dir/g.txt", (1000000000, 1200000000))
check(sftp.stat("dir/g.txt").st_mtime == 1200000000, "utime")
sftp.truncate("dir/g.txt", 2)
check(sftp.stat("dir/g.txt").st_size == 2, "truncate")

entries = {a.filename: a for a in sftp.listdir_attr("dir")}
check(set(entries) == {"g.txt", "ln", "up2.bin"}, f"listdir_attr: {sorted(entries)}")
longname = entries["g.txt"].longname
check(longname.split()[2] == owner and longname.startswith("-rw-------"), f"longname {longname!r}")

# Errors come back as statuses with the right errno.
raises(2, sftp.stat, "missing")
raises(2, sftp.open, "missing", "r")
raises(None, sftp.rmdir, "dir")  # not empty

for name in ("dir/ln", "dir/g.txt", "dir/up2.bin"):
    sftp.remove(name)
sftp.rmdir("dir")
check(sorted(os.listdir(home)) == [], f"home left empty: {os.listdir(home)}")

sftp.close()
check(proc.wait(timeout=30) == 0, "helper exits 0 when the client closes")
print("OK")
