//! Looking at a component without running it: which world it implements, which contract
//! version it was built against, what it imports (and which grant each import needs) and
//! what it exports, and whether this host would load it. `telltale plugin inspect` prints
//! this; `telltale plugin run` uses it to tell a collector from an analyzer.
//!
//! The component is compiled (through the host's cache) but never instantiated: nothing of
//! the plugin runs.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;

use super::PluginHost;
use super::contract::{self, PACKAGE, version_accepted};
use super::error::PluginError;
use telltale_model::PluginKind;

/// Says what is wrong when `bytes` are not a WebAssembly component, judging by the header
/// alone: not WebAssembly at all, or a core module (built for `wasm32-unknown-unknown` or
/// `wasm32-wasip1`) instead of a component. `None` when the header is a component's.
pub fn component_header_problem(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    // The 4 bytes after the magic: version 1 / layer 0 for a core module, 0x0d / layer 1
    // for a component (in the binary format wasmtime 48 reads).
    const CORE_MODULE: &[u8] = &[0x01, 0x00, 0x00, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Some(
            "not a WebAssembly file (it does not start with the `\\0asm` magic bytes)".to_string(),
        );
    }
    if &bytes[4..8] == CORE_MODULE {
        return Some(
            "a core WebAssembly module, not a component: build it for `wasm32-wasip2` \
             (`cargo build --release --target wasm32-wasip2`), or wrap it with \
             `wasm-tools component new`"
                .to_string(),
        );
    }
    None
}

/// What one import of a component needs from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportNeed {
    /// Part of the contract every plugin gets (`host`, `types`).
    Nothing,
    /// A capability: the grant to add (`system: true`).
    Grant {
        /// The grant's name (`system`).
        name: &'static str,
        /// The YAML to add under the entry's `grants:`.
        yaml: &'static str,
    },
    /// A WASI interface: linked, but the sandbox denies it (no files, sockets, env).
    Wasi,
    /// An interface of the contract this host does not know (another version, a
    /// capability it lacks).
    UnknownContract,
    /// An interface from outside the contract and WASI: the host cannot provide it.
    Unknown,
}

/// One import of a component.
#[derive(Debug, Clone)]
pub struct ImportInfo {
    /// Its name (`telltale:plugin/system@0.3.0`, `wasi:io/streams@0.2.6`).
    pub name: String,
    /// What it needs.
    pub need: ImportNeed,
}

/// One export of a component.
#[derive(Debug, Clone)]
pub struct ExportInfo {
    /// Its name (`collect`).
    pub name: String,
    /// What it is: `function`, `instance`, `type`, ...
    pub item: &'static str,
}

/// Everything `plugin inspect` shows about a component.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Size of the `.wasm`, bytes.
    pub size: usize,
    /// SHA-256 of the `.wasm`, hex.
    pub sha256: String,
    /// The world it implements, judged by its exports; `None` when it fits neither.
    pub kind: Option<PluginKind>,
    /// The distinct versions of `telltale:plugin` its imports and exports name.
    pub contract_versions: Vec<String>,
    /// Its imports, in the component's order.
    pub imports: Vec<ImportInfo>,
    /// Its exports, in the component's order.
    pub exports: Vec<ExportInfo>,
    /// Why this host would refuse it; empty when it would load it (given the grants its
    /// imports need).
    pub problems: Vec<String>,
}

impl Inspection {
    /// Whether this host would load it (given the grants its imports need).
    pub fn accepted(&self) -> bool {
        self.problems.is_empty()
    }

