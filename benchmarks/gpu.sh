#!/usr/bin/env bash
# The GPU benchmarks in one go, for the first lent GPU machine (issue 24 item 6):
#   bash benchmarks/gpu.sh [OUT_DIR]          # default: runs/gpu; writes OUT_DIR/gpu.json (one JSON of everything)
# 1. installs the [cuda] extra (tensorflow[and-cuda]: CUDA and cuDNN as pip wheels) into the active environment
#    (or a fresh .venv-gpu when none is active);
# 2. checks that TensorFlow sees the GPU (stops with an error line if not);
# 3. runs the inversion benchmark (engine, no PyTorch: the GPU figures are absolute), the batched-restart
#    throughput curve (1, 8, 32, 128 problems per graph), mixed precision's agreement and the DIP step at 256² and
#    512² (benchmarks/gpu_throughput.py), and the training benchmarks when benchmarks/training_speed.py is there;
# 4. merges their JSON files into OUT_DIR/gpu.json, with nvidia-smi's description of the card.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu}"
mkdir -p "$OUT"
if [ -z "${VIRTUAL_ENV:-}" ]; then
  python3 -m venv .venv-gpu
  . .venv-gpu/bin/activate
fi
pip install -q -e ".[cuda]"
python - <<'PY'
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    sys.exit("error: TensorFlow sees no GPU (check `nvidia-smi` and that the [cuda] extra installed tensorflow[and-cuda])")
print("TensorFlow", tf.__version__, "sees", [g.name for g in gpus])
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/nvidia-smi.txt" || true
python benchmarks/inversion_speed.py --no-torch --rounds 5 --json "$OUT/inversion.json"
python benchmarks/inversion_speed.py --no-torch --batched --figure --cases alexnet:conv5 --rounds 3 --json "$OUT/inversion_batched.json"
python benchmarks/gpu_throughput.py --json "$OUT/throughput.json"
if [ -f benchmarks/training_speed.py ]; then
  python benchmarks/training_speed.py --no-torch --json "$OUT/training.json"
fi
python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "gpu.json"}
smi = out / "nvidia-smi.txt"
merged["card"] = smi.read_text().strip() if smi.exists() else "unknown"
tmp = out / "gpu.json.tmp"
tmp.write_text(json.dumps(merged, indent=1))
tmp.replace(out / "gpu.json")
print("wrote", out / "gpu.json")
PY
