#!/usr/bin/env bash
# Builds Telltale and runs it on its embedded defaults (system metrics, default rules,
# alerts on the console). Extra arguments go to `telltale run`, e.g. `-c examples/quickstart.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
cargo run --release --bin telltale -- run "$@"
