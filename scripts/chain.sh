#!/usr/bin/env bash
# A real Ethereum chain for tests and the demo: anvil (Foundry, from npm), the contracts
# compiled with the pinned solcjs, Sablier's Lockup from its npm artifacts.
# See `scripts/chain.sh --help`.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CONTRACTS="$REPO_ROOT/contracts"

CHAIN_PORT="${CHAIN_PORT:-18545}"
CHAIN_BLOCK_TIME="${CHAIN_BLOCK_TIME:-}"
CHAIN_START_TIMEOUT="${CHAIN_START_TIMEOUT:-30}"
STATE_DIR="${CHAIN_STATE_DIR:-$REPO_ROOT/.cache/chain}"
SABLIER_DIR="${CHAIN_SABLIER_DIR:-$STATE_DIR/sablier}"
PID_FILE="$STATE_DIR/anvil.pid"
LOG_FILE="$STATE_DIR/anvil.log"
DEPLOYMENT="${CHAIN_DEPLOYMENT:-$STATE_DIR/deployment.json}"
ANVIL="$CONTRACTS/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
CAST="$CONTRACTS/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
RPC_URL="http://127.0.0.1:$CHAIN_PORT"

# Sablier's packages are fetched alone with `npm pack` (`npm install @sablier/lockup` pulls a
# dependency from a git host, which is unreachable here); their SHA-256 is pinned, so a
# changed tarball is an error, not a different contract.
SABLIER_PACKAGES=(
    "lockup @sablier/lockup@4.0.1 3e486899e2ffdd17e0a951ae7e5d5e54dca7821676ececead1f48960c4a5702d"
    "evm-utils @sablier/evm-utils@2.0.1 142bac14c1da6ba44592d103658ac860a87cffcb0e6bc5d9b8467b19d1acbad7"
)

