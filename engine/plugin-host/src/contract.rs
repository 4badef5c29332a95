//! The plugin contract as this host implements it: the WIT package (`sdk/wit/plugin.wit`),
//! its version and the versions accepted, its interfaces and its worlds. Every other module
//! (the load-time import check, `plugin inspect`, error messages) reads these names from
//! here, and the tests at the bottom read the WIT file itself, so the host's idea of the
//! contract cannot drift from the contract. The policy is `docs/plugin-contract.md`.
//!
//! Which capability interface needs which grant is the config's [`GRANTS`] table: each grant
//! names the interface it unlocks.

use telltale_config::{GRANTS, Grant};
use telltale_model::PluginKind;

/// The WIT package of the contract, without version.
pub const PACKAGE: &str = "telltale:plugin";

/// The contract version this host implements (the package version of `sdk/wit/plugin.wit`).
pub const VERSION: (u64, u64, u64) = (0, 3, 0);

/// Interfaces of the contract every plugin may import without a grant. Every other
/// interface is a capability with a row in [`GRANTS`].
pub const UNGRANTED_INTERFACES: &[&str] = &["types", "host"];

/// The export every world has: called once after instantiation with the entry's `config`.
pub const INIT: &str = "init";

/// One world of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldInfo {
    /// The kind of plugin it makes (its config section is the kind's plural).
    pub kind: PluginKind,
    /// The world a plugin is built against (`collector`).
    pub name: &'static str,
    /// The world the host links such a plugin with: `name` itself, or a world that also
    /// imports every capability the plugin may import (`full-collector`).
    pub linked: &'static str,
    /// The export the host calls each time (`collect`), besides [`INIT`].
    pub call: &'static str,
}

/// The `collector` world: `init` + `collect`, any capability its entry grants.
pub const COLLECTOR: WorldInfo = WorldInfo {
    kind: PluginKind::Collector,
    name: "collector",
    linked: "full-collector",
    call: "collect",
};

/// The `analyzer` world: `init` + `analyze`, imports only `host`.
pub const ANALYZER: WorldInfo = WorldInfo {
    kind: PluginKind::Analyzer,
    name: "analyzer",
    linked: "analyzer",
    call: "analyze",
};

/// Every world this host runs, in the order `plugin inspect` tries them.
pub const WORLDS: &[WorldInfo] = &[COLLECTOR, ANALYZER];

/// The full version: `0.3.0`.
pub fn version() -> String {
    let (major, minor, patch) = VERSION;
    format!("{major}.{minor}.{patch}")
}

/// Whether a contract version is one this host accepts: the same major and, for `0.x`,
/// the same minor version (see `docs/plugin-contract.md`).
pub fn version_accepted(version: &str) -> bool {
    let Some((major, minor, _)) = parse_version(version) else {
        return false;
    };
    let (host_major, host_minor, _) = VERSION;
    major == host_major && (major != 0 || minor == host_minor)
}

/// The versions this host accepts, for messages: `0.3.x`.
pub fn accepted_versions() -> String {
    let (major, minor, _) = VERSION;
    if major == 0 {
        format!("{major}.{minor}.x")
    } else {
        format!("{major}.x")
    }
}

/// The grant an interface of the contract needs (`files` → the `files` grant), by its name
/// without package and version; `None` for an ungranted or unknown interface.
pub fn grant_for(interface: &str) -> Option<&'static Grant> {
    GRANTS.iter().find(|g| g.interface == interface)
}

