# Sourced by run.sh and test.sh: installs what a fresh machine lacks.
# Idempotent and quiet when everything is already there.
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 target (the plugins are built for it)…" >&2
    rustup target add wasm32-wasip2
  fi
else
  echo "warning: rustup not found; make sure the wasm32-wasip2 target is installed" >&2
fi
