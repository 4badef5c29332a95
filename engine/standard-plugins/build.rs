//! Builds the WebAssembly plugins that ship inside the binary (and the test plugins) for
//! `wasm32-wasip2`, then copies them where the engine's code can `include_bytes!` them.
//!
//! * Standard plugins (`plugins/system`, `plugins/gpu`, `plugins/window-stats`,
//!   `plugins/prometheus`, `plugins/process`) are copied to `OUT_DIR` and
//!   embedded by `src/lib.rs`: the one binary is the whole product.
//! * Test plugins (`tests/plugins/*`) are copied to `OUT_DIR/test-plugins/NAME.wasm`; the
//!   directory is exported to this package's code as `TELLTALE_TEST_PLUGINS_DIR`, which
//!   `src/lib.rs` publishes to the other crates' tests as `TEST_PLUGINS_DIR`.
//!
//! Each plugin is built by its **own** nested `cargo build -p PKG` because the SDK's
//! `collector` and `analyzer` features are exclusive: building several plugins in one
//! invocation would unify the features and fail. The nested cargo uses a separate target
//! directory (`<target>/wasm-plugins/<hash of the checkout's path>`) so it never waits on
//! the lock the outer build holds, and runs with a cleaned environment so the outer build's
//! flags and target do not leak in.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile defined in the workspace's Cargo.toml for plugins (size-optimised, LTO).
const PLUGIN_PROFILE: &str = "plugin";

/// One plugin crate to build: its package, the crate's directory, the file name it gets.
struct PluginCrate {
    package: &'static str,
    dir: &'static str,
    file: &'static str,
    standard: bool,
}

const PLUGINS: &[PluginCrate] = &[
    PluginCrate {
        package: "telltale-plugin-system",
        dir: "plugins/system",
        file: "system.wasm",
        standard: true,
    },
    PluginCrate {
        package: "telltale-plugin-gpu",
        dir: "plugins/gpu",
        file: "gpu.wasm",
        standard: true,
    },
    PluginCrate {
        package: "telltale-plugin-window-stats",
        dir: "plugins/window-stats",
        file: "window-stats.wasm",
        standard: true,
    },
    PluginCrate {
        package: "telltale-plugin-prometheus",
        dir: "plugins/prometheus",
        file: "prometheus.wasm",
        standard: true,
    },
    PluginCrate {
        package: "telltale-plugin-process",
        dir: "plugins/process",
        file: "process.wasm",
        standard: true,
    },
    PluginCrate {
        package: "telltale-test-plugin-hang",
        dir: "tests/plugins/hang",
        file: "hang.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-counter",
        dir: "tests/plugins/counter",
        file: "counter.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-bench-samples",
        dir: "tests/plugins/bench-samples",
        file: "bench-samples.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-alloc",
        dir: "tests/plugins/alloc",
        file: "alloc.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-recurse",
        dir: "tests/plugins/recurse",
        file: "recurse.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-flood",
        dir: "tests/plugins/flood",
        file: "flood.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-panic",
        dir: "tests/plugins/panic",
        file: "panic.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-snoop",
        dir: "tests/plugins/snoop",
        file: "snoop.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-fetch",
        dir: "tests/plugins/fetch",
        file: "fetch.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-slow",
        dir: "tests/plugins/slow",
        file: "slow.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-ps",
        dir: "tests/plugins/ps",
        file: "ps.wasm",
        standard: false,
    },
    PluginCrate {
        package: "telltale-test-plugin-level-shift",
        dir: "tests/plugins/level-shift",
        file: "level-shift.wasm",
        standard: false,
    },
];

/// Environment variables of the outer build that must not reach the nested cargo.
/// Every other `CARGO_*` variable is removed too, except those in `KEEP_CARGO_VARS`.
const REMOVE_VARS: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// `CARGO_*` variables the nested cargo should still see: where the registry lives, the
/// jobserver (so the nested build shares the outer build's job slots), and network settings.
const KEEP_CARGO_VARS: &[&str] = &["CARGO_HOME", "CARGO_MAKEFLAGS"];
const KEEP_CARGO_PREFIXES: &[&str] = &[
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_TERM_",
];

