//! Validation of single values: images, packages, env names and values, services, volumes, resources.
use super::*;

// ---------------------------------------------------------------------------------------------
// Values.

/// A single value as text; `what` describes it for the message.
pub(in crate::core::podfile) fn scalar<'n>(
    cx: &Ctx,
    at: &[Seg],
    node: &'n Node,
    what: &str,
) -> Result<&'n str, PodfileError> {
    match node {
        Node::Scalar(s) | Node::Number(s) => Ok(s),
        other => Err(cx.err(
            at,
            Target::Value,
            format!("expected {what}, found {}", other.kind()),
        )),
    }
}

/// A list (null is an empty one).
pub(in crate::core::podfile) fn list<'n>(
    cx: &Ctx,
    at: &[Seg],
    node: &'n Node,
    what: &str,
) -> Result<&'n [Node], PodfileError> {
    match node {
        Node::Seq(items) => Ok(items),
        Node::Null => Ok(&[]),
        other => Err(cx.err(
            at,
            Target::Value,
            format!("expected a list of {what}, found {}", other.kind()),
        )),
    }
}

pub(in crate::core::podfile) fn no_control(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// An image reference: letters, digits and `. _ - / : @`, not starting with `-`.
pub(in crate::core::podfile) fn check_image(s: &str) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '.', '/', ':', '@'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'));
    if ok {
        Ok(s.to_string())
    } else if s.is_empty() {
        Err(ValueError::from(
            "empty image: give an image reference, e.g. ubuntu:24.04".to_string(),
        ))
    } else {
        Err(ValueError::from(format!(
            "invalid image {s:?}: give an image reference such as ubuntu:24.04 or \
             registry.example.com/team/dev:1 (letters, digits and . _ - / : @ only)"
        )))
    }
}

pub(in crate::core::podfile) fn image(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<String, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "an image reference such as ubuntu:24.04")?,
    };
    check_image(s).map_err(|m| cx.err(at, Target::Value, m))
}

pub(in crate::core::podfile) fn extends_path(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<String, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "a path such as ./base.yaml")?,
    };
    let fail = |m: String| Err(cx.err(at, Target::Value, m));
    if s.is_empty() {
        return fail(
            "empty extends: give the path of another Podfile in the repository, e.g. \
             ./base.yaml, or remove the key"
                .to_string(),
        );
    }
    if s.contains("://") || s.starts_with("github.com/") {
        return fail(format!(
            "extends {s:?}: only a Podfile inside the repository can be extended (nothing is \
             fetched from the network); copy it into the repository and write e.g. \
             extends: ./base.yaml"
        ));
    }
    if s.starts_with('/') {
        return fail(format!(
            "extends {s:?} is absolute: write a path relative to this file, inside the \
             repository, e.g. ./base.yaml"
        ));
    }
    if !no_control(s) || s.contains('\\') {
        return fail(format!(
            "extends {s:?} contains a control character or a backslash: write a plain relative \
             path such as ./base.yaml"
        ));
    }
    if !(s.ends_with(".yaml") || s.ends_with(".yml")) {
        return fail(format!(
            "extends {s:?} is not a path to a .yaml file: named bases and templates are not \
             supported; write the path of a Podfile in the repository, e.g. ./base.yaml"
        ));
    }
    Ok(s.to_string())
}

pub(in crate::core::podfile) fn shell(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<String, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "an absolute path such as /bin/bash")?,
    };
    if s.is_empty() {
        return Err(cx.err(
            at,
            Target::Value,
            "empty path: give an absolute path, e.g. /bin/bash".to_string(),
        ));
    }
    if !s.starts_with('/') {
        return Err(cx.err(
            at,
            Target::Value,
            format!("path {s:?} is not absolute: give a full path starting with /, e.g. /bin/bash"),
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.err(
            at,
            Target::Value,
            format!(
                "shell {s:?} contains a space or a control character: give the shell's path \
                 only, e.g. /bin/bash"
            ),
        ));
    }
    Ok(s.to_string())
}

pub(in crate::core::podfile) fn mode(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<SessionMode, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "a session mode such as grace-period")?,
    };
    SessionMode::parse(s.trim()).ok_or_else(|| {
        cx.err(
            at,
            Target::Value,
            format!(
                "invalid session mode {s:?}: use one of grace-period, destroy-on-disconnect, \
                 named (alias persistent), ttl"
            ),
        )
    })
}

