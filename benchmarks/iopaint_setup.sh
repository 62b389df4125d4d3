#!/usr/bin/env bash
# Creates the separate IOPaint 1.6 venv that the batch and LaMa-overhead benchmarks compare against.
# IOPaint pulls torchvision and a CUDA build of torch (several GB); it never touches .venv.
# Usage: benchmarks/iopaint_setup.sh [VENV_DIR]    (default /opt/iopaint-venv)
#        benchmarks/iopaint_setup.sh serve VENV_DIR PORT [MODEL_DIR]
#            start IOPaint's server with the cv2 model on 127.0.0.1:PORT (bench_serve.py does this)
set -euo pipefail

if [[ "${1:-}" == "serve" ]]; then
    VENV="$2"
    MODEL_DIR="${4:-$VENV/models}"
    mkdir -p "$MODEL_DIR"
    HF_HUB_OFFLINE=1 exec "$VENV/bin/iopaint" start --model=cv2 --device=cpu \
        --host=127.0.0.1 --port="$3" --model-dir="$MODEL_DIR"
fi

VENV="${1:-/opt/iopaint-venv}"
PYTHON="${PYTHON:-python3.11}"

# iopaint 1.6.0 pins huggingface-hub==0.25.2 but leaves transformers open; without a cap pip
# backtracks through every transformers 5.x release (they need huggingface-hub>=1.0).
# transformers 4.45.2 is the last release that accepts huggingface-hub 0.25.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "transformers==4.45.2" > "$CONSTRAINTS"

"$PYTHON" -m venv "$VENV"
# The CPU build of torch first (what `make` installs): the default index would pick CUDA.
"$VENV/bin/pip" install "${TORCH_SPEC:-torch==2.13.0}"
"$VENV/bin/pip" install -c "$CONSTRAINTS" iopaint==1.6.0

# The cv2 model is built in: this must work offline, with nothing to download.
HF_HUB_OFFLINE=1 "$VENV/bin/iopaint" run --help > /dev/null
echo "IOPaint ready: $VENV/bin/iopaint (python: $VENV/bin/python)"
