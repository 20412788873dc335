//! User and group names without NSS: the container's own /etc/passwd and /etc/group, read as
//! files. A statically linked glibc binary that called getpwuid() would need the host's
//! libnss_*.so at run time; an image may have no libc at all.
//!
//! Also the `ls -l` style line (SSH_FXP_NAME's longname) built from those names.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Files larger than this are read only up to it (bounded memory; real files are far smaller).
const MAX_DB_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    homes: HashMap<String, Vec<u8>>,
    home_by_uid: HashMap<u32, Vec<u8>>,
}

fn read_bounded(path: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        // A read error leaves what was read so far: names are a nicety, never a failure.
        let _ = f.take(MAX_DB_BYTES).read_to_end(&mut buf);
    }
    buf
}

impl Names {
    /// Reads `<root>/etc/passwd` and `<root>/etc/group`; missing files give numeric names.
    pub fn load(root: &Path) -> Names {
        Names::parse(
            &read_bounded(&root.join("etc/passwd")),
            &read_bounded(&root.join("etc/group")),
        )
    }

    /// Parses passwd (`name:pw:uid:gid:gecos:home:shell`) and group (`name:pw:gid:members`)
    /// text. Malformed lines and NIS `+`/`-` entries are skipped; the first entry for an id wins
    /// (as getpwuid does).
    pub fn parse(passwd: &[u8], group: &[u8]) -> Names {
        let mut n = Names::default();
        for line in passwd.split(|&b| b == b'\n') {
            let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0][0] == b'+' || f[0][0] == b'-' {
                continue;
            }
            let (Ok(name), Some(uid)) = (std::str::from_utf8(f[0]), parse_id(f[2])) else {
                continue;
            };
            n.users.entry(uid).or_insert_with(|| name.to_string());
            n.home_by_uid.entry(uid).or_insert_with(|| f[5].to_vec());
            n.homes
                .entry(name.to_string())
                .or_insert_with(|| f[5].to_vec());
        }
        for line in group.split(|&b| b == b'\n') {
            let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
            if f.len() < 3 || f[0].is_empty() || f[0][0] == b'+' || f[0][0] == b'-' {
                continue;
            }
            let (Ok(name), Some(gid)) = (std::str::from_utf8(f[0]), parse_id(f[2])) else {
                continue;
            };
            n.groups.entry(gid).or_insert_with(|| name.to_string());
        }
        n
    }

    pub fn user(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(String::as_str)
    }

    pub fn group(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(String::as_str)
    }

    /// The home directory of a user by name.
    pub fn home_of(&self, user: &str) -> Option<&[u8]> {
        self.homes
            .get(user)
            .map(Vec::as_slice)
            .filter(|h| !h.is_empty())
    }

    /// The home directory of a user by uid.
    pub fn home_of_uid(&self, uid: u32) -> Option<&[u8]> {
        self.home_by_uid
            .get(&uid)
            .map(Vec::as_slice)
            .filter(|h| !h.is_empty())
    }
}

fn parse_id(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// `ls -l`'s ten-character mode column, e.g. `drwxr-xr-x`, with setuid/setgid/sticky bits.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |exec: u32, special: u32, on: char, off: char| match (
        mode & exec != 0,
        mode & special != 0,
    ) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `ls -l`'s date column in UTC (the helper reads no time zone data): `Mon dd HH:MM` for times
/// within six months of `now`, `Mon dd  YYYY` otherwise.
pub fn date_string(mtime: i64, now: i64) -> String {
    const SIX_MONTHS: i64 = 365 * 24 * 3600 / 2;
    let (y, m, d) = civil_from_days(mtime.div_euclid(86_400));
    let secs = mtime.rem_euclid(86_400);
    let month = MONTHS[(m as usize - 1) % 12];
    if mtime > now - SIX_MONTHS && mtime < now + SIX_MONTHS {
        format!("{month} {d:>2} {:02}:{:02}", secs / 3600, secs / 60 % 60)
    } else {
        format!("{month} {d:>2}  {y}")
    }
}

/// Everything `longname` needs from a file's metadata.
pub struct LongInfo {
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
}

/// The `ls -l` line OpenSSH's sftp-server sends as a READDIR entry's longname.
pub fn longname(names: &Names, info: &LongInfo, filename: &[u8], now: i64) -> Vec<u8> {
    let user = names
        .user(info.uid)
        .map_or_else(|| info.uid.to_string(), str::to_string);
    let group = names
        .group(info.gid)
        .map_or_else(|| info.gid.to_string(), str::to_string);
    let mut line = format!(
        "{} {:>4} {:<8} {:<8} {:>8} {} ",
        mode_string(info.mode),
        info.nlink,
        user,
        group,
        info.size,
        date_string(info.mtime, now),
    )
    .into_bytes();
    line.extend_from_slice(filename);
    line
}

/// Seconds since the epoch now (0 if the clock is before 1970).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        +nis::::::\n\
        broken line\n\
        alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
        alias:x:1000:1000::/elsewhere:/bin/sh\n\
        nohome:x:1001:1001:::/bin/sh";
    const GROUP: &[u8] = b"root:x:0:\nstaff:x:50:alice\nbad:x:notanumber:\n";

    #[test]
    fn parses_passwd_and_group_files() {
        let n = Names::parse(PASSWD, GROUP);
        assert_eq!(n.user(0), Some("root"));
        assert_eq!(n.user(1000), Some("alice"), "first entry for a uid wins");
        assert_eq!(n.user(1001), Some("nohome"));
        assert_eq!(n.user(7), None);
        assert_eq!(n.group(50), Some("staff"));
        assert_eq!(n.group(1000), None);
        assert_eq!(n.home_of("alice"), Some(&b"/home/alice"[..]));
        assert_eq!(n.home_of("alias"), Some(&b"/elsewhere"[..]));
        assert_eq!(n.home_of("nohome"), None);
        assert_eq!(n.home_of_uid(1000), Some(&b"/home/alice"[..]));
    }

    #[test]
    fn mode_strings_like_ls() {
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o102644), "-rw-r-Sr--");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
        assert_eq!(mode_string(0o041776), "drwxrwxrwT");
    }

    #[test]
    fn dates_like_ls() {
        // 2024-02-29 13:05:00 UTC
        let t = 1_709_211_900;
        assert_eq!(date_string(t, t + 60), "Feb 29 13:05");
        assert_eq!(date_string(t, t + 365 * 86_400), "Feb 29  2024");
        assert_eq!(date_string(0, 1_000_000_000), "Jan  1  1970");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn longname_uses_names_from_the_files_and_numbers_otherwise() {
        let n = Names::parse(PASSWD, GROUP);
        let info = LongInfo {
            mode: 0o100640,
            nlink: 1,
            uid: 1000,
            gid: 50,
            size: 1234,
            mtime: 1_709_211_900,
        };
        let line = longname(&n, &info, b"notes.txt", 1_709_211_960);
        assert_eq!(
            String::from_utf8_lossy(&line),
            "-rw-r-----    1 alice    staff        1234 Feb 29 13:05 notes.txt"
        );
        let info = LongInfo {
            uid: 4242,
            gid: 4343,
            ..info
        };
        let line = longname(&n, &info, b"x", 1_709_211_960);
        assert!(String::from_utf8_lossy(&line).contains(" 4242     4343 "));
    }
}
