#!/usr/bin/env bash
# The open issues' GPU checks as one script, for a session that is lent a GPU machine (see
# benchmarks/RESULTS.md, "GPU"): the CUDA-only tests, `make bench`'s groups on CUDA, and a short
# lottery run with instability copies trained as replicas. Each step has its own timeout, 7.5
# minutes in all at most, so one call of the device tool (10 minutes, the machine's start apart)
# ends with whatever finished, and the session's 15 minutes leave room to run it again.
#
#   here:  bash benchmarks/gpu_check.sh --prepare   # MNIST (gzipped) and the one wheel the GPU
#                                                   # image lacks, under .gpu/ (git-ignored)
#   there: the device tool's run, carry [".gpu"], command `bash benchmarks/gpu_check.sh`
#
# Everything it measures lands in $OUT (at most 8 files come back): copy the figures into
# benchmarks/RESULTS.md. DEVICE=cpu runs the same steps on a CPU, to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
HERE=.gpu
DEVICE=${DEVICE:-cuda}

if [[ ${1:-} == --prepare ]]; then
    set -e
    grep -qx "/$HERE/" .git/info/exclude 2>/dev/null || echo "/$HERE/" >> .git/info/exclude
    mkdir -p "$HERE/data/MNIST/raw" "$HERE/wheels"
    # `lth data fetch mnist` first; its four files sit in MNIST/ or MNIST/raw/.
    find "${LTH_DATA_DIR:-$HOME/.cache/lth/data}/MNIST" -name "*-ubyte" | while read -r f; do
        gzip -c "$f" > "$HERE/data/MNIST/raw/$(basename "$f").gz"
    done
    # The GPU image has torch, numpy, safetensors, tqdm, pandas and matplotlib, not tomli-w.
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$HERE/wheels" "tomli-w>=1.0"
    du -sh "$HERE"
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [[ -d $HERE/wheels ]] && ! $PY -c "import tomli_w" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/site "$HERE"/wheels/*.whl
fi
export PYTHONPATH="$PWD/src:$PWD/benchmarks:/tmp/site" LTH_DATA_DIR="$PWD/$HERE/data" PYTHONUNBUFFERED=1
step() { echo "=== $* ($(date +%T))" | tee -a "$OUT/log.txt"; }
# limited SECONDS COMMAND...: run it under a timeout, its output into the log, and say if cut off.
limited() {
    timeout "$@" >> "$OUT/log.txt" 2>&1
    local rc=$?
    (( rc == 124 )) && echo "--- cut off after $1 s" | tee -a "$OUT/log.txt"
    return $rc
}

step environment
{ nvidia-smi 2>&1 | head -15; $PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())"; git log -1 --format='commit %H'; } >> "$OUT/log.txt" 2>&1

step "CUDA-only tests (the captured step replays the eager numbers; no step makes the host wait)"
limited 90 $PY -m pytest -q -p no:cacheprovider -rs tests -k cuda

# A group at a time, each into its own file: a group cut off by its timeout loses only itself.
for group in lenet engines replicas; do
    step "benchmark group $group on $DEVICE (--quick)"
    limited 90 $PY benchmarks/run.py --quick --device "$DEVICE" --only "$group" --out "$OUT/bench-$group.json"
done

step "a short lottery run on $DEVICE, then instability at level 2 (copies as replicas)"
RUNS=/tmp/gpu-check-runs
rm -rf "$RUNS"
start=$(date +%s)
limited 90 $PY -m lth run lenet-mnist-quick --device "$DEVICE" --quiet --out "$RUNS" \
    --set lottery.levels=2 --set "training.steps='500it'" --set "lottery.instability=[2]"
echo "lottery run: $(( $(date +%s) - start )) s" >> "$OUT/log.txt"
$PY - "$RUNS" >> "$OUT/log.txt" 2>&1 <<'EOF'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).rglob("instability.json")):
    r = json.loads(path.read_text())
    print(f"{r['variant']:>6} level {r['level']}: instability {r['instability']:.4f}, copies trained in groups of {r['replicas']}")
for path in sorted(Path(sys.argv[1]).rglob("level_02/result.json"))[:1]:
    print("engine:", json.loads(path.read_text())["engine"])
EOF
step done
