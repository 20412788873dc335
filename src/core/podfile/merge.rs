//! `extends`: follow the chain (inside the repository, at most [`MAX_EXTENDS`] links, no
//! cycles), then lay every file over its parent with the rules documented in `mod.rs`.

use super::parse::{parse_layer, At, Layer, PackageItem, Seg, ServiceItem, Target};
use super::{
    ErrorKind, Package, Podfile, PodfileError, ReadError, RepoFiles, Resources, MAX_EXTENDS,
};

/// `rel` (as written in `extends`) joined to the directory of `from`, normalized; `None` when
/// it leaves the repository.
pub(super) fn join_in_repo(from: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = from.split('/').filter(|c| !c.is_empty()).collect();
    parts.pop(); // the file name of `from`
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

fn read_error(file: &str, e: &str) -> PodfileError {
    PodfileError {
        kind: ErrorKind::Read,
        file: file.to_string(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read: {e}"),
    }
}

pub(super) fn resolve(files: &dyn RepoFiles, path: &str) -> Result<Podfile, PodfileError> {
    let Some(file) = join_in_repo("", path).filter(|_| !path.starts_with('/')) else {
        return Err(PodfileError {
            kind: ErrorKind::Invalid,
            file: path.to_string(),
            line: None,
            column: None,
            key: None,
            message: "a Podfile's path must be relative to the repository and stay inside it"
                .to_string(),
        });
    };
    let text = match files.read(&file) {
        Ok(t) => t,
        Err(ReadError::NotFound) => return Err(read_error(&file, "no such file")),
        Err(ReadError::Other(e)) => return Err(read_error(&file, &e)),
    };
    resolve_text(files, &file, text)
}

pub(super) fn resolve_text(
    files: &dyn RepoFiles,
    file: &str,
    text: String,
) -> Result<Podfile, PodfileError> {
    let mut chain: Vec<Layer> = vec![parse_layer(file, &text)?];
    while let Some(layer) = chain.last() {
        let Some(ext) = &layer.extends else { break };
        let fail = |m: String| Err(layer.error(&ext.at, Target::Value, m));
        let Some(target) = join_in_repo(&layer.file, &ext.value) else {
            return fail(format!(
                "extends {:?} leads out of the repository: only Podfiles inside it can be \
                 extended; write a path such as ./base.yaml",
                ext.value
            ));
        };
        if chain.iter().any(|l| l.file == target) {
            let mut names: Vec<&str> = chain.iter().map(|l| l.file.as_str()).collect();
            names.push(&target);
            return fail(format!(
                "extends forms a cycle ({}): a Podfile cannot extend itself, directly or \
                 through others; remove one of these extends",
                names.join(" → ")
            ));
        }
        if chain.len() > MAX_EXTENDS {
            return fail(format!(
                "the extends chain is too long: at most {MAX_EXTENDS} extends links are \
                 followed ({} → …); merge some of these files",
                chain
                    .iter()
                    .take(3)
                    .map(|l| l.file.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ));
        }
        let text = match files.read(&target) {
            Ok(t) => t,
            Err(ReadError::NotFound) => {
                return fail(format!(
                    "extends {:?}: there is no file {target} in the repository; check the path \
                     (it is relative to the directory of {})",
                    ext.value, layer.file
                ))
            }
            Err(ReadError::Other(e)) => {
                let mut err = layer.error(&ext.at, Target::Value, String::new());
                err.kind = ErrorKind::Read;
                err.message = format!("cannot read {target} (named by extends): {e}");
                return Err(err);
            }
        };
        chain.push(parse_layer(&target, &text)?);
    }

    let mut acc = Podfile {
        base: String::new(),
        packages: Vec::new(),
        env: Default::default(),
        services: Vec::new(),
        on_create: Vec::new(),
        on_start: Vec::new(),
        extra_commands: Vec::new(),
        shell: None,
        resources: Resources::default(),
        mode: None,
        files: chain.iter().map(|l| l.file.clone()).collect(),
    };
    for layer in chain.iter().rev() {
        merge(&mut acc, layer)?;
    }
    // The last file of the chain extends nothing, so parsing made sure it has a base.
    Ok(acc)
}

fn merge(acc: &mut Podfile, layer: &Layer) -> Result<(), PodfileError> {
    if let Some(b) = &layer.base {
        acc.base = b.clone();
    }
    if let Some(s) = &layer.shell {
        acc.shell = Some(s.clone());
    }
    if layer.mode.is_some() {
        acc.mode = layer.mode;
    }
    if layer.cpus.is_some() {
        acc.resources.cpus = layer.cpus;
    }
    if layer.memory.is_some() {
        acc.resources.memory = layer.memory;
    }
    merge_packages(acc, layer)?;
    merge_env(acc, layer);
    merge_services(acc, layer)?;
    for (acc_list, section) in [
        (&mut acc.on_create, &layer.on_create),
        (&mut acc.on_start, &layer.on_start),
        (&mut acc.extra_commands, &layer.extra_commands),
    ] {
        if section.replace {
            acc_list.clear();
        }
        acc_list.extend(section.items.iter().cloned());
    }
    Ok(())
}

fn removal_in_replace(layer: &Layer, key: &str, at: &[Seg], what: &str) -> PodfileError {
    let plain = key.trim_end_matches('!');
    layer.error(
        at,
        Target::Value,
        format!(
            "{key} replaces the inherited {what}s, so there is nothing to remove: drop this \
             entry, or write {plain}: to merge"
        ),
    )
}

fn merge_packages(acc: &mut Podfile, layer: &Layer) -> Result<(), PodfileError> {
    let section = &layer.packages;
    if section.replace {
        acc.packages.clear();
    }
    for At { value, at } in &section.items {
        match value {
            PackageItem::Add(p) => {
                if acc.packages.contains(p) {
                    continue;
                }
                let same_recipe = acc.packages.iter().position(|q| {
                    matches!(q, Package::Recipe { .. })
                        && matches!(p, Package::Recipe { .. })
                        && q.name() == p.name()
                });
                match same_recipe {
                    Some(i) => acc.packages[i] = p.clone(),
                    None => acc.packages.push(p.clone()),
                }
            }
            PackageItem::Remove(name) => {
                if section.replace {
                    return Err(removal_in_replace(layer, &section.key, at, "package"));
                }
                let before = acc.packages.len();
                acc.packages
                    .retain(|q| q.name() != name && q.to_string() != *name);
                if acc.packages.len() == before {
                    let inherited: Vec<String> =
                        acc.packages.iter().map(|p| p.to_string()).collect();
                    return Err(layer.error(
                        at,
                        Target::Value,
                        format!(
                            "\"!{name}\" removes nothing: {name} is not inherited (inherited \
                             packages: {}); remove the entry",
                            if inherited.is_empty() {
                                "none".to_string()
                            } else {
                                inherited.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn merge_env(acc: &mut Podfile, layer: &Layer) {
    if layer.env.replace {
        acc.env.clear();
    }
    for (k, v) in &layer.env.items {
        match v {
            Some(v) => {
                acc.env.insert(k.clone(), v.clone());
            }
            None => {
                acc.env.remove(k);
            }
        }
    }
}

fn merge_services(acc: &mut Podfile, layer: &Layer) -> Result<(), PodfileError> {
    let section = &layer.services;
    if section.replace {
        acc.services.clear();
    }
    for At { value, at } in &section.items {
        match value {
            ServiceItem::Define(s) => match acc.services.iter().position(|o| o.name == s.name) {
                Some(i) => acc.services[i] = s.clone(),
                None => acc.services.push(s.clone()),
            },
            ServiceItem::Remove(name) => {
                if section.replace {
                    return Err(removal_in_replace(layer, &section.key, at, "service"));
                }
                let Some(i) = acc.services.iter().position(|o| o.name == *name) else {
                    let inherited: Vec<&str> =
                        acc.services.iter().map(|s| s.name.as_str()).collect();
                    return Err(layer.error(
                        at,
                        Target::Value,
                        format!(
                            "\"!{name}\" removes nothing: no service {name} is inherited \
                             (inherited services: {}); remove the entry",
                            if inherited.is_empty() {
                                "none".to_string()
                            } else {
                                inherited.join(", ")
                            }
                        ),
                    ));
                };
                acc.services.remove(i);
            }
        }
    }
    Ok(())
}