/// Every interface of the contract, without package and version: the ungranted ones, then
/// the capabilities.
pub fn interfaces() -> impl Iterator<Item = &'static str> {
    UNGRANTED_INTERFACES
        .iter()
        .copied()
        .chain(GRANTS.iter().map(|g| g.interface))
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    // Pre-release and build suffixes (`0.3.0-rc1`) do not change compatibility here.
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn same_minor_is_accepted_within_0x() {
        assert!(version_accepted("0.3.0"));
        assert!(version_accepted("0.3.7"));
        assert!(version_accepted("0.3.0-rc1"));
        // 0.1 returned `list<sample>` from `collect`, 0.2 a `sample-batch` of records;
        // 0.3 returns one of number columns.
        assert!(!version_accepted("0.1.0"));
        assert!(!version_accepted("0.2.9"));
        assert!(!version_accepted("0.4.0"));
        assert!(!version_accepted("1.3.0"));
        assert!(!version_accepted("0.3"));
        assert!(!version_accepted("(unversioned)"));
        assert_eq!(accepted_versions(), "0.3.x");
        assert_eq!(version(), "0.3.0");
    }

    /// The WIT file, the constants above and the config's grant table agree: the package
    /// and its version, every interface (each capability with exactly one grant), and
    /// every world with its exports. Adding an interface, a grant or a world in one place
    /// only fails here.
    #[test]
    fn the_wit_file_matches_the_contract_constants_and_the_grant_table() {
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/wit/plugin.wit");
        let mut resolve = wit_parser::Resolve::default();
        let package = resolve.push_file(&wit).unwrap();
        let pkg = &resolve.packages[package];
        assert_eq!(format!("{}:{}", pkg.name.namespace, pkg.name.name), PACKAGE);
        assert_eq!(
            pkg.name.version.as_ref().map(ToString::to_string),
            Some(version())
        );

        let in_wit: BTreeSet<&str> = pkg.interfaces.keys().map(String::as_str).collect();
        let known: BTreeSet<&str> = interfaces().collect();
        assert_eq!(
            in_wit, known,
            "an interface of {} without a grant in telltale_config::GRANTS (or listed in \
             UNGRANTED_INTERFACES), or a grant naming an interface the WIT does not have",
            PACKAGE
        );
        let capabilities: Vec<&str> = GRANTS.iter().map(|g| g.interface).collect();
        let distinct: BTreeSet<&str> = capabilities.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            capabilities.len(),
            "one grant per interface"
        );
        assert!(
            UNGRANTED_INTERFACES
                .iter()
                .all(|i| grant_for(i).is_none() && !capabilities.contains(i))
        );

        let world_names: BTreeSet<&str> = pkg.worlds.keys().map(String::as_str).collect();
        let interface_name = |key: &wit_parser::WorldKey| match key {
            wit_parser::WorldKey::Interface(id) => resolve.interfaces[*id].name.clone(),
            wit_parser::WorldKey::Name(name) => Some(name.clone()),
        };
        for w in WORLDS {
            for name in [w.name, w.linked] {
                assert!(world_names.contains(name), "no world `{name}` in the WIT");
                let world = &resolve.worlds[pkg.worlds[name]];
                let exports: BTreeSet<String> =
                    world.exports.keys().filter_map(interface_name).collect();
                let expected: BTreeSet<String> =
                    [INIT, w.call].iter().map(ToString::to_string).collect();
                assert_eq!(exports, expected, "the exports of world `{name}`");
            }
            // The linked world imports every capability the plugin's world may import.
            let imports = |name: &str| -> BTreeSet<String> {
                resolve.worlds[pkg.worlds[name]]
                    .imports
                    .keys()
                    .filter_map(interface_name)
                    .collect()
            };
            assert!(
                imports(w.name).is_subset(&imports(w.linked)),
                "world `{}` imports what `{}` does not",
                w.name,
                w.linked
            );
        }
        // Collectors may be granted anything: the world the host links them with imports
        // every capability.
        let full = &resolve.worlds[pkg.worlds[COLLECTOR.linked]];
        let imported: BTreeSet<String> = full.imports.keys().filter_map(interface_name).collect();
        for g in GRANTS {
            assert!(
                imported.contains(g.interface),
                "`{}` does not import `{}`",
                COLLECTOR.linked,
                g.interface
            );
        }
        let kinds: BTreeSet<&str> = WORLDS.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(kinds.len(), WORLDS.len(), "one world per kind");
    }
}
