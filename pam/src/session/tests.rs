//! The open/close flow against a fake `Pam`: no libpam, no broker, no setns.

use super::*;
use crate::args::parse;
use crate::broker::Failure;
use podspawn::core::protocol::ErrorKind;
use std::cell::{Cell, RefCell};

struct Fake {
    service: Option<String>,
    user: Result<Vec<u8>, String>,
    facts: UserFacts,
    /// None: a granted namespace (/dev/null stands in); Some: this failure.
    fail: RefCell<Option<Failure>>,
    join_fails: bool,
    store_fails: bool,
    asked: RefCell<Vec<String>>,
    joined: Cell<usize>,
    lease: RefCell<Option<Lease>>,
    /// The broker's end of the lease: EOF on it once the module's end is closed.
    broker_end: RefCell<Option<UnixStream>>,
    logs: RefCell<Vec<(i32, String)>>,
}

impl Fake {
    fn new(facts: UserFacts) -> Fake {
        Fake {
            service: Some("sshd".into()),
            user: Ok(b"alice".to_vec()),
            facts,
            fail: RefCell::new(None),
            join_fails: false,
            store_fails: false,
            asked: RefCell::new(Vec::new()),
            joined: Cell::new(0),
            lease: RefCell::new(None),
            broker_end: RefCell::new(None),
            logs: RefCell::new(Vec::new()),
        }
    }
    fn logged(&self, priority: i32) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(p, _)| *p == priority)
            .map(|(_, m)| m.clone())
            .collect()
    }
    fn lease_open(&self) -> bool {
        use std::io::Read;
        let end = self.broker_end.borrow();
        let Some(end) = end.as_ref() else {
            return false;
        };
        end.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        matches!((&*end).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl Pam for Fake {
    fn service(&self) -> Option<String> {
        self.service.clone()
    }
    fn user(&self) -> Result<Vec<u8>, String> {
        self.user.clone()
    }
    fn log(&self, priority: i32, msg: &str) {
        self.logs.borrow_mut().push((priority, msg.to_string()));
    }
    fn facts(&self, user: &OsStr, group: &str) -> UserFacts {
        assert_eq!(user.as_bytes(), self.user.as_ref().unwrap().as_slice());
        assert!(!group.is_empty());
        self.facts.clone()
    }
    fn request(&self, _a: &args::Args, user: &str) -> Result<Granted, Failure> {
        self.asked.borrow_mut().push(user.to_string());
        if let Some(f) = self.fail.borrow_mut().take() {
            return Err(f);
        }
        let (mine, theirs) = UnixStream::pair().unwrap();
        *self.broker_end.borrow_mut() = Some(theirs);
        Ok(Granted {
            netns: std::fs::File::open("/dev/null").unwrap().into(),
            lease: mine,
            holder: "podspawn-alice".into(),
        })
    }
    fn join(&self, _netns: &OwnedFd) -> Result<(), String> {
        self.joined.set(self.joined.get() + 1);
        if self.join_fails {
            Err("Operation not permitted".into())
        } else {
            Ok(())
        }
    }
    fn store_lease(&self, lease: Lease) -> Result<(), String> {
        if self.store_fails {
            return Err("PAM_BUF_ERR".into());
        }
        *self.lease.borrow_mut() = Some(lease);
        Ok(())
    }
    fn release_lease(&self) -> bool {
        self.lease.borrow_mut().take().is_some()
    }
}

fn p(argv: &[&str]) -> Parsed {
    parse(argv.iter().map(|a| Some(*a)))
}

#[test]
fn member_joins_and_holds_the_lease_until_close() {
    let f = Fake::new(UserFacts::Member);
    let a = p(&[]);
    assert_eq!(open(&f, &a), PAM_SUCCESS);
    assert_eq!(*f.asked.borrow(), vec!["alice"]);
    assert_eq!(f.joined.get(), 1);
    assert_eq!(
        f.logged(LOG_INFO),
        vec!["alice: joined the network namespace of podspawn-alice"]
    );
    assert!(f.lease_open());
    assert_eq!(close(&f, &a), PAM_SUCCESS);
    assert!(!f.lease_open(), "close_session ends the lease");
    // Nothing left to release.
    assert_eq!(close(&f, &a), PAM_IGNORE);
}

#[test]
fn others_are_ignored_without_asking_the_broker() {
    for facts in [UserFacts::Root, UserFacts::NotMember, UserFacts::Unknown] {
        let f = Fake::new(facts.clone());
        assert_eq!(open(&f, &p(&[])), PAM_IGNORE, "{facts:?}");
        assert!(f.asked.borrow().is_empty());
        assert!(f.logs.borrow().is_empty(), "{:?}", f.logs.borrow());
        assert_eq!(close(&f, &p(&[])), PAM_IGNORE);
    }
    let f = Fake::new(UserFacts::NoGroup);
    assert_eq!(open(&f, &p(&[])), PAM_IGNORE);
    assert_eq!(f.logged(LOG_WARNING).len(), 1);

    // Another service: not even the user is looked up (Fake::facts would see no user).
    let mut f = Fake::new(UserFacts::Member);
    f.service = Some("login".into());
    f.user = Err("must not be asked".into());
    assert_eq!(open(&f, &p(&[])), PAM_IGNORE);
    assert!(f.asked.borrow().is_empty());
    assert_eq!(close(&f, &p(&[])), PAM_IGNORE);
}

#[test]
fn debug_logs_decisions() {
    let f = Fake::new(UserFacts::NotMember);
    assert_eq!(open(&f, &p(&["debug"])), PAM_IGNORE);
    assert_eq!(
        f.logged(LOG_DEBUG),
        vec![r#"ignoring service "sshd", user alice: not a member of the group"#]
    );
}

#[test]
fn broker_failures_refuse_the_session() {
    let failures = [
        Failure::Timeout(std::time::Duration::from_secs(30)),
        Failure::Eof,
        Failure::NoFd,
        Failure::Refused {
            kind: ErrorKind::Forbidden,
            message: "no".into(),
        },
        Failure::Connect(std::io::Error::from_raw_os_error(libc::ENOENT)),
    ];
    for fail in failures {
        let shown = fail.to_string();
        let f = Fake::new(UserFacts::Member);
        *f.fail.borrow_mut() = Some(fail);
        assert_eq!(open(&f, &p(&[])), PAM_SESSION_ERR, "{shown}");
        assert_eq!(f.joined.get(), 0);
        assert!(f.lease.borrow().is_none());
        assert_eq!(
            f.logged(LOG_ERR),
            vec![format!("refusing the session of alice: {shown}")]
        );
        assert_eq!(close(&f, &p(&[])), PAM_IGNORE);
    }
}

#[test]
fn setns_or_lease_failure_refuses_and_drops_the_lease() {
    let mut f = Fake::new(UserFacts::Member);
    f.join_fails = true;
    assert_eq!(open(&f, &p(&[])), PAM_SESSION_ERR);
    assert!(!f.lease_open());
    assert!(f.logged(LOG_ERR)[0].contains("cannot join the network namespace of podspawn-alice"));

    let mut f = Fake::new(UserFacts::Member);
    f.store_fails = true;
    assert_eq!(open(&f, &p(&[])), PAM_SESSION_ERR);
    assert!(!f.lease_open());
    assert!(f.logged(LOG_ERR)[0].contains("cannot keep the broker lease"));
}

#[test]
fn bad_arguments_and_odd_users() {
    // A typo: members are refused without asking the broker, others ignored (with a warning).
    let f = Fake::new(UserFacts::Member);
    assert_eq!(open(&f, &p(&["timeout=0"])), PAM_SESSION_ERR);
    assert!(f.asked.borrow().is_empty());
    assert!(f.logged(LOG_ERR)[0].contains("timeout"));
    let f = Fake::new(UserFacts::NotMember);
    assert_eq!(open(&f, &p(&["timeout=0"])), PAM_IGNORE);
    assert!(f.logged(LOG_WARNING)[0].contains("timeout"));

    // pam_get_user failed: nobody to vouch for.
    let mut f = Fake::new(UserFacts::Member);
    f.user = Err("PAM_USER unset".into());
    assert_eq!(open(&f, &p(&[])), PAM_SESSION_ERR);

    // A member whose name the broker protocol cannot carry.
    let mut f = Fake::new(UserFacts::Member);
    f.user = Ok(b"al\xffce".to_vec());
    assert_eq!(open(&f, &p(&[])), PAM_SESSION_ERR);
    assert!(f.asked.borrow().is_empty());
}
