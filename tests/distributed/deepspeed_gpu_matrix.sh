#!/usr/bin/env bash
# The full DeepSpeed matrix on a machine with >= 2 NVIDIA GPUs (not run in CI: the CPU tests in
# test_deepspeed_distributed.py cover ZeRO 1/2/3 in fp32 on gloo). For each ZeRO stage (1, 2, 3)
# and precision (fp32, bf16, fp16 with dynamic loss scaling) it trains the all-plugins run on
# NGPUS processes (nccl) and checks check_deepspeed_run.py's rules: gradviz's group norms squared
# sum to DeepSpeed's own global norm (1e-4 relative; fp16 overflow steps marked grad_norm/skipped),
# every rank logs the same norms, stops at the same step with the same LRs, only rank 0 prunes,
# every kept checkpoint has its global_stepN folder and latest tag.
#
#   NGPUS=2 bash tests/distributed/deepspeed_gpu_matrix.sh [OUT_ROOT]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-$(mktemp -d)}"
NGPUS="${NGPUS:-2}"
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
