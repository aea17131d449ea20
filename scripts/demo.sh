#!/usr/bin/env bash
# The main job on the embedded file log: the coordinator runs the intake lifecycle (catalog,
# deposits, accepted and rejected submissions), then the auditor replays and verifies the log.
# Re-running it appends to the same log and verifies the whole history again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
usage: scripts/demo.sh [LOG_DIR]
Runs the coordinator demo on file://LOG_DIR (default ./demo-log), then
`prlx-replay verify` on the same log. Needs only a Rust toolchain.
USAGE
  exit 0
fi

dir="${1:-./demo-log}"
cargo build --bins --locked -q
echo "== coordinator: intake lifecycle on file://$dir"
./target/debug/prlx-coordinator demo --log "file://$dir" --key-file "$dir.key"
echo
echo "== auditor: replay and verify file://$dir"
./target/debug/prlx-replay verify --log "file://$dir" --snapshot "$dir.snapshot"
