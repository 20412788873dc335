//! The exchange against a fake broker: a thread with a UnixListener in a temporary directory.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

const T: Duration = Duration::from_secs(1);

/// A fresh directory for one test's socket, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "pam-podspawn-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn sock(&self) -> PathBuf {
        self.0.join("broker.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker that accepts one connection, checks the request line and hands the stream to `answer`.
fn fake_broker<R: Send + 'static>(
    dir: &TempDir,
    answer: impl FnOnce(UnixStream) -> R + Send + 'static,
) -> JoinHandle<R> {
    let listener = UnixListener::bind(dir.sock()).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        assert_eq!(line, "{\"op\":\"netns\",\"user\":\"alice\"}\n");
        answer(conn)
    })
}

fn reply(conn: &UnixStream, resp: &Response) {
    use std::io::Write;
    (&*conn).write_all(&protocol::encode(resp)).unwrap();
}

fn reply_with_fd(conn: &UnixStream, resp: &Response, fd: &impl AsRawFd) {
    let line = protocol::encode(resp);
    let n = protocol::send_with_fd(conn.as_raw_fd(), &line, fd.as_raw_fd()).unwrap();
    assert_eq!(n, line.len());
}

fn netns(holder: &str) -> Response {
    Response::Netns {
        holder: holder.into(),
    }
}

#[test]
fn success_gives_the_fd_and_keeps_the_connection_as_the_lease() {
    let dir = TempDir::new();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let broker = fake_broker(&dir, move |conn| {
        // A notice first: skipped.
        reply(
            &conn,
            &Response::Notice {
                message: "hello".into(),
            },
        );
        let devnull = std::fs::File::open("/dev/null").unwrap();
        reply_with_fd(&conn, &netns("podspawn-alice"), &devnull);
        // The lease is open as long as the client keeps it...
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        let e = (&conn).read(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.send(()).unwrap();
        // ...and ends when the client drops it.
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (&conn).read(&mut b).unwrap()
    });
    let g = request_netns(&dir.sock(), "alice", T).unwrap();
    assert_eq!(g.holder, "podspawn-alice");
    let st = nix::sys::stat::fstat(&g.netns).unwrap();
    let null = nix::sys::stat::stat("/dev/null").unwrap();
    assert_eq!((st.st_rdev, st.st_ino), (null.st_rdev, null.st_ino));
    // Close-on-exec, both of them: the user's processes must inherit neither.
    for fd in [g.netns.as_fd(), g.lease.as_fd()] {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "fd {fd:?}");
    }
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    drop(g);
    assert_eq!(broker.join().unwrap(), 0, "EOF once the lease is dropped");
}

#[test]
fn error_reply_is_a_refusal() {
    let dir = TempDir::new();
    let broker = fake_broker(&dir, |conn| {
        reply(
            &conn,
            &Response::Error {
                kind: ErrorKind::Forbidden,
                message: "alice is not registered".into(),
            },
        )
    });
    match request_netns(&dir.sock(), "alice", T) {
        Err(
            f @ Failure::Refused {
                kind: ErrorKind::Forbidden,
                ..
            },
        ) => {
            assert!(f.to_string().contains("alice is not registered"), "{f}");
            assert_eq!(f.pam_code(), PAM_SESSION_ERR);
        }
        r => panic!("{r:?}"),
    }
    broker.join().unwrap();
}

#[test]
fn eof_without_reply() {
    let dir = TempDir::new();
    let broker = fake_broker(&dir, drop);
    match request_netns(&dir.sock(), "alice", T) {
        Err(Failure::Eof) => {}
        r => panic!("{r:?}"),
    }
    broker.join().unwrap();
}

#[test]
fn reply_without_fd() {
    let dir = TempDir::new();
    let broker = fake_broker(&dir, |conn| {
        reply(&conn, &netns("podspawn-alice"));
        conn
    });
    match request_netns(&dir.sock(), "alice", T) {
        Err(Failure::NoFd) => {}
        r => panic!("{r:?}"),
    }
    broker.join().unwrap();
}

#[test]
fn other_replies() {
    let dir = TempDir::new();
    let broker = fake_broker(&dir, |conn| {
        reply(&conn, &Response::Ok);
        conn
    });
    match request_netns(&dir.sock(), "alice", T) {
        Err(Failure::Unexpected(r)) => assert_eq!(r, "Ok"),
        r => panic!("{r:?}"),
    }
    broker.join().unwrap();

    let dir = TempDir::new();
    let broker = fake_broker(&dir, |conn| {
        use std::io::Write;
        (&conn).write_all(b"not json\n").unwrap();
        conn
    });
    match request_netns(&dir.sock(), "alice", T) {
        Err(Failure::Malformed(e)) => assert!(e.contains("malformed"), "{e}"),
        r => panic!("{r:?}"),
    }
    broker.join().unwrap();
}

#[test]
fn silent_broker_times_out() {
    // Never accepts: the connection completes through the kernel's backlog, as with a SIGSTOPped
    // broker, and nobody ever answers.
    let dir = TempDir::new();
    let _listener = UnixListener::bind(dir.sock()).unwrap();
    let t0 = Instant::now();
    let r = request_netns(&dir.sock(), "alice", T);
    let took = t0.elapsed();
    match r {
        Err(f @ Failure::Timeout(_)) => {
            assert_eq!(f.to_string(), "no reply from the broker within 1s");
            assert_eq!(f.pam_code(), PAM_SESSION_ERR);
        }
        r => panic!("{r:?}"),
    }
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn accepted_but_silent_times_out() {
    let dir = TempDir::new();
    let broker = fake_broker(&dir, |conn| {
        std::thread::sleep(Duration::from_secs(2));
        conn
    });
    let t0 = Instant::now();
    match request_netns(&dir.sock(), "alice", T) {
        Err(Failure::Timeout(_)) => {}
        r => panic!("{r:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
    broker.join().unwrap();
}

#[test]
fn trickling_broker_cannot_stretch_the_deadline() {
    let dir = TempDir::new();
    let broker = fake_broker(&dir, |conn| {
        use std::io::Write;
        // One byte every 200 ms, never a newline: each read succeeds, the deadline must still hit.
        for _ in 0..15 {
            if (&conn).write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let t0 = Instant::now();
    match request_netns(&dir.sock(), "alice", T) {
        Err(Failure::Timeout(_)) => {}
        r => panic!("{r:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
    broker.join().unwrap();
}

#[test]
fn no_broker() {
    let dir = TempDir::new();
    match request_netns(&dir.sock(), "alice", T) {
        Err(f @ Failure::Connect(_)) => {
            assert!(f.to_string().starts_with("cannot reach the broker"), "{f}");
            assert_eq!(f.pam_code(), PAM_SESSION_ERR);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn full_backlog_connect_times_out() {
    // A listener that never accepts and whose backlog (1) is full: connect(2) itself would block.
    use nix::sys::socket::{bind, listen, Backlog};
    let dir = TempDir::new();
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(listener.as_raw_fd(), &UnixAddr::new(&dir.sock()).unwrap()).unwrap();
    listen(&listener, Backlog::new(1).unwrap()).unwrap();
    let mut fillers = Vec::new();
    let r = loop {
        let t = Instant::now();
        match connect_within(&dir.sock(), Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(e) => break (e, t.elapsed()),
        }
        assert!(fillers.len() < 64, "the backlog never filled");
    };
    match r {
        (Failure::Timeout(_), took) => {
            assert!(took >= Duration::from_millis(250), "{took:?}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
        (f, _) => panic!("{f:?} after {} connections", fillers.len()),
    }
}
