#!/usr/bin/env bash
# Builds the Python collector into OUT_DIR/python-collector.wasm (default: ./out).
#
#   examples/python-collector/build.sh [OUT_DIR]
#
# Needs python3; installs componentize-py 0.25.1 with pip if it is missing. The WIT
# contract is taken from sdk/wit of this checkout at build time (staged with this
# example's world under OUT_DIR/wit), so the plugin never builds against a stale copy.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
here="$(cd "$(dirname "$0")" && pwd)"
sdk_wit="$here/../../sdk/wit"
out="${1:-$here/out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "build.sh: $PYTHON not found; install Python 3.10+ first" >&2
  exit 1
fi

# componentize-py as a module of this Python, so the version check and the install agree.
installed="$("$PYTHON" -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p')"
if [ "$installed" != "$COMPONENTIZE_PY_VERSION" ]; then
  echo "build.sh: installing componentize-py==$COMPONENTIZE_PY_VERSION" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

# WIT layout componentize-py expects: the world in the top directory, the packages it
# uses in deps/<name>/. Rebuilt on every run so it always matches sdk/wit.
wit="$out/wit"
rm -rf "$wit"
mkdir -p "$wit/deps/telltale-plugin"
cp "$here/wit/"*.wit "$wit/"
cp "$sdk_wit/"*.wit "$wit/deps/telltale-plugin/"

# Only app.py goes in: componentize-py bundles every file under its Python path, so
# pointing it at this directory would also pack earlier build outputs.
src="$out/src"
rm -rf "$src"
mkdir -p "$src"
cp "$here/app.py" "$src/"

cd "$src"
# `python -m componentize_py` does not exist (no __main__): call its console entry point.
"$PYTHON" -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' \
  -d "$wit" -w python-collector \
  componentize app -p "$src" -o "$out/python-collector.wasm.tmp"
# Renamed into place only when complete: a watcher never sees a half-written plugin.
mv "$out/python-collector.wasm.tmp" "$out/python-collector.wasm"
echo "$out/python-collector.wasm"
