//! What a plugin may be granted, in one table: [`GRANTS`] names each grant's key under an
//! entry's `grants:`, the contract interface it unlocks, how it is written, and how to
//! tell whether a [`Grants`] value gives it. The plugin host's load-time import check,
//! `plugin inspect` and `plugin run --grant` all read the table, so a grant is added here
//! (a field of [`Grants`] and a row of [`GRANTS`]) and nowhere else in the engine; the
//! tests below and in the plugin host fail when the struct, the table and the WIT
//! contract (`sdk/wit/plugin.wit`) disagree.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// What a plugin may touch. Everything not granted is refused, and a plugin whose component
/// imports a capability it is not granted is refused at load time.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// The typed system snapshot (CPU, memory, load, disks, networks).
    #[serde(default)]
    pub system: bool,
    /// Path prefixes the plugin may read files under (e.g. `/proc`). `..` and symlinks
    /// are resolved before the check.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// `HOST:PORT` pairs the plugin may send HTTP GET requests to (e.g. `127.0.0.1:9100`,
    /// `localhost:8000`, `[::1]:9090`), matched against the URL's host as written.
    #[serde(default)]
    pub http: Vec<String>,
    /// The process table (pid, name, command line, CPU, memory, I/O, threads, open files).
    #[serde(default)]
    pub processes: bool,
    /// NVIDIA GPUs through NVML (utilisation, memory, temperature, power, clocks, throttle
    /// reasons, ECC errors, per-process memory). Without an NVIDIA driver the capability
    /// answers "unavailable" with the reason.
    #[serde(default)]
    pub gpu: bool,
}

/// How a grant is written: a switch or a list of what is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantShape {
    /// A boolean: `system: true`; `--grant system` on the command line.
    Flag,
    /// A list: `files: [/proc, /sys]`; `--grant files=/proc`, repeatable.
    List,
}

/// One capability a plugin entry can be granted.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// Its key under `grants:` (`files`), also its `--grant` name in `plugin run`.
    pub name: &'static str,
    /// The contract interface that needs it, without package and version (`files` for
    /// `telltale:plugin/files@0.3.0`).
    pub interface: &'static str,
    /// Whether it is a switch or a list.
    pub shape: GrantShape,
    /// A placeholder value for hints (lists only; empty for flags): `/some/dir`.
    pub example: &'static str,
    /// The YAML to add under `grants:` to give it, shown in load errors and by
    /// `plugin inspect`.
    pub yaml: &'static str,
    /// Whether a [`Grants`] value gives it (a list grants when it is not empty).
    pub granted: fn(&Grants) -> bool,
}

impl Grant {
    /// Its `plugin run` form: `--grant system`, `--grant files=/some/dir`.
    pub fn flag(&self) -> String {
        match self.shape {
            GrantShape::Flag => self.name.to_string(),
            GrantShape::List => format!("{}={}", self.name, self.example),
        }
    }
}

/// Every grant, in the order of [`Grants`]' fields.
pub const GRANTS: &[Grant] = &[
    Grant {
        name: "system",
        interface: "system",
        shape: GrantShape::Flag,
        example: "",
        yaml: "system: true",
        granted: |g| g.system,
    },
    Grant {
        name: "files",
        interface: "files",
        shape: GrantShape::List,
        example: "/some/dir",
        yaml: "files: [\"/some/dir\"]",
        granted: |g| !g.files.is_empty(),
    },
    Grant {
        name: "http",
        interface: "http",
        shape: GrantShape::List,
        example: "HOST:PORT",
        yaml: "http: [\"HOST:PORT\"]",
        granted: |g| !g.http.is_empty(),
    },
    Grant {
        name: "processes",
        interface: "processes",
        shape: GrantShape::Flag,
        example: "",
        yaml: "processes: true",
        granted: |g| g.processes,
    },
    Grant {
        name: "gpu",
        interface: "gpu",
        shape: GrantShape::Flag,
        example: "",
        yaml: "gpu: true",
        granted: |g| g.gpu,
    },
];

/// The grant named `name` (its key under `grants:`).
pub fn grant(name: &str) -> Option<&'static Grant> {
    GRANTS.iter().find(|g| g.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table and the struct agree: the same names in the same order, the same shapes,
    /// and each row's YAML gives exactly that grant, as its `granted` reads it.
    #[test]
    fn the_table_matches_the_struct_and_its_schema() {
        let schema = schemars::schema_for!(Grants);
        let props = schema
            .as_value()
            .get("properties")
            .and_then(|p| p.as_object())
            .expect("Grants has properties");
        let fields: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut names: Vec<&str> = GRANTS.iter().map(|g| g.name).collect();
        names.sort_unstable();
        let mut sorted_fields = fields.clone();
        sorted_fields.sort_unstable();
        assert_eq!(
            names, sorted_fields,
            "a field of Grants without a row in GRANTS, or the reverse"
        );
        for g in GRANTS {
            let ty = props[g.name].get("type").and_then(|t| t.as_str());
            let shape = if ty == Some("boolean") {
                GrantShape::Flag
            } else {
                GrantShape::List
            };
            assert_eq!(g.shape, shape, "grant `{}`", g.name);
            assert_eq!(
                g.example.is_empty(),
                shape == GrantShape::Flag,
                "{}",
                g.name
            );

            let parsed: Grants = serde_yaml::from_str(g.yaml)
                .unwrap_or_else(|e| panic!("grant `{}`: `{}` is not a grant: {e}", g.name, g.yaml));
            for other in GRANTS {
                assert_eq!(
                    (other.granted)(&parsed),
                    other.name == g.name,
                    "`{}` should grant `{}` and nothing else, by `{}.granted`",
                    g.yaml,
                    g.name,
                    other.name
                );
            }
            // The `--grant` form parses back to the same grant.
            let flag = g.flag();
            assert_eq!(flag.split('=').next(), Some(g.name));
        }
        assert!(
            GRANTS.iter().all(|g| !(g.granted)(&Grants::default())),
            "the default grants nothing"
        );
        assert_eq!(grant("files").map(|g| g.interface), Some("files"));
        assert!(grant("teleport").is_none());
    }
}
