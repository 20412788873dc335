//! serde plumbing: the raw shape of config.yaml. Every value is validated inside a Visitor, so serde_norway attaches the line and key to any error.
use super::*;

// ---------------------------------------------------------------------------------------------
// serde plumbing. Every value is validated inside a `Visitor`, so serde_norway attaches the
// line of the offending value to the error.

/// Visits one scalar as text and runs `f` on it. YAML null (`key:` or `~`) reads as "".
pub(super) struct TextVisitor<F> {
    pub(super) expecting: &'static str,
    pub(super) f: F,
}

pub(super) fn is_plain_null(v: &str) -> bool {
    matches!(v, "~" | "null" | "Null" | "NULL")
}

impl<'de, T, F> Visitor<'de> for TextVisitor<F>
where
    F: FnOnce(&str) -> Result<T, ValueError>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        let v = if is_plain_null(v) { "" } else { v };
        (self.f)(v).map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        (self.f)("").map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        (self.f)(if v { "true" } else { "false" }).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.f)(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.f)(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.f)(&v.to_string()).map_err(E::custom)
    }
}

pub(super) fn text<'de, D, T>(
    d: D,
    expecting: &'static str,
    f: impl FnOnce(&str) -> Result<T, ValueError>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_str(TextVisitor { expecting, f })
}

macro_rules! text_fields {
    ($($name:ident -> $ty:ty, $expecting:expr, $f:expr;)*) => {
        $(
            fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                text(d, $expecting, $f)
            }
        )*
    };
}

pub(super) const EXP_PATH: &str = "an absolute path";

text_fields! {
    de_key_dir -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/etc/podspawn/keys");
    de_github_url -> String, "an http:// or https:// URL", parse_github_url;
    de_image -> String, "an image reference such as ubuntu:24.04", parse_image;
    de_shell -> String, "an absolute path such as /bin/bash", parse_shell;
    de_cpus -> f64, "a number of CPUs such as 2 or 0.5", parse_cpus;
    de_memory -> u64, "a size such as 512m or 2g", parse_size;
    de_grace -> Duration, "a duration such as 60s, 5m or 8h", parse_grace;
    de_positive_duration -> Duration, "a duration such as 60s, 5m or 8h", parse_positive_duration;
    de_mode -> SessionMode, "a session mode such as grace-period", parse_mode;
    de_db_path -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/var/lib/podspawn/state.db");
    de_lock_dir -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/var/lib/podspawn/locks");
    de_homes_dir -> PathBuf, EXP_PATH, parse_homes_dir;
    de_log_file -> Option<PathBuf>, EXP_PATH, |s| parse_opt_abs_path(s, "/var/log/podspawn/podspawn.log");
    de_audit_log -> Option<PathBuf>, EXP_PATH, |s| parse_opt_abs_path(s, "/var/log/podspawn/audit.log");
    de_log_level -> String, "a log level such as info", parse_log_level;
    de_bool -> bool, "true or false", parse_bool;
    de_pids_limit -> i64, "a whole number such as 256", parse_pids_limit;
    de_runtime -> Option<String>, "a runtime name such as runsc", parse_runtime;
    de_network -> NetworkMode, "isolated or shared", parse_network;
    de_port_forwarding -> PortForwarding, "auto, on or off", parse_port_forwarding;
    de_max_per_user -> u32, "a whole number such as 3", parse_max_per_user;
    de_projects_file -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/etc/podspawn/projects.yaml");
    de_users_dir -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/etc/podspawn/users");
    de_socket -> PathBuf, EXP_PATH, parse_socket;
    de_max_connections -> u32, "a whole number such as 64", parse_max_connections;
    de_helper_path -> Option<PathBuf>, EXP_PATH, |s| parse_opt_abs_path(s, DEFAULT_HELPER_PATH);
    de_session_dir -> Option<PathBuf>, EXP_PATH, parse_session_dir;
}

