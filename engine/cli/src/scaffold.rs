//! `telltale plugin new`: writes a plugin crate that builds with one command and passes its
//! own tests.
//!
//! A third-party author has only this binary: no checkout of Telltale's repository and no
//! published `telltale-sdk` crate. So the SDK's sources and the WIT contract are embedded
//! here (`include_str!`) and written into the new crate as a vendored path dependency
//! (`NAME/telltale-sdk/`). The crate then builds offline except for its crates.io
//! dependencies (`wit-bindgen`, `serde`, `serde_json`). The templates are in `templates/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::plugin::{KindArg, NewArgs};

/// The SDK's manifest as written in this repository (it inherits workspace keys, which
/// [`sdk_manifest`] resolves).
const SDK_MANIFEST: &str = include_str!("../../../sdk/Cargo.toml");

/// Every file of the SDK a plugin build needs, by its path inside `telltale-sdk/`.
/// A test checks that this lists every file of `sdk/src/` and `sdk/wit/`.
const SDK_FILES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/api.rs", include_str!("../../../sdk/src/api.rs")),
    ("src/batch.rs", include_str!("../../../sdk/src/batch.rs")),
    ("src/http.rs", include_str!("../../../sdk/src/http.rs")),
    (
        "src/processes.rs",
        include_str!("../../../sdk/src/processes.rs"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../../sdk/wit/plugin.wit"),
    ),
    ("README.md", include_str!("../../../sdk/README.md")),
];

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");
const README: &str = include_str!("templates/README.md.tmpl");
const GITIGNORE: &str = include_str!("templates/gitignore.tmpl");
const COLLECTOR_RS: &str = include_str!("templates/collector.rs.tmpl");
const ANALYZER_RS: &str = include_str!("templates/analyzer.rs.tmpl");
const ANALYZER_INPUT: &str = include_str!("templates/input.jsonl.tmpl");

/// Names a plugin crate must not take: they would shadow its own dependencies or the
/// standard library's crates.
const RESERVED: &[&str] = &[
    "telltale_sdk",
    "serde",
    "serde_json",
    "wit_bindgen",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "self",
    "super",
    "crate",
];

/// Checks a plugin name and returns its Rust crate (library) name: `-` becomes `_`.
pub(crate) fn crate_name(name: &str) -> Result<String, String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "invalid plugin name `{name}`: use lowercase letters, digits, `-` and `_`, starting \
             with a letter, at most 64 characters (e.g. `nginx-status`)"
        ));
    }
    let lib = name.replace('-', "_");
    if RESERVED.contains(&lib.as_str()) {
        return Err(format!(
            "`{name}` is the name of a crate the plugin depends on or a reserved word; choose another"
        ));
    }
    Ok(lib)
}

