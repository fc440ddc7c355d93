#!/usr/bin/env bash
# The full DeepSpeed matrix on a machine with >= 2 NVIDIA GPUs (not run in CI: the CPU tests in
# test_deepspeed_distributed.py cover ZeRO 1/2/3 in fp32, bf16 and fp16 on gloo, fp16 there only
# through the runner's answer to DeepSpeed's CPU capability check). For each ZeRO stage (1, 2, 3)
# and precision (fp32, bf16, fp16 with dynamic loss scaling from 2**20, so the first steps overflow)
# it trains the all-plugins run on NGPUS processes (nccl) and checks check_deepspeed_run.py's rules:
# gradviz's group norms squared sum to DeepSpeed's own unscaled global norm (1e-4 relative); the
# steps DeepSpeed skipped for an fp16 overflow, and only those, are marked grad_norm/skipped (at
# least one in fp16); every rank logs the same norms, stops at the same step with the same LRs;
# only rank 0 prunes; every kept checkpoint has its global_stepN folder and latest tag.
#
#   NGPUS=2 bash tests/distributed/deepspeed_gpu_matrix.sh [OUT_ROOT]
#
# Needs a CUDA build of torch in PYTHON's environment (default: the repo's .venv; `make install`
# there installs torch==2.13.0 from the index it is given, the CPU build on a CPU-only mirror) and
# the repo's packages installed in it. bf16 needs Ampere or newer (transformers refuses it otherwise).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-$(mktemp -d)}"
NGPUS="${NGPUS:-2}"
export DS_ACCELERATOR=cuda  # never the CPU accelerator a shell left set for the CPU tests
"$PY" - "$NGPUS" <<'PYCHECK'
import sys

import torch

need = int(sys.argv[1])
found = torch.cuda.device_count() if torch.cuda.is_available() else 0
if need < 2 or found < need:
    sys.exit(f"deepspeed_gpu_matrix.sh: NGPUS={need} needs >= 2 CUDA devices, torch {torch.__version__} sees {found}")
PYCHECK
echo "results and logs: $OUT"
status=0
for stage in 1 2 3; do
  for precision in fp32 bf16 fp16; do
    mode="zero${stage}-gpu-${precision}"
    mkdir -p "$OUT/$mode"
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo "== $mode"
    if timeout 900 "$PY" -m torch.distributed.run --nproc_per_node="$NGPUS" --master_addr=127.0.0.1 \
        --master_port="$port" "$HERE/run_all_plugins.py" "$mode" "$OUT/$mode" >"$OUT/$mode.log" 2>&1 \
       && "$PY" "$HERE/check_deepspeed_run.py" "$OUT/$mode" "$NGPUS"; then
      echo "   ok"
    else
      echo "   FAILED (log: $OUT/$mode.log)"; status=1
    fi
  done
done
exit $status