/// One `session.accept_env` entry.
pub(super) struct EnvPattern(String);

impl<'de> Deserialize<'de> for EnvPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(
            d,
            "a variable name such as LANG, or a prefix such as LC_*",
            parse_env_pattern,
        )
        .map(EnvPattern)
    }
}

pub(super) fn de_accept_env<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<EnvPattern>::deserialize(d).map(|v| v.into_iter().map(|p| p.0).collect())
}

pub(super) fn de_opt_image<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_image(d).map(Some)
}
pub(super) fn de_opt_shell<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_shell(d).map(Some)
}
pub(super) fn de_opt_cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    de_cpus(d).map(Some)
}
pub(super) fn de_opt_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_memory(d).map(Some)
}
pub(super) fn de_opt_mode<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SessionMode>, D::Error> {
    de_mode(d).map(Some)
}

/// One capability name, normalized (`CAP_` stripped).
pub(super) struct Capability(String);

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d, "a capability name such as CHOWN", parse_capability).map(Capability)
    }
}

pub(super) fn de_caps<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<Capability>::deserialize(d).map(|v| v.into_iter().map(|c| c.0).collect())
}

/// Any scalar as a string; null is "".
pub(super) struct LooseString(String);

impl<'de> Deserialize<'de> for LooseString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LooseString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_none<E: de::Error>(self) -> Result<LooseString, E> {
                Ok(LooseString(String::new()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LooseString, E> {
                Ok(LooseString(String::new()))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<LooseString, D::Error> {
                text(d, "a string", |s| Ok(s.to_string())).map(LooseString)
            }
        }
        d.deserialize_option(V)
    }
}

/// A map key checked by `check` and rejected when it is already in `seen` (the error then
/// carries the line of the repeated key).
pub(super) struct KeySeed<'a, F> {
    pub(super) seen: &'a BTreeMap<String, String>,
    pub(super) expecting: &'static str,
    pub(super) check: F,
}

impl<'de, F> DeserializeSeed<'de> for KeySeed<'_, F>
where
    F: FnOnce(&str) -> Result<String, ValueError>,
{
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let KeySeed {
            seen,
            expecting,
            check,
        } = self;
        d.deserialize_str(TextVisitor {
            expecting,
            f: move |s: &str| {
                let key = check(s)?;
                if seen.contains_key(&key) {
                    Err(ValueError(duplicate_message(&key)))
                } else {
                    Ok(key)
                }
            },
        })
    }
}

/// A string→string map with checked keys and no duplicates.
pub(super) struct CheckedMapVisitor {
    pub(super) expecting: &'static str,
    pub(super) key_expecting: &'static str,
    pub(super) check: fn(&str) -> Result<String, ValueError>,
}

impl<'de> Visitor<'de> for CheckedMapVisitor {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        loop {
            let seed = KeySeed {
                seen: &out,
                expecting: self.key_expecting,
                check: self.check,
            };
            let Some(key) = map.next_key_seed(seed)? else {
                break;
            };
            let LooseString(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

pub(super) fn de_tmpfs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(CheckedMapVisitor {
        expecting: "a mapping of mount point to options, e.g. {/tmp: \"size=256m\"}",
        key_expecting: "an absolute mount point such as /tmp",
        check: parse_tmpfs_target,
    })
}

pub(super) fn de_env<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(CheckedMapVisitor {
        expecting: "a mapping of variable name to value, e.g. {EDITOR: vim}",
        key_expecting: "an environment variable name such as EDITOR",
        check: parse_env_name,
    })
}

pub(super) fn duplicate_message(key: &str) -> String {
    format!("duplicate key {key:?}: each key may appear only once here; remove or merge the repeated entry")
}

// Raw mirrors of the YAML layout. `default` makes absent keys keep the defaults.

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping of settings (auth, defaults, session, state, log, security, resources, projects_file, users_dir, broker, helper)"
)]
pub(super) struct RawConfig {
    pub(super) auth: RawAuth,
    pub(super) defaults: RawDefaults,
    pub(super) session: RawSession,
    pub(super) state: RawState,
    pub(super) log: RawLog,
    pub(super) security: RawSecurity,
    pub(super) resources: RawResources,
    #[serde(deserialize_with = "de_projects_file")]
    pub(super) projects_file: PathBuf,
    #[serde(deserialize_with = "de_users_dir")]
    pub(super) users_dir: PathBuf,
    pub(super) broker: RawBroker,
    pub(super) helper: RawHelper,
}