/// The SDK's manifest made stand-alone: each `KEY.workspace = true` line replaced by this
/// build's value of KEY.
pub(crate) fn sdk_manifest() -> Result<String, String> {
    let mut out = String::new();
    for line in SDK_MANIFEST.lines() {
        let trimmed = line.trim();
        if let Some(key) = trimmed
            .strip_suffix("= true")
            .map(str::trim)
            .and_then(|k| k.strip_suffix(".workspace"))
        {
            let value = match key {
                "version" => env!("CARGO_PKG_VERSION"),
                "edition" => "2024",
                "rust-version" => env!("CARGO_PKG_RUST_VERSION"),
                "license" => env!("CARGO_PKG_LICENSE"),
                other => {
                    return Err(format!(
                        "internal error: sdk/Cargo.toml inherits `{other}` from the workspace, \
                         which `plugin new` cannot resolve"
                    ));
                }
            };
            out.push_str(&format!("{key} = \"{value}\"\n"));
            if key == "version" {
                out.push_str("publish = false\n");
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

fn fill(template: &str, name: &str, lib: &str, kind: KindArg) -> String {
    let (kind_str, call, run, yaml) = match kind {
        KindArg::Collector => (
            "collector",
            "collect",
            format!(
                "telltale plugin run target/wasm32-wasip2/release/{lib}.wasm --count 3 \
                 --config '{{\"value\": 42}}'"
            ),
            format!(
                "collectors:\n  - name: {name}\n    plugin: {name}/target/wasm32-wasip2/release/{lib}.wasm\n    \
                 interval: 10s\n    config:\n      value: 42\n      source: example\n    \
                 # grants: {{ system: true }}   # only if it imports a capability"
            ),
        ),
        KindArg::Analyzer => (
            "analyzer",
            "analyze",
            format!(
                "telltale plugin run target/wasm32-wasip2/release/{lib}.wasm --input sample-input.jsonl \
                 --config '{{\"threshold\": 10}}'"
            ),
            format!(
                "analyzers:\n  - name: {name}\n    plugin: {name}/target/wasm32-wasip2/release/{lib}.wasm\n    \
                 interval: 30s\n    window: 5m\n    inputs:\n      - system_load_average_1m\n    \
                 config:\n      threshold: 1"
            ),
        ),
    };
    template
        .replace("__NAME__", name)
        .replace("__LIB__", lib)
        .replace("__KIND__", kind_str)
        .replace("__CALL__", call)
        .replace("__VERSION__", env!("CARGO_PKG_VERSION"))
        .replace("__RUN__", &run)
        .replace("__YAML__", &yaml)
}

/// The files of a new plugin crate, by path relative to its directory.
pub(crate) fn files(name: &str, kind: KindArg) -> Result<Vec<(PathBuf, String)>, String> {
    let lib = crate_name(name)?;
    let source = match kind {
        KindArg::Collector => COLLECTOR_RS,
        KindArg::Analyzer => ANALYZER_RS,
    };
    let mut files = vec![
        (
            PathBuf::from("Cargo.toml"),
            fill(CARGO_TOML, name, &lib, kind),
        ),
        (PathBuf::from("README.md"), fill(README, name, &lib, kind)),
        (PathBuf::from(".gitignore"), GITIGNORE.to_string()),
        (PathBuf::from("src/lib.rs"), fill(source, name, &lib, kind)),
        (PathBuf::from("telltale-sdk/Cargo.toml"), sdk_manifest()?),
    ];
    if kind == KindArg::Analyzer {
        files.push((
            PathBuf::from("sample-input.jsonl"),
            ANALYZER_INPUT.to_string(),
        ));
    }
    for (path, text) in SDK_FILES {
        files.push((Path::new("telltale-sdk").join(path), (*text).to_string()));
    }
    Ok(files)
}

/// `telltale plugin new`.
pub(crate) fn new_plugin(args: &NewArgs) -> Result<ExitCode, String> {
    let files = files(&args.name, args.kind)?;
    let parent = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = parent.join(&args.name);
    if root.exists() {
        return Err(format!(
            "{} already exists; choose another name or --dir",
            root.display()
        ));
    }
    for (path, text) in &files {
        let full = root.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&full, text).map_err(|e| format!("cannot write {}: {e}", full.display()))?;
    }
    let lib = crate_name(&args.name)?;
    let kind = match args.kind {
        KindArg::Collector => "collector",
        KindArg::Analyzer => "analyzer",
    };
    println!(
        "Created the {kind} plugin `{}` in {}",
        args.name,
        root.display()
    );
    println!();
    println!("Next:");
    println!("  cd {}", root.display());
    println!("  cargo test                                       # its unit tests, natively");
    println!(
        "  cargo build --release --target wasm32-wasip2     # once: rustup target add wasm32-wasip2"
    );
    match args.kind {
        KindArg::Collector => {
            println!("  telltale plugin run target/wasm32-wasip2/release/{lib}.wasm --count 3")
        }
        KindArg::Analyzer => println!(
            "  telltale plugin run target/wasm32-wasip2/release/{lib}.wasm --input sample-input.jsonl"
        ),
    }
    println!();
    println!(
        "README.md shows how to add it to `telltale run`; telltale-sdk/README.md is the guide."
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_crate_names() {
        assert_eq!(crate_name("nginx-status").unwrap(), "nginx_status");
        assert_eq!(crate_name("probe2").unwrap(), "probe2");
        for bad in [
            "",
            "Nginx",
            "2probe",
            "-x",
            "a b",
            "ünï",
            "telltale-sdk",
            "test",
        ] {
            assert!(crate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sdk_manifest_stands_alone() {
        let m = sdk_manifest().unwrap();
        assert!(!m.contains("workspace"), "{m}");
        assert!(m.contains("name = \"telltale-sdk\""), "{m}");
        assert!(m.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
        assert!(m.contains("wit-bindgen"), "{m}");
    }

    /// A file added to the SDK must be embedded too, or scaffolded crates would not build.
    #[test]
    fn every_sdk_file_is_embedded() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
        for dir in ["src", "wit"] {
            for entry in std::fs::read_dir(sdk.join(dir)).unwrap() {
                let name = entry.unwrap().file_name();
                let rel = format!("{dir}/{}", name.to_string_lossy());
                assert!(
                    SDK_FILES.iter().any(|(p, _)| *p == rel),
                    "sdk/{rel} is not embedded in cli/scaffold.rs SDK_FILES"
                );
            }
        }
    }

    #[test]
    fn templates_are_filled() {
        for kind in [KindArg::Collector, KindArg::Analyzer] {
            for (path, text) in files("my-probe", kind).unwrap() {
                assert!(
                    !text.contains("__NAME__")
                        && !text.contains("__LIB__")
                        && !text.contains("__KIND__")
                        && !text.contains("__RUN__"),
                    "{}: unfilled placeholder",
                    path.display()
                );
            }
        }
        let files = files("my-probe", KindArg::Collector).unwrap();
        let lib = &files
            .iter()
            .find(|(p, _)| p == Path::new("src/lib.rs"))
            .unwrap()
            .1;
        assert!(lib.contains("\"my_probe_value\""));
        let cargo = &files
            .iter()
            .find(|(p, _)| p == Path::new("Cargo.toml"))
            .unwrap()
            .1;
        assert!(cargo.contains("name = \"my-probe\"") && cargo.contains("[workspace]"));
        assert!(cargo.contains("features = [\"collector\"]"));
    }
}
