//! `name@version` packages: the versions podspawn knows how to install, and how.
//!
//! Anything else with an `@` is refused with a message listing these (the reference turned an
//! unknown `pkg@ver` into apt's `pkg=ver*`, which fails late, at build time). Each recipe is
//! one `RUN` of shell text built only from the validated name and version, so nothing from the
//! Podfile reaches it unchecked.
use crate::core::config::ValueError;

/// One package that can be installed at a chosen version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub name: &'static str,
    /// The versions accepted after `@`.
    pub versions: &'static [&'static str],
    /// Debian packages the recipe needs first (installed in the same apt layer).
    pub needs: &'static [&'static str],
    /// What it installs, for people.
    pub about: &'static str,
}

pub const RECIPES: [Recipe; 3] = [
    Recipe {
        name: "node",
        versions: &["18", "20", "22"],
        needs: &["ca-certificates", "curl", "gnupg"],
        about: "Node.js from NodeSource's apt repository",
    },
    Recipe {
        name: "python",
        versions: &["3.11", "3.12", "3.13"],
        needs: &["ca-certificates", "gnupg", "software-properties-common"],
        about: "CPython with venv from the deadsnakes PPA (Ubuntu bases only)",
    },
    Recipe {
        name: "go",
        versions: &["1.22", "1.23", "1.24"],
        needs: &["ca-certificates", "curl"],
        about: "the Go toolchain from go.dev into /usr/local/go (go@1.22 means 1.22.0; \
                go@1.22.5 picks a patch release)",
    },
];

/// The recipe called `name` (`nodejs` is accepted as another name of `node`).
pub fn find(name: &str) -> Option<&'static Recipe> {
    let name = if name == "nodejs" { "node" } else { name };
    RECIPES.iter().find(|r| r.name == name)
}

/// `node@18|20|22, python@3.11|3.12|3.13, go@1.22|1.23|1.24` (for messages).
pub fn known_list() -> String {
    RECIPES
        .iter()
        .map(|r| format!("{}@{}", r.name, r.versions.join("|")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The listed version `version` stands for, if any (for go: `1.22` or `1.22.<patch>`).
fn matching_version(recipe: &Recipe, version: &str) -> Option<&'static str> {
    if let Some(v) = recipe.versions.iter().find(|v| **v == version) {
        return Some(v);
    }
    if recipe.name == "go" {
        let (minor, patch) = version.rsplit_once('.')?;
        let listed = recipe.versions.iter().find(|v| **v == minor)?;
        let patch_ok = !patch.is_empty()
            && patch.len() <= 3
            && patch.chars().all(|c| c.is_ascii_digit())
            && !(patch.len() > 1 && patch.starts_with('0'));
        return patch_ok.then_some(*listed);
    }
    None
}

/// Is `name@version` installable? Gives the recipe's own name (`nodejs` → `node`); the error
/// lists what is installable.
pub fn check(name: &str, version: &str) -> Result<&'static str, ValueError> {
    let Some(recipe) = find(name) else {
        return Err(ValueError::from(format!(
            "no recipe for {name}@{version}: a version can be chosen only for {} (other \
             packages come from the base image's apt repositories: write just the name, e.g. \
             {})",
            known_list(),
            if super::parse::is_apt_name(name) {
                name
            } else {
                "curl"
            }
        )));
    };
    if matching_version(recipe, version).is_none() {
        return Err(ValueError::from(format!(
            "{name}@{version}: podspawn can install {} versions {} only ({})",
            recipe.name,
            recipe.versions.join(", "),
            recipe.about
        )));
    }
    Ok(recipe.name)
}

/// The shell text of the recipe's `RUN` (run by /bin/sh with `set -eu`). `None` when
/// [`check`] fails.
pub fn script(name: &str, version: &str) -> Option<String> {
    let recipe = find(name)?;
    matching_version(recipe, version)?;
    let apt_clean = "rm -rf /var/lib/apt/lists/*";
    let text = match recipe.name {
        "node" => format!(
            "curl -fsSL https://deb.nodesource.com/setup_{version}.x -o /tmp/nodesource_setup.sh; \
             bash /tmp/nodesource_setup.sh; rm -f /tmp/nodesource_setup.sh; \
             apt-get install -y --no-install-recommends nodejs; {apt_clean}"
        ),
        "python" => format!(
            "add-apt-repository -y ppa:deadsnakes/ppa; apt-get update; \
             apt-get install -y --no-install-recommends python{version} python{version}-venv; \
             {apt_clean}"
        ),
        "go" => {
            let full = if version.matches('.').count() == 1 {
                format!("{version}.0")
            } else {
                version.to_string()
            };
            format!(
                "arch=$(dpkg --print-architecture); \
                 curl -fsSL \"https://go.dev/dl/go{full}.linux-$arch.tar.gz\" -o /tmp/go.tgz; \
                 rm -rf /usr/local/go; tar -C /usr/local -xzf /tmp/go.tgz; rm -f /tmp/go.tgz; \
                 ln -sf /usr/local/go/bin/go /usr/local/bin/go; \
                 ln -sf /usr/local/go/bin/gofmt /usr/local/bin/gofmt"
            )
        }
        _ => return None,
    };
    Some(text)
}