impl Default for RawConfig {
    fn default() -> Self {
        let d = Config::default();
        RawConfig {
            auth: RawAuth {
                key_dir: d.auth.key_dir,
                github_url: d.auth.github_url,
            },
            defaults: RawDefaults {
                image: d.defaults.image,
                shell: d.defaults.shell,
                cpus: d.defaults.cpus,
                memory: d.defaults.memory,
            },
            session: RawSession {
                grace_period: d.session.grace_period,
                max_lifetime: d.session.max_lifetime,
                mode: d.session.mode,
                ttl: d.session.ttl,
                accept_env: d.session.accept_env,
                network_linger: d.session.network_linger,
            },
            state: RawState {
                db_path: d.state.db_path,
                lock_dir: d.state.lock_dir,
                homes_dir: d.state.homes_dir,
            },
            log: RawLog {
                file: d.log.file,
                audit_log: d.log.audit_log,
                level: d.log.level,
            },
            security: RawSecurity {
                cap_drop: d.security.cap_drop,
                cap_add: d.security.cap_add,
                no_new_privileges: d.security.no_new_privileges,
                pids_limit: d.security.pids_limit,
                readonly_rootfs: d.security.readonly_rootfs,
                tmpfs: d.security.tmpfs,
                runtime: d.security.runtime,
                network: d.security.network,
                allow_service_binds: d.security.allow_service_binds,
                port_forwarding: d.security.port_forwarding,
            },
            resources: RawResources {
                max_per_user: d.resources.max_per_user,
            },
            projects_file: d.projects_file,
            users_dir: d.users_dir,
            broker: RawBroker {
                socket: d.broker.socket,
                max_connections_per_user: d.broker.max_connections_per_user,
                first_message_timeout: d.broker.first_message_timeout,
                session_dir: d.broker.session_dir,
            },
            helper: RawHelper {
                path: d.helper.path,
            },
        }
    }
}

macro_rules! raw_section_default {
    ($($raw:ident => $field:ident),* $(,)?) => {
        $(
            impl Default for $raw {
                fn default() -> Self {
                    RawConfig::default().$field
                }
            }
        )*
    };
}