fn main() {
    if let Err(message) = run() {
        // A panic prints the message with cargo's "failed to run custom build command".
        panic!("\n\n{message}\n");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .ok_or("engine/standard-plugins/ has no grandparent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    emit_rerun_if_changed(&workspace);

    check_wasm_target()?;

    let target_root = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        _ => workspace.join("target"),
    };
    // One directory per checkout: several checkouts (git worktrees) sharing one target
    // directory would otherwise build their own plugin sources into the same place, and
    // cargo's mtime-based freshness could hand one checkout another's artifacts.
    let wasm_target_dir = target_root
        .join("wasm-plugins")
        .join(format!("{:016x}", path_hash(&workspace)));
    let test_plugins_dir = out_dir.join("test-plugins");
    fs::create_dir_all(&test_plugins_dir)
        .map_err(|e| format!("cannot create {}: {e}", test_plugins_dir.display()))?;

    for plugin in PLUGINS {
        let built = build_plugin(&workspace, &wasm_target_dir, plugin)?;
        let dest = if plugin.standard {
            out_dir.join(plugin.file)
        } else {
            test_plugins_dir.join(plugin.file)
        };
        fs::copy(&built, &dest)
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), dest.display()))?;
    }

    println!(
        "cargo:rustc-env=TELLTALE_TEST_PLUGINS_DIR={}",
        test_plugins_dir.display()
    );
    Ok(())
}

/// A short stable hash of a path (FNV-1a), naming a checkout's plugin target directory.
fn path_hash(path: &Path) -> u64 {
    path.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name} for the build script"))
}

/// Tells cargo exactly which inputs the plugins depend on.
fn emit_rerun_if_changed(workspace: &Path) {
    let mut paths = vec![
        workspace.join("Cargo.toml"),
        workspace.join("Cargo.lock"),
        workspace.join("sdk/Cargo.toml"),
        workspace.join("sdk/src"),
        workspace.join("sdk/wit"),
        // The prometheus plugin parses with the formats crate.
        workspace.join("formats/Cargo.toml"),
        workspace.join("formats/src"),
    ];
    for plugin in PLUGINS {
        paths.push(workspace.join(plugin.dir).join("Cargo.toml"));
        paths.push(workspace.join(plugin.dir).join("src"));
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
}

/// Fails early, with the fix, when the toolchain cannot build for `wasm32-wasip2`.
fn check_wasm_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let target_lib = Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET);
    if !output.status.success() || !target_lib.is_dir() {
        return Err(format!(
            "the Rust target `{WASM_TARGET}` is not installed (looked for {}).\n\
             Telltale's plugins are WebAssembly components built into the binary;\n\
             run `rustup target add {WASM_TARGET}` and build again.",
            target_lib.display()
        ));
    }
    Ok(())
}

/// Builds one plugin package with its own cargo invocation and returns the `.wasm` path.
fn build_plugin(
    workspace: &Path,
    target_dir: &Path,
    plugin: &PluginCrate,
) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["-p", plugin.package])
        .args(["--target", WASM_TARGET])
        .args(["--profile", PLUGIN_PROFILE])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace);
    // The outer build is offline or frozen: so must the nested one be.
    if env::var_os("CARGO_NET_OFFLINE").is_some_and(|v| v == "true" || v == "1") {
        cmd.arg("--offline");
    }
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let is_cargo = key.starts_with("CARGO_") || key.starts_with("__CARGO");
        let keep = KEEP_CARGO_VARS.contains(&key)
            || KEEP_CARGO_PREFIXES.iter().any(|p| key.starts_with(p));
        if (is_cargo && !keep) || REMOVE_VARS.contains(&key) {
            cmd.env_remove(key);
        }
    }

    let output = cmd.output().map_err(|e| {
        format!(
            "cannot run {} to build plugin {}: {e}",
            cargo.to_string_lossy(),
            plugin.package
        )
    })?;
    if !output.status.success() {
        return Err(format!(
            "building plugin `{}` ({}) for {WASM_TARGET} failed:\n{}",
            plugin.package,
            plugin.dir,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let artifact = target_dir
        .join(WASM_TARGET)
        .join(PLUGIN_PROFILE)
        .join(format!("{}.wasm", plugin.package.replace('-', "_")));
    if !artifact.is_file() {
        return Err(format!(
            "plugin `{}` built but {} is missing",
            plugin.package,
            artifact.display()
        ));
    }
    Ok(artifact)
}
