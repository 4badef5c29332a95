//! Tidy: the workspace's dependency graph is the pipeline's graph.
//!
//! Reads `cargo metadata` and fails, naming the edge, when an engine crate depends on
//! another engine crate that the table below does not allow: a stage may use the
//! foundations (`model`, `diagnostics`, `config`, ...) and the stages it feeds, never a
//! stage earlier in the pipeline. Cargo already refuses cycles; this test refuses the
//! edges that would be legal for cargo but break the layering (for example `alerts`
//! reaching into `rules` instead of taking `RuleMeta` from `model`). It also checks that
//! every engine crate is placed in the table, is described in ARCHITECTURE.md, and opens
//! its `lib.rs` with what it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Each engine crate (directory under `engine/`) and the engine crates it may depend on,
/// in the pipeline's order: foundations first, then the stages, then the assembly.
const ALLOWED: &[(&str, &[&str])] = &[
    // Foundations: used by every stage, using none.
    ("model", &[]),
    ("diagnostics", &[]),
    ("watch", &[]),
    ("config", &["model", "diagnostics"]),
    ("standard-plugins", &["model"]),
    // The hub every stage writes to or reads from.
    ("store", &["model"]),
    // Stages, in pipeline order: collect, ingest, evaluate, alert, notify.
    ("plugin-host", &["model", "config", "standard-plugins"]),
    ("ingest", &["model", "config", "store"]),
    (
        "rules",
        &["model", "diagnostics", "config", "store", "watch"],
    ),
    ("alerts", &["model", "config"]),
    ("notify", &["model", "config"]),
    // Scaling decisions: stabilisation and the scalers that apply them.
    ("scaling", &["model", "config"]),
    ("routing", &["model", "config"]),
    // The assembly joins every stage; the binary drives the assembly.
    (
        "pipeline",
        &[
            "model",
            "diagnostics",
            "watch",
            "config",
            "standard-plugins",
            "store",
            "plugin-host",
            "ingest",
            "rules",
            "alerts",
            "notify",
            "scaling",
            "routing",
        ],
    ),
    // The binary: `run` and `check` through the pipeline's `Engine`; `plugin run/inspect`
    // straight on the plugin host; `store info/backup` straight on the database file;
    // `alerts`, `ack`, `silence` read the alert manager's saved state with its types;
    // `notify test/preview` build one notifier straight from the config.
    (
        "cli",
        &[
            "model",
            "diagnostics",
            "config",
            "standard-plugins",
            "store",
            "plugin-host",
            "pipeline",
            "routing",
            "notify",
        ],
    ),
];

/// Workspace crates outside `engine/` that engine crates may use anywhere.
const SHARED: &[&str] = &["telltale-formats"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the cli crate lies in engine/cli of the repository")
        .to_path_buf()
}

struct Package {
    name: String,
    dir: String,
    manifest: PathBuf,
    deps: Vec<(String, String)>,
}

/// The engine's packages from `cargo metadata`: name, directory under `engine/`, and each
/// dependency on a workspace package with its kind.
fn engine_packages() -> Vec<Package> {
    let root = repo();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let workspace: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let engine = root.join("engine");
    let mut found = Vec::new();
    for p in packages {
        let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
        let Ok(rel) = manifest.strip_prefix(&engine) else {
            continue;
        };
        let dir = rel
            .parent()
            .and_then(|d| d.to_str())
            .expect("engine/<crate>/Cargo.toml")
            .to_string();
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| workspace.contains(d["name"].as_str().unwrap_or("")))
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or_default().to_string(),
                    d["kind"].as_str().unwrap_or("normal").to_string(),
                )
            })
            .collect();
        found.push(Package {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            dir,
            manifest,
            deps,
        });
    }
    found
}

#[test]
fn engine_crates_depend_only_along_the_pipeline() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let packages = engine_packages();
    let dir_of: BTreeMap<&str, &str> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.dir.as_str()))
        .collect();
    assert!(packages.len() >= ALLOWED.len(), "engine crates not found");
    let mut problems = Vec::new();
    for p in &packages {
        let Some(may) = allowed.get(p.dir.as_str()) else {
            problems.push(format!(
                "engine/{} ({}) is not placed in the pipeline: add it to ALLOWED in {} and to \
                 ARCHITECTURE.md",
                p.dir,
                p.name,
                file!()
            ));
            continue;
        };
        for (dep, kind) in &p.deps {
            if SHARED.contains(&dep.as_str()) {
                continue;
            }
            let Some(dep_dir) = dir_of.get(dep.as_str()) else {
                problems.push(format!(
                    "{} -> {dep} ({kind}): {dep} is a workspace crate outside engine/ that \
                     engine crates may not use",
                    p.dir
                ));
                continue;
            };
            if !may.contains(dep_dir) {
                problems.push(format!(
                    "{} -> {dep_dir} ({kind} dependency in {}) goes against the pipeline: {} may \
                     depend only on [{}]. Move the shared type to `model`, or join the two in \
                     `pipeline`.",
                    p.dir,
                    p.manifest.display(),
                    p.dir,
                    may.join(", ")
                ));
            }
        }
    }
    for dir in allowed.keys() {
        if !packages.iter().any(|p| p.dir == *dir) {
            problems.push(format!("ALLOWED names engine/{dir}, which is not a crate"));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_engine_crate_says_what_it_owns_and_is_on_the_map() {
    let root = repo();
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let mut problems = Vec::new();
    for p in engine_packages() {
        let lib = root.join("engine").join(&p.dir).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap_or_default();
        if !text.starts_with("//! ") {
            problems.push(format!(
                "{}: open with `//!` lines saying what the crate owns and its invariants",
                lib.display()
            ));
        }
        if !architecture.contains(&format!("`engine/{}`", p.dir)) {
            problems.push(format!(
                "ARCHITECTURE.md does not describe `engine/{}` ({})",
                p.dir, p.name
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}