raw_section_default! {
    RawAuth => auth,
    RawDefaults => defaults,
    RawSession => session,
    RawState => state,
    RawLog => log,
    RawSecurity => security,
    RawResources => resources,
    RawBroker => broker,
    RawHelper => helper,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys key_dir, github_url"
)]
pub(super) struct RawAuth {
    #[serde(deserialize_with = "de_key_dir")]
    pub(super) key_dir: PathBuf,
    #[serde(deserialize_with = "de_github_url")]
    pub(super) github_url: String,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys image, shell, cpus, memory"
)]
pub(super) struct RawDefaults {
    #[serde(deserialize_with = "de_image")]
    pub(super) image: String,
    #[serde(deserialize_with = "de_shell")]
    pub(super) shell: String,
    #[serde(deserialize_with = "de_cpus")]
    pub(super) cpus: f64,
    #[serde(deserialize_with = "de_memory")]
    pub(super) memory: u64,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys grace_period, max_lifetime, mode, ttl, accept_env, network_linger"
)]
pub(super) struct RawSession {
    #[serde(deserialize_with = "de_grace")]
    pub(super) grace_period: Duration,
    #[serde(deserialize_with = "de_positive_duration")]
    pub(super) max_lifetime: Duration,
    #[serde(deserialize_with = "de_mode")]
    pub(super) mode: SessionMode,
    #[serde(deserialize_with = "de_positive_duration")]
    pub(super) ttl: Duration,
    #[serde(deserialize_with = "de_accept_env")]
    pub(super) accept_env: Vec<String>,
    #[serde(deserialize_with = "de_grace")]
    pub(super) network_linger: Duration,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys db_path, lock_dir, homes_dir"
)]
pub(super) struct RawState {
    #[serde(deserialize_with = "de_db_path")]
    pub(super) db_path: PathBuf,
    #[serde(deserialize_with = "de_lock_dir")]
    pub(super) lock_dir: PathBuf,
    #[serde(deserialize_with = "de_homes_dir")]
    pub(super) homes_dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys file, audit_log, level"
)]
pub(super) struct RawLog {
    #[serde(deserialize_with = "de_log_file")]
    pub(super) file: Option<PathBuf>,
    #[serde(deserialize_with = "de_audit_log")]
    pub(super) audit_log: Option<PathBuf>,
    #[serde(deserialize_with = "de_log_level")]
    pub(super) level: String,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys cap_drop, cap_add, no_new_privileges, pids_limit, readonly_rootfs, tmpfs, runtime, network, allow_service_binds, port_forwarding"
)]
pub(super) struct RawSecurity {
    #[serde(deserialize_with = "de_caps")]
    pub(super) cap_drop: Vec<String>,
    #[serde(deserialize_with = "de_caps")]
    pub(super) cap_add: Vec<String>,
    #[serde(deserialize_with = "de_bool")]
    pub(super) no_new_privileges: bool,
    #[serde(deserialize_with = "de_pids_limit")]
    pub(super) pids_limit: i64,
    #[serde(deserialize_with = "de_bool")]
    pub(super) readonly_rootfs: bool,
    #[serde(deserialize_with = "de_tmpfs")]
    pub(super) tmpfs: BTreeMap<String, String>,
    #[serde(deserialize_with = "de_runtime")]
    pub(super) runtime: Option<String>,
    #[serde(deserialize_with = "de_network")]
    pub(super) network: NetworkMode,
    #[serde(deserialize_with = "de_bool")]
    pub(super) allow_service_binds: bool,
    #[serde(deserialize_with = "de_port_forwarding")]
    pub(super) port_forwarding: PortForwarding,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the key max_per_user"
)]
pub(super) struct RawResources {
    #[serde(deserialize_with = "de_max_per_user")]
    pub(super) max_per_user: u32,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys socket, max_connections_per_user, first_message_timeout, session_dir"
)]
pub(super) struct RawBroker {
    #[serde(deserialize_with = "de_socket")]
    pub(super) socket: PathBuf,
    #[serde(deserialize_with = "de_max_connections")]
    pub(super) max_connections_per_user: u32,
    #[serde(deserialize_with = "de_positive_duration")]
    pub(super) first_message_timeout: Duration,
    #[serde(deserialize_with = "de_session_dir")]
    pub(super) session_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the key path"
)]
pub(super) struct RawHelper {
    #[serde(deserialize_with = "de_helper_path")]
    pub(super) path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping of overrides (image, cpus, memory, shell, mode, env)"
)]
pub(super) struct RawUser {
    #[serde(deserialize_with = "de_opt_image")]
    pub(super) image: Option<String>,
    #[serde(deserialize_with = "de_opt_cpus")]
    pub(super) cpus: Option<f64>,
    #[serde(deserialize_with = "de_opt_memory")]
    pub(super) memory: Option<u64>,
    #[serde(deserialize_with = "de_opt_shell")]
    pub(super) shell: Option<String>,
    #[serde(deserialize_with = "de_opt_mode")]
    pub(super) mode: Option<SessionMode>,
    #[serde(deserialize_with = "de_env")]
    pub(super) env: BTreeMap<String, String>,
}