/// The rules and messages of the configuration's `cpus` (its parser is private there).
pub(in crate::core::podfile) fn parse_cpus(text: &str) -> Result<f64, ValueError> {
    const HINT: &str = "give a number of CPUs, e.g. 2 or 0.5 (0 = unlimited)";
    let t = text.trim();
    if t.is_empty() {
        return Err(ValueError::from(format!("empty value: {HINT}")));
    }
    let n: f64 = t
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("invalid number of CPUs {text:?}: {HINT}"))?;
    if n < 0.0 {
        return Err(ValueError::from(format!(
            "invalid number of CPUs {text:?}: cannot be negative; {HINT}"
        )));
    }
    if n > 1024.0 {
        return Err(ValueError::from(format!(
            "invalid number of CPUs {text:?}: at most 1024 are allowed; {HINT}"
        )));
    }
    Ok(if n == 0.0 { 0.0 } else { n })
}

pub(in crate::core::podfile) fn resources(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
    layer: &mut Layer,
) -> Result<(), PodfileError> {
    let entries = match node {
        Node::Map(m) => m.as_slice(),
        Node::Null => &[],
        other => {
            return Err(cx.err(
                at,
                Target::Value,
                format!(
                    "expected a mapping such as {{cpus: 2, memory: 4g}}, found {}",
                    other.kind()
                ),
            ))
        }
    };
    for (k, v) in entries {
        let kat = with(at, Seg::Key(k.clone()));
        match k.as_str() {
            "cpus" => {
                let s = match v {
                    Node::Null => "",
                    n => scalar(cx, &kat, n, "a number of CPUs such as 2 or 0.5")?,
                };
                layer.cpus = Some(parse_cpus(s).map_err(|m| cx.err(&kat, Target::Value, m))?);
            }
            "memory" => {
                let s = match v {
                    Node::Null => "",
                    n => scalar(cx, &kat, n, "a size such as 512m or 2g")?,
                };
                layer.memory =
                    Some(parse_size(s).map_err(|m| cx.err(&kat, Target::Value, m.to_string()))?);
            }
            _ => {
                let mut m = format!("unknown key {k:?} — valid keys here: cpus, memory");
                if let Some(s) = suggestion(k, &["cpus", "memory"]) {
                    m.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(cx.err(&kat, Target::Key, m));
            }
        }
    }
    Ok(())
}

/// A Debian package name (Debian policy §5.6.1): lowercase letters, digits, `+ - .`, at least
/// two characters, starting with a letter or digit.
pub(in crate::core::podfile) fn is_apt_name(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

pub(in crate::core::podfile) fn packages(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<Vec<At<PackageItem>>, PodfileError> {
    let mut out: Vec<At<PackageItem>> = Vec::new();
    for (i, item) in list(cx, at, node, "package names such as git or node@20")?
        .iter()
        .enumerate()
    {
        let iat = with(at, Seg::Index(i));
        let s = scalar(cx, &iat, item, "a package name such as git or node@20")?.trim();
        let fail = |m: String| Err(cx.err(&iat, Target::Value, m));
        let value = if let Some(name) = s.strip_prefix('!') {
            // `!node` or `!node@20`.
            let bare = name.split_once('@').map_or(name, |(n, _)| n);
            if !is_apt_name(bare) && recipes::find(bare).is_none() {
                return fail(format!(
                    "{s:?}: after ! give the name of an inherited package, e.g. \"!vim\""
                ));
            }
            PackageItem::Remove(name.to_string())
        } else if let Some((name, version)) = s.split_once('@') {
            match recipes::check(name, version) {
                Ok(name) => PackageItem::Add(Package::Recipe {
                    name: name.to_string(),
                    version: version.to_string(),
                }),
                Err(m) => return fail(m.to_string()),
            }
        } else if is_apt_name(s) {
            PackageItem::Add(Package::Apt(s.to_string()))
        } else {
            return fail(format!(
                "invalid package name {s:?}: give a Debian/Ubuntu package name (lowercase \
                 letters, digits, + - ., at least two characters, e.g. build-essential), or \
                 name@version for {}",
                recipes::known_list()
            ));
        };
        // Within one file: no repeats, and one version per recipe.
        for prev in &out {
            let same = match (&prev.value, &value) {
                (PackageItem::Add(a), PackageItem::Add(b)) => {
                    a == b || (a.name() == b.name() && matches!(b, Package::Recipe { .. }))
                }
                (PackageItem::Remove(a), PackageItem::Remove(b)) => a == b,
                (PackageItem::Add(a), PackageItem::Remove(b))
                | (PackageItem::Remove(b), PackageItem::Add(a)) => a.name() == b,
            };
            if same {
                return fail(format!(
                    "{s:?} conflicts with an earlier entry of this list (the same package, or \
                     another version of it): keep one"
                ));
            }
        }
        out.push(At { value, at: iat });
    }
    Ok(out)
}

pub(in crate::core::podfile) fn check_env_name(s: &str) -> Result<(), ValueError> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && s.len() <= 256 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(ValueError::from(format!(
            "invalid environment variable name {s:?}: use letters, digits and _, not starting \
             with a digit, e.g. MY_VAR"
        )))
    }
}

/// Every `${…}` in `value` must be one of the two placeholders.
pub(in crate::core::podfile) fn check_placeholders(value: &str) -> Result<(), ValueError> {
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        let after = &rest[i..];
        let Some(end) = after.find('}') else {
            return Err(ValueError::from(format!(
                "unclosed \"${{\" in {value:?}: write {PLACEHOLDER_USER} or {PLACEHOLDER_PROJECT}"
            )));
        };
        let placeholder = &after[..=end];
        if placeholder != PLACEHOLDER_USER && placeholder != PLACEHOLDER_PROJECT {
            return Err(ValueError::from(format!(
                "unknown placeholder {placeholder}: only {PLACEHOLDER_USER} and \
                 {PLACEHOLDER_PROJECT} are expanded (other variables are not; the value is \
                 passed as written)"
            )));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// `allow_remove`: an empty value means "remove the inherited variable" (top-level env) rather
/// than an empty string (a service's env).
pub(in crate::core::podfile) fn env(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
    allow_remove: bool,
) -> Result<Vec<(String, Option<String>)>, PodfileError> {
    let entries = match node {
        Node::Map(m) => m.as_slice(),
        Node::Null => &[],
        other => {
            return Err(cx.err(
                at,
                Target::Value,
                format!(
                    "expected a mapping of variable name to value, e.g. {{EDITOR: vim}}, found {}",
                    other.kind()
                ),
            ))
        }
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let kat = with(at, Seg::Key(k.clone()));
        check_env_name(k).map_err(|m| cx.err(&kat, Target::Key, m))?;
        let value = match v {
            Node::Null => String::new(),
            // As written: `3.10` stays 3.10, `007` stays 007.
            Node::Number(n) => raw_scalar(cx.text, &kat).unwrap_or_else(|| n.clone()),
            n => scalar(cx, &kat, n, "a value (a string, number or true/false)")?.to_string(),
        };
        if value.contains('\0') {
            return Err(cx.err(
                &kat,
                Target::Value,
                format!("the value of {k} contains a NUL character, which no environment holds"),
            ));
        }
        check_placeholders(&value).map_err(|m| cx.err(&kat, Target::Value, m))?;
        let value = if value.is_empty() && allow_remove {
            None
        } else {
            Some(value)
        };
        out.push((k.clone(), value));
    }
    Ok(out)
}

pub(in crate::core::podfile) fn commands(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<Vec<String>, PodfileError> {
    let items: Vec<(Vec<Seg>, &Node)> = match node {
        Node::Scalar(_) | Node::Number(_) => vec![(at.to_vec(), node)],
        n => list(cx, at, n, "commands")?
            .iter()
            .enumerate()
            .map(|(i, c)| (with(at, Seg::Index(i)), c))
            .collect(),
    };
    let mut out = Vec::new();
    for (cat, item) in items {
        let c = scalar(cx, &cat, item, "a shell command")?;
        if c.trim().is_empty() {
            return Err(cx.err(
                &cat,
                Target::Value,
                "empty command: write a shell command or remove the entry".to_string(),
            ));
        }
        if c.contains('\0') {
            return Err(cx.err(
                &cat,
                Target::Value,
                "the command contains a NUL character".to_string(),
            ));
        }
        out.push(c.to_string());
    }
    Ok(out)
}

/// A service name: a DNS label (it becomes the service's network alias and part of a container
/// name).
pub(in crate::core::podfile) fn check_service_name(s: &str) -> Result<(), ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ValueError::from(format!(
            "invalid service name {s:?}: use 1-32 lowercase letters, digits or '-', starting and \
             ending with a letter or digit, e.g. postgres (it becomes the service's host name)"
        )))
    }
}

pub(in crate::core::podfile) const SERVICE_KEYS: [&str; 5] =
    ["name", "image", "env", "ports", "volumes"];

/// `services:` as a list of `{name, image, …}` (the reference's form) or as a mapping
/// `name: {image, …}`.
pub(in crate::core::podfile) fn services(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
) -> Result<Vec<At<ServiceItem>>, PodfileError> {
    let mut out: Vec<At<ServiceItem>> = Vec::new();
    let mut push = |item: At<ServiceItem>, name_at: &[Seg]| -> Result<(), PodfileError> {
        let name = match &item.value {
            ServiceItem::Define(s) => &s.name,
            ServiceItem::Remove(n) => n,
        };
        let dup = out.iter().any(|o| match &o.value {
            ServiceItem::Define(s) => s.name == *name,
            ServiceItem::Remove(n) => n == name,
        });
        if dup {
            return Err(cx.err(
                name_at,
                Target::Value,
                format!("service {name:?} appears twice: service names must be unique"),
            ));
        }
        out.push(item);
        Ok(())
    };
    match node {
        Node::Null => {}
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let iat = with(at, Seg::Index(i));
                let Node::Map(fields) = item else {
                    return Err(cx.err(
                        &iat,
                        Target::Value,
                        format!(
                            "expected a service such as {{name: postgres, image: postgres:16}}, \
                             found {}",
                            item.kind()
                        ),
                    ));
                };
                let name_at = with(&iat, Seg::Key("name".into()));
                let name =
                    match fields.iter().find(|(k, _)| k == "name") {
                        Some((_, n)) => scalar(cx, &name_at, n, "a service name such as postgres")?,
                        None => return Err(cx.err(
                            &iat,
                            Target::Value,
                            "the service has no name: add \"name: postgres\" (its host name on \
                             the session's network)"
                                .to_string(),
                        )),
                    };
                let item = service(cx, &iat, name, &name_at, fields, true)?;
                push(item, &name_at)?;
            }
        }
        Node::Map(entries) => {
            for (name, body) in entries {
                let sat = with(at, Seg::Key(name.clone()));
                let fields: &[(String, Node)] = match body {
                    Node::Map(f) => f,
                    Node::Null => &[],
                    other => {
                        return Err(cx.err(
                            &sat,
                            Target::Value,
                            format!(
                                "expected the service's settings such as {{image: postgres:16}}, \
                                 found {}",
                                other.kind()
                            ),
                        ))
                    }
                };
                let item = service(cx, &sat, name, &sat, fields, false)?;
                push(item, &sat)?;
            }
        }
        other => {
            return Err(cx.err(
                at,
                Target::Value,
                format!(
                    "expected a list of services such as [{{name: postgres, image: postgres:16}}], \
                     found {}",
                    other.kind()
                ),
            ))
        }
    }
    Ok(out)
}

