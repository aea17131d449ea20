#!/usr/bin/env bash
# One-shot check of the CUDA path on a GPU machine (at most ~8 minutes). Run with --help.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/gpu-check.sh [--out DIR]

On a machine with an NVIDIA GPU, checks the node's CUDA path end to end and writes a short
report to DIR/report.md (default .cache/gpu-check/):

  1. the GPU, driver and CUDA version (nvidia-smi);
  2. the GPU runtime: scripts/setup-models.sh --gpu (onnxruntime-gpu and NVIDIA's CUDA 12 and
     cuDNN 9 wheels from PyPI, cached under .cache/);
  3. a release build of the binaries with prlx-node's `cuda` feature;
  4. the engine on CUDA: `prlx-node generate --provider cuda` of oss-chat-v1 (SmolLM2-135M),
     twice, and once on the CPU: the two GPU answers must be identical, and the report says
     whether they equal the CPU's; tokens/s of each;
  5. the batching tests on CUDA (node/tests/batch.rs with PRLX_TEST_PROVIDER=cuda): batched
     ids equal single-stream ones, and steps keep the KV cache in GPU memory (I/O binding);
  6. continuous batching against single-stream decoding (node/benches/batching.rs, one
     round: 1, 4, 16 and 64 concurrent requests, identical ids checked), on CUDA and on the
     CPU;
  7. the execution class a CUDA node declares (GPU, driver, CUDA, cuDNN, ONNX Runtime);
  8. one request through a real coordinator and a CUDA node: scripts/demo.sh with
     PRLX_DEMO_PROVIDER=cuda (anvil, contracts, settlement and audit as usual).

Each step has its own time limit; a failed step is reported and the next ones that do not
depend on it still run. Exit status: 0 when every step passed.

Needs: an NVIDIA driver (nvidia-smi), network access to PyPI, crates.io and npm on the first
run (everything is cached after), and what scripts/demo.sh needs.
USAGE
}

OUT=.cache/gpu-check
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    *) echo "gpu-check.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
mkdir -p "$OUT"
REPORT="$OUT/report.md"
FAILED=0
T0=$SECONDS
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---:|"
} > "$REPORT"

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND with its output in OUT/NAME.log.
step() {
  local name="$1" limit="$2"; shift 2
  local t=$SECONDS
  echo "== $name" >&2
  # Through bash, so that COMMAND may be one of this script's functions (exported below).
  timeout "$limit" bash -c '"$@"' step "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  if [[ $rc -eq 0 ]]; then
    echo "| $name | ok | $((SECONDS - t)) |" >> "$REPORT"
    return 0
  fi
  FAILED=1
  echo "| $name | FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", over ${limit} s"); see $name.log) | $((SECONDS - t)) |" >> "$REPORT"
  tail -n 20 "$OUT/$name.log" >&2
  return 1
}

finish() {
  {
    echo
    echo "Total: $((SECONDS - T0)) s. Logs: $OUT/*.log."
  } >> "$REPORT"
  cat "$REPORT"
  exit "$FAILED"
}

if ! step gpu 30 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv; then
  echo >> "$REPORT"; echo "No GPU answered: nothing else to check." >> "$REPORT"
  finish
fi
step setup 300 scripts/setup-models.sh --gpu || finish
step build 360 cargo build --release --locked --bins --features prlx-node/cuda || finish
bin=target/release

PROMPT="Tell me a story about a robot"
generate() {  # provider, output file
  "$bin/prlx-node" generate --provider "$1" --model oss-chat-v1 --max-tokens 64 \
    --prompt "$PROMPT" > "$2"
}
export -f generate
export bin PROMPT OUT
if step generate-cuda-1 120 generate cuda "$OUT/cuda-1.txt" \
  && step generate-cuda-2 60 generate cuda "$OUT/cuda-2.txt" \
  && step generate-cpu 120 generate cpu "$OUT/cpu.txt"; then
  answer() { sed '/^---$/,$d' "$1"; }
  rate() { grep -o '[0-9.]* tokens/s' "$1" | head -n 1; }
  {
    echo
    echo "## Engine (oss-chat-v1, 64 tokens, greedy)"
    echo
    echo "| provider | tokens/s |"
    echo "|---|---:|"
    echo "| CUDA, run 1 | $(rate "$OUT/cuda-1.txt") |"
    echo "| CUDA, run 2 | $(rate "$OUT/cuda-2.txt") |"
    echo "| CPU | $(rate "$OUT/cpu.txt") |"
    echo
  } >> "$REPORT"
  if [[ "$(answer "$OUT/cuda-1.txt")" == "$(answer "$OUT/cuda-2.txt")" ]]; then
    echo "The two CUDA answers are identical." >> "$REPORT"
  else
    echo "The two CUDA answers DIFFER (see cuda-1.txt, cuda-2.txt)." >> "$REPORT"
    FAILED=1
  fi
  if [[ "$(answer "$OUT/cuda-1.txt")" == "$(answer "$OUT/cpu.txt")" ]]; then
    echo "The CUDA answer equals the CPU's." >> "$REPORT"
  else
    echo "The CUDA answer differs from the CPU's (another execution class: expected to be possible)." >> "$REPORT"
  fi
fi

# The batching tests on the GPU, the cache's placement among them. A plain test process:
# the CUDA wheels' libraries go on its loader path (prlx-node does that for itself).
cuda_libraries() {
  echo "$(cat .cache/ort-gpu/CUDA_LIBRARY_PATH)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
batch_tests() {
  LD_LIBRARY_PATH="$(cuda_libraries)" PRLX_TEST_PROVIDER=cuda \
    cargo test --locked --release -p prlx-node --features cuda --test batch
}
export -f cuda_libraries batch_tests
step batch-tests-cuda 240 batch_tests

# Batched against single-stream tokens/s (a plain process too).
batching() {  # provider
  LD_LIBRARY_PATH="$(cuda_libraries)" \
    PRLX_BENCH_QUICK=1 PRLX_BENCH_PROVIDER="$1" \
    cargo bench --locked -p prlx-node --features cuda --bench batching
}
export -f batching
for provider in cuda cpu; do
  if step "batching-$provider" 240 batching "$provider"; then
    {
      echo
      echo "## Continuous batching ($provider)"
      echo
      sed -n '/^max_tokens/,$p' "$OUT/batching-$provider.log"
    } >> "$REPORT"
  fi
done

# The class a CUDA node declares, as prlx-node run logs it at start.
class_of() {
  timeout 60 "$bin/prlx-node" run --provider cuda --models oss-chat-v1 --tier 1 --slots 1 \
    --coordinator http://127.0.0.1:9 --log "file://$OUT/class-log" --key "$OUT/class-node.pem" \
    2>&1 | grep -m1 "execution provider"
}
export -f class_of
step class 70 class_of && { echo; echo "Execution class: \`$(cat "$OUT/class.log")\`"; } >> "$REPORT"

step through-node 420 env PRLX_DEMO_PROVIDER=cuda scripts/demo.sh "$OUT/demo"
finish