    /// The grants its imports need, as YAML lines (`system: true`).
    pub fn grants_needed(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for i in &self.imports {
            if let ImportNeed::Grant { yaml, .. } = i.need
                && !out.contains(&yaml)
            {
                out.push(yaml);
            }
        }
        out
    }
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "core module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// Splits `ns:pkg/iface@1.2.3` into (`ns:pkg/iface`, `Some("1.2.3")`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

fn classify_import(name: &str) -> ImportNeed {
    let (path, _) = split_version(name);
    match path.split_once('/') {
        Some((PACKAGE, interface)) => match contract::grant_for(interface) {
            Some(grant) => ImportNeed::Grant {
                name: grant.name,
                yaml: grant.yaml,
            },
            None if contract::UNGRANTED_INTERFACES.contains(&interface) => ImportNeed::Nothing,
            None => ImportNeed::UnknownContract,
        },
        _ if path.starts_with("wasi:") => ImportNeed::Wasi,
        _ => ImportNeed::Unknown,
    }
}

impl PluginHost {
    /// Inspects a component: compiles it through the cache (never instantiates it) and
    /// reports its world, contract version, imports, exports and whether this host would
    /// load it. `origin` names it in errors (a file path).
    pub async fn inspect(&self, wasm: Vec<u8>, origin: &str) -> Result<Inspection, PluginError> {
        let size = wasm.len();
        let sha256 = Sha256::digest(&wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let host = std::sync::Arc::clone(&self.inner);
        let component = tokio::task::spawn_blocking(move || host.cache.load(&wasm))
            .await
            .map_err(|e| PluginError::Engine {
                message: format!("the compile task failed: {e}"),
            })?
            .map_err(|message| PluginError::Compile {
                instance: origin.to_string(),
                origin: origin.to_string(),
                message,
            })?;

        let engine = &self.inner.engine;
        let ty = component.component_type();
        let imports: Vec<ImportInfo> = ty
            .imports(engine)
            .map(|(name, _)| ImportInfo {
                name: name.to_string(),
                need: classify_import(name),
            })
            .collect();
        let exports: Vec<ExportInfo> = ty
            .exports(engine)
            .map(|(name, item)| ExportInfo {
                name: name.to_string(),
                item: item_kind(&item.ty),
            })
            .collect();

        let versions: BTreeSet<String> = imports
            .iter()
            .map(|i| i.name.as_str())
            .chain(exports.iter().map(|e| e.name.as_str()))
            .filter_map(|n| {
                let (iface, v) = split_version(n);
                iface
                    .starts_with(&format!("{PACKAGE}/"))
                    .then(|| v.unwrap_or("(unversioned)").to_string())
            })
            .collect();

        let has = |name: &str| {
            exports
                .iter()
                .any(|e| e.name == name && e.item == "function")
        };
        // The first world whose export it has; `init` is checked below.
        let world = self.inner.linkers.iter().find(|l| has(l.world.call));
        let kind = world.map(|l| l.world.kind);

        let mut problems = Vec::new();
        for v in &versions {
            if !version_accepted(v) {
                problems.push(format!(
                    "built against {PACKAGE}@{v}; this host implements \
                     {PACKAGE}@{} and accepts {}: rebuild the plugin with a \
                     matching SDK/WIT (see docs/plugin-contract.md)",
                    contract::version(),
                    contract::accepted_versions(),
                ));
            }
        }
        match world {
            None => problems.push(format!("exports {}", no_world_export())),
            Some(_) if !has(contract::INIT) => {
                problems.push(format!("does not export `{}`", contract::INIT))
            }
            Some(_) => {}
        }
        for i in &imports {
            match i.need {
                ImportNeed::Unknown => problems.push(format!(
                    "imports `{}`, which is neither part of {PACKAGE} nor WASI",
                    i.name
                )),
                ImportNeed::UnknownContract if versions.iter().all(|v| version_accepted(v)) => {
                    problems.push(format!(
                        "imports `{}`, which this host does not provide",
                        i.name
                    ))
                }
                _ => {}
            }
        }
        // The authoritative check: link against the world the host would use. It catches
        // what the name-based checks above cannot (a function with another signature).
        if problems.is_empty()
            && let Some(world) = world
            && let Err(e) = (world.links)(&world.linker, &component)
        {
            problems.push(format!("does not link as a {}: {e:#}", world.world.kind));
        }

        Ok(Inspection {
            size,
            sha256,
            kind,
            contract_versions: versions.into_iter().collect(),
            imports,
            exports,
            problems,
        })
    }
}

/// What a component that fits no world lacks: "neither `collect` (collector world) nor
/// `analyze` (analyzer world)".
fn no_world_export() -> String {
    let each: Vec<String> = contract::WORLDS
        .iter()
        .map(|w| format!("`{}` ({} world)", w.call, w.name))
        .collect();
    match each.as_slice() {
        [one] => format!("no {one}"),
        [a, b] => format!("neither {a} nor {b}"),
        all => format!("none of {}", all.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_classified() {
        assert_eq!(
            classify_import("telltale:plugin/system@0.3.0"),
            ImportNeed::Grant {
                name: "system",
                yaml: "system: true"
            }
        );
        assert_eq!(
            classify_import("telltale:plugin/host@0.3.0"),
            ImportNeed::Nothing
        );
        assert_eq!(classify_import("wasi:io/streams@0.2.6"), ImportNeed::Wasi);
        assert_eq!(
            classify_import("telltale:plugin/teleport@0.3.0"),
            ImportNeed::UnknownContract
        );
        assert_eq!(classify_import("acme:x/y"), ImportNeed::Unknown);
    }

    #[tokio::test]
    async fn standard_plugins_are_accepted() {
        let host = PluginHost::new(None).unwrap();
        for p in super::super::standard_plugins() {
            let i = host.inspect(p.wasm.to_vec(), p.name).await.unwrap();
            assert!(i.accepted(), "{}: {:?}", p.name, i.problems);
            assert_eq!(i.kind, Some(p.kind));
            assert_eq!(i.contract_versions, vec!["0.3.0".to_string()]);
        }
        let system = super::super::find_standard("system").unwrap();
        let i = host.inspect(system.wasm.to_vec(), "system").await.unwrap();
        // It may need more (e.g. `files` for /proc), but always the system snapshot.
        assert!(
            i.grants_needed().contains(&"system: true"),
            "{:?}",
            i.grants_needed()
        );
        let hang = host
            .inspect(
                std::fs::read(
                    std::path::Path::new(telltale_standard_plugins::TEST_PLUGINS_DIR)
                        .join("hang.wasm"),
                )
                .unwrap(),
                "hang",
            )
            .await
            .unwrap();
        assert!(hang.grants_needed().is_empty());
    }

    #[tokio::test]
    async fn garbage_is_a_compile_error() {
        let host = PluginHost::new(None).unwrap();
        let e = host
            .inspect(b"not wasm".to_vec(), "x.wasm")
            .await
            .unwrap_err();
        assert!(matches!(e, PluginError::Compile { .. }), "{e}");
    }

    #[test]
    fn headers_tell_modules_from_components() {
        assert!(
            component_header_problem(b"hello world")
                .unwrap()
                .contains("not a WebAssembly file")
        );
        assert!(
            component_header_problem(b"\0asm\x01\0\0\0")
                .unwrap()
                .contains("core WebAssembly module")
        );
        let system = super::super::find_standard("system").unwrap();
        assert_eq!(component_header_problem(system.wasm), None);
    }
}
