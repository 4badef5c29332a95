#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints (host and wasm plugins), and all tests
# (unit, plugin, end-to-end with the real binary, doc tests). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
fi

step() { printf '\n==> %s\n' "$*" >&2; }

# The end-to-end tests build the Python example plugin (examples/python-collector) and,
# under CI, fail when they cannot: install its toolchain up front.
if ! python3 -c 'import componentize_py' >/dev/null 2>&1; then
  step "installing componentize-py (Python plugins)"
  python3 -m pip install --quiet componentize-py==0.25.1
fi

step "formatting"
cargo fmt --all -- --check

# The build script of engine/standard-plugins builds the wasm plugins first.
step "lints: engine (all targets, benchmarks included)"
cargo clippy --all-targets --locked -- -D warnings
# Every plugin crate (standard and test-only), each on its own: the SDK's two worlds are
# exclusive features, so plugins must never share one cargo invocation.
for manifest in plugins/*/Cargo.toml tests/plugins/*/Cargo.toml; do
  p=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
  step "lints: $p (wasm32-wasip2)"
  cargo clippy -p "$p" --target wasm32-wasip2 --locked -- -D warnings
done

step "tests: metric format parsers"
cargo test -p telltale-formats --locked

# The standard plugins keep their logic in plain Rust, tested natively.
for manifest in plugins/*/Cargo.toml; do
  p=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
  step "tests: $p (native, its pure logic)"
  cargo test -p "$p" --locked
done

step "tests: SDK doc examples (each world)"
cargo test -p telltale-sdk --features collector --doc --locked
cargo test -p telltale-sdk --features analyzer --doc --locked

# The ingest end-to-end test drives the listeners with the real Python clients.
if ! python3 -c 'import prometheus_client, statsd' 2>/dev/null; then
  step "installing Python prometheus_client and statsd (ingest e2e clients)"
  python3 -m pip install --quiet prometheus_client statsd
fi

# The scaling end-to-end test installs Ray Serve from PyPI into a virtual environment
# under target/ (once): Debian's python3 needs python3-venv for that.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  step "installing python3-venv (Ray Serve's virtual environment)"
  sudo_if_needed=""
  [ "$(id -u)" -ne 0 ] && sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  $sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi

# Every engine crate (engine/*): unit tests, the tidy test of the crate graph, the
# end-to-end tests of the real binary (the `telltale` package) and doc tests.
engine_packages=()
for manifest in engine/*/Cargo.toml; do
  engine_packages+=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)")
done
step "tests: engine (unit, tidy, end-to-end, doc)"
cargo test "${engine_packages[@]}" --locked