usage() {
    cat <<EOF
Usage: scripts/chain.sh <command> [options]

A local Ethereum development chain (anvil) and the ParalleliX contracts on it.
All state lives under ${STATE_DIR#"$REPO_ROOT"/}.

Commands:
  setup     install the npm packages under contracts/ (anvil, cast, solc, OpenZeppelin;
            versions pinned by contracts/package-lock.json) and unpack Sablier's Lockup
            artifacts (pinned tarballs); does nothing that is already done.
  build     compile contracts/src into contracts/out (the checked-in artifacts).
  check     compile into a temporary directory and fail if contracts/out differs (stale).
  start     start anvil on 127.0.0.1:\$CHAIN_PORT in the background and wait until it
            answers; prints the RPC URL. Already running: says so, exits 0.
  deploy [--cooldown-seconds N] [--stream-seconds S]
            deploy every contract (and the bootstrap stream) on the running chain with the
            first dev account and write the deployment file; prints its path. N: NodeStaking's
            unstake cooldown (default 60); S: the reward stream's length (default 730 days).
  stop      stop anvil (its state is in memory: a restart is a fresh chain).
  status    "running" (exit 0) or "stopped" (exit 3).
  -h, --help  this text.

Environment (defaults):
  CHAIN_PORT=18545          anvil's port (chain id 31337)
  CHAIN_BLOCK_TIME=         seconds per block; empty: a block per transaction
  CHAIN_START_TIMEOUT=30    seconds to wait for anvil to answer
  CHAIN_STATE_DIR=.cache/chain
  CHAIN_SABLIER_DIR=\$CHAIN_STATE_DIR/sablier   where setup unpacks Sablier (a chain of
                            its own elsewhere can share the unpacked packages)
  CHAIN_DEPLOYMENT=\$CHAIN_STATE_DIR/deployment.json

The dev accounts and keys are anvil's well-known ones: development only, never on a real
network (docs/settlement.md says what a real deployment needs).
EOF
}

log() { printf 'chain.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_node() {
    command -v node >/dev/null && command -v npm >/dev/null \
        || die "Node.js and npm are needed (Debian: apt-get install nodejs npm)"
}

cmd_setup() {
    need_node
    mkdir -p "$STATE_DIR"
    local stamp="$CONTRACTS/node_modules/.package-lock.json"
    if [[ ! -x "$ANVIL" || ! -f "$stamp" || "$CONTRACTS/package-lock.json" -nt "$stamp" ]]; then
        log "installing contracts/ npm packages (npm ci)"
        (cd "$CONTRACTS" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
    [[ -x "$ANVIL" ]] || die "npm ci did not install $ANVIL"
    local entry name spec sum tarball tmp got
    for entry in "${SABLIER_PACKAGES[@]}"; do
        read -r name spec sum <<<"$entry"
        if [[ -f "$SABLIER_DIR/$name/.sha256" && "$(cat "$SABLIER_DIR/$name/.sha256")" == "$sum" ]]; then
            continue
        fi
        log "fetching $spec (npm pack)"
        tmp="$(mktemp -d)"
        tarball="$(cd "$tmp" && npm pack --silent "$spec" 2>/dev/null | tail -n 1)"
        [[ -n "$tarball" && -f "$tmp/$tarball" ]] || die "npm pack $spec failed"
        got="$(sha256sum "$tmp/$tarball" | cut -d' ' -f1)"
        [[ "$got" == "$sum" ]] || die "$spec: SHA-256 $got, expected $sum"
        rm -rf "${SABLIER_DIR:?}/$name"
        mkdir -p "$SABLIER_DIR/$name"
        tar -xzf "$tmp/$tarball" -C "$SABLIER_DIR/$name"
        echo "$sum" >"$SABLIER_DIR/$name/.sha256"
        rm -rf "$tmp"
    done
}

cmd_build() {
    cmd_setup
    (cd "$CONTRACTS" && node scripts/build.js out)
}

cmd_check() {
    cmd_setup
    local tmp
    tmp="$(mktemp -d)"
    (cd "$CONTRACTS" && node scripts/build.js "$tmp")
    if ! diff -r "$tmp" "$CONTRACTS/out" >/dev/null; then
        diff -rq "$tmp" "$CONTRACTS/out" >&2 || true
        rm -rf "$tmp"
        die "contracts/out is stale: run scripts/chain.sh build and commit the result"
    fi
    rm -rf "$tmp"
    log "contracts/out matches contracts/src"
}

running() {
    [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

answers() {
    "$CAST" chain-id --rpc-url "$RPC_URL" >/dev/null 2>&1
}

cmd_start() {
    cmd_setup
    if running && answers; then
        log "already running"
        echo "$RPC_URL"
        return 0
    fi
    answers && die "something else answers at $RPC_URL (set CHAIN_PORT)"
    local args=(--host 127.0.0.1 --port "$CHAIN_PORT")
    [[ -n "$CHAIN_BLOCK_TIME" ]] && args+=(--block-time "$CHAIN_BLOCK_TIME")
    setsid "$ANVIL" "${args[@]}" >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local waited=0
    until answers; do
        running || { tail -n 20 "$LOG_FILE" >&2; die "anvil exited"; }
        ((waited++ < CHAIN_START_TIMEOUT * 10)) || die "anvil did not answer in ${CHAIN_START_TIMEOUT}s"
        sleep 0.1
    done
    log "anvil $("$ANVIL" --version | head -n 1 | awk '{print $3}') at $RPC_URL"
    echo "$RPC_URL"
}

cmd_stop() {
    if running; then
        kill "$(cat "$PID_FILE")" 2>/dev/null || true
        local i
        for i in $(seq 50); do
            running || break
            sleep 0.1
        done
        if running; then kill -9 "$(cat "$PID_FILE")" 2>/dev/null || true; fi
    fi
    rm -f "$PID_FILE"
}

cmd_deploy() {
    local extra=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --cooldown-seconds)
                [[ "${2:-}" =~ ^[0-9]+$ ]] || die "deploy --cooldown-seconds: a number of seconds"
                extra+=(--cooldown-seconds "$2")
                shift 2
                ;;
            --stream-seconds)
                [[ "${2:-}" =~ ^[0-9]+$ ]] || die "deploy --stream-seconds: a number of seconds"
                extra+=(--stream-seconds "$2")
                shift 2
                ;;
            *) die "deploy: unknown option '$1' (see --help)" ;;
        esac
    done
    cmd_setup
    answers || die "no chain answers at $RPC_URL: scripts/chain.sh start first"
    local bin="${PRLX_CHAIN_BIN:-$REPO_ROOT/target/debug/prlx-chain}"
    if [[ ! -x "$bin" ]]; then
        (cd "$REPO_ROOT" && cargo build -q --locked -p prlx-chain --bin prlx-chain)
    fi
    "$bin" deploy --rpc-url "$RPC_URL" --out "$DEPLOYMENT" --sablier "$SABLIER_DIR" "${extra[@]}" >&2
    echo "$DEPLOYMENT"
}

case "${1:-}" in
    setup) cmd_setup ;;
    build) cmd_build ;;
    check) cmd_check ;;
    start) cmd_start ;;
    deploy)
        shift
        cmd_deploy "$@"
        ;;
    stop) cmd_stop ;;
    status)
        if running && answers; then echo running; else
            echo stopped
            exit 3
        fi
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 64
        ;;
esac