pub(in crate::core::podfile) fn service(
    cx: &Ctx,
    at: &[Seg],
    name: &str,
    name_at: &[Seg],
    fields: &[(String, Node)],
    name_field: bool,
) -> Result<At<ServiceItem>, PodfileError> {
    let name_target = if name_field {
        Target::Value
    } else {
        Target::Key
    };
    if let Some(removed) = name.strip_prefix('!') {
        check_service_name(removed).map_err(|m| cx.err(name_at, name_target, m))?;
        if let Some((k, _)) = fields.iter().find(|(k, _)| k != "name") {
            return Err(cx.err(
                &with(at, Seg::Key(k.clone())),
                Target::Key,
                format!(
                    "\"!{removed}\" removes an inherited service and takes no other settings: \
                     remove {k}"
                ),
            ));
        }
        return Ok(At {
            value: ServiceItem::Remove(removed.to_string()),
            at: name_at.to_vec(),
        });
    }
    check_service_name(name).map_err(|m| cx.err(name_at, name_target, m))?;
    let mut svc = Service {
        name: name.to_string(),
        image: String::new(),
        env: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
    };
    let mut has_image = false;
    for (k, v) in fields {
        let kat = with(at, Seg::Key(k.clone()));
        match k.as_str() {
            "name" if name_field => {}
            "image" => {
                svc.image = image(cx, &kat, v)?;
                has_image = true;
            }
            "env" => {
                svc.env = env(cx, &kat, v, false)?
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect();
            }
            "ports" => {
                for (i, p) in list(cx, &kat, v, "port numbers such as 5432")?
                    .iter()
                    .enumerate()
                {
                    let pat = with(&kat, Seg::Index(i));
                    let s = scalar(cx, &pat, p, "a port number such as 5432")?;
                    match s.trim().parse::<u16>() {
                        Ok(n) if n > 0 => svc.ports.push(n),
                        _ => {
                            return Err(cx.err(
                                &pat,
                                Target::Value,
                                format!("invalid port {s:?}: give a number from 1 to 65535"),
                            ))
                        }
                    }
                }
            }
            "volumes" => {
                for (i, p) in list(
                    cx,
                    &kat,
                    v,
                    "volumes such as pgdata:/var/lib/postgresql/data",
                )?
                .iter()
                .enumerate()
                {
                    let vat = with(&kat, Seg::Index(i));
                    let s = scalar(
                        cx,
                        &vat,
                        p,
                        "a volume such as pgdata:/var/lib/postgresql/data",
                    )?;
                    let vol = parse_volume(s).map_err(|m| cx.err(&vat, Target::Value, m))?;
                    if svc.volumes.iter().any(|o| o.target == vol.target) {
                        return Err(cx.err(
                            &vat,
                            Target::Value,
                            format!("two volumes are mounted at {}: keep one", vol.target),
                        ));
                    }
                    svc.volumes.push(vol);
                }
            }
            _ => {
                let valid: Vec<&str> = SERVICE_KEYS
                    .iter()
                    .copied()
                    .filter(|k| name_field || *k != "name")
                    .collect();
                let mut m = format!("unknown key {k:?} — valid keys here: {}", valid.join(", "));
                if let Some(s) = suggestion(k, &valid) {
                    m.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(cx.err(&kat, Target::Key, m));
            }
        }
    }
    if !has_image {
        return Err(cx.err(
            name_at,
            name_target,
            format!("service {name:?} has no image: add e.g. \"image: postgres:16\""),
        ));
    }
    Ok(At {
        value: ServiceItem::Define(svc),
        at: name_at.to_vec(),
    })
}

pub(in crate::core::podfile) fn clean_abs_path(p: &str) -> bool {
    p.starts_with('/') && no_control(p) && !p.contains(':') && !p.split('/').any(|c| c == "..")
}

/// `source:target[:ro|:rw]`: a named volume (`pgdata:/var/lib/postgresql/data`) or a host bind
/// (`/srv/data:/data`).
pub(in crate::core::podfile) fn parse_volume(s: &str) -> Result<Volume, ValueError> {
    const HINT: &str = "write name:/path for a named volume (kept across sessions), e.g. \
                        pgdata:/var/lib/postgresql/data, or /host/path:/path for a host bind \
                        mount (only if the admin allows binds), optionally followed by :ro";
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => {
            return Err(ValueError::from(format!(
                "invalid volume {s:?}: unknown option {opt:?} (use ro or rw); {HINT}"
            )))
        }
        _ => return Err(ValueError::from(format!("invalid volume {s:?}: {HINT}"))),
    };
    if !clean_abs_path(target) || target == "/" {
        return Err(ValueError::from(format!(
            "invalid volume {s:?}: the mount point {target:?} must be an absolute path other \
             than / without \"..\"; {HINT}"
        )));
    }
    let source = if source.starts_with('/') {
        if !clean_abs_path(source) {
            return Err(ValueError::from(format!(
                "invalid volume {s:?}: the host path {source:?} must be absolute without \"..\" \
                 or control characters; {HINT}"
            )));
        }
        VolumeSource::HostBind(source.to_string())
    } else {
        let ok = source.len() <= 64
            && source.starts_with(|c: char| c.is_ascii_alphanumeric())
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(ValueError::from(format!(
                "invalid volume {s:?}: {source:?} is neither a volume name (letters, digits, \
                 _ . -, starting with a letter or digit) nor an absolute host path (relative \
                 host paths are not supported); {HINT}"
            )));
        }
        VolumeSource::Named(source.to_string())
    };
    Ok(Volume {
        source,
        target: target.to_string(),
        read_only,
    })
}
