#!/usr/bin/env bash
# The death protocol (issue 11) on one lent H100/H200, inside 9 minutes including compile.
#
# Device call, from the repo root here (the wheels the GPU image lacks: ml-collections, grain and
# its two missing dependencies, tensorboardX; TFDS is not needed, shapes10 is served from memory):
#   bash experiments/gpu_wheels.sh ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 \
#     portpicker==1.6.0 tensorboardX==2.6.5
#   run(command="bash experiments/gpu_death_study.sh", timeout_s=570, carry=[".whl"])
#
# What it does: prints the plan (every run of the sweep in priority order: steps, train FLOPs,
# CPU and GPU seconds per step, compile and run seconds estimated; experiments/gpu_death_study.py
# says how), then trains the runs in that order while the budget lasts (a run that no longer fits
# is skipped, a run in progress stops at the deadline), then writes the CPU study's report.
# $OUT receives (at most 8 files):
#   log.txt        everything printed, the plan first
#   README.md      plan, measured seconds per run, skipped runs
#   results.md     death map and per-run tables (experiments/report.py, kind `death`)
#   death_map.csv  one row per cell (width x learning rate x scale x delay)
#   results.csv    one row per run
#   pre_pool_zero_frac.png, block_dead_frac.png
#   results.tgz    all of the above, train_loss.png, runner.json and runs/ (light copies)
# Budget: BUDGET_S (default 510 s) from the script's start; the runner gets what is left minus
# REPORT_S (default 40 s) for the report and packing.
# Knobs: SWEEP (death_map_gpu), SCALE (small), DATA (auto|memory|tfds), MAX_RUNS (0 = all),
#   WORKERS (4: processes sharing the GPU; runs of one program stay on one worker),
#   RUNTIME_KEYS (overrides that are runtime inputs of one compiled program; default
#   model.residual_scale, an argument of the train step), PYTHON, OUT, WORK.
# Dry run on a CPU (what tests/test_gpu_death_study.py runs):
#   OUT=/tmp/gpudeath_out JAX_PLATFORMS=cpu SCALE=tiny MAX_RUNS=2 WORKERS=2 BUDGET_S=1500 \
#     PYTHON=/work/main/.venv/bin/python bash experiments/gpu_death_study.sh
{  # braces: bash parses the whole script before running it (safe to edit while it runs)
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET_S=${BUDGET_S:-510}
REPORT_S=${REPORT_S:-40}
OUT=${OUT:-$PWD/gpu_out}
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/gpudeath}
SWEEP=${SWEEP:-death_map_gpu}
SCALE=${SCALE:-small}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"  # a warm machine may hold an earlier run
exec > >(tee -a "$OUT/log.txt") 2>&1

echo "== env $(date -Is)"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; nproc; } | head -20

ARGS=(--sweep="$SWEEP" --scale="$SCALE" --root="$WORK/runs" --results="$WORK/results"
      --workers="${WORKERS:-4}" --data="${DATA:-auto}" --max_runs="${MAX_RUNS:-0}"
      --runtime_keys="${RUNTIME_KEYS-model.residual_scale}")
LEFT=$(( BUDGET_S - ($(date +%s) - START) - REPORT_S ))
echo "== plan ($LEFT s for the runs)"
"$PY" -m experiments.gpu_death_study plan "${ARGS[@]}" --budget_s="$LEFT" \
  --plan_json="$WORK/plan.json" || { echo "== plan failed"; exit 2; }
LEFT=$(( BUDGET_S - ($(date +%s) - START) - REPORT_S ))
echo "== run ($LEFT s left for the runs) $(date +%T)"
# The runner stops itself at its deadline; `timeout` is the backstop (report time included).
timeout -k 10 $(( LEFT + REPORT_S )) "$PY" -m experiments.gpu_death_study run "${ARGS[@]}" \
  --budget_s="$LEFT"
echo "== run: rc=$? at $(( $(date +%s) - START )) s"

cp "$WORK/plan.json" "$WORK/results/" 2>/dev/null
for f in README.md results.md death_map.csv results.csv pre_pool_zero_frac.png block_dead_frac.png; do
  [ -f "$WORK/results/$f" ] && cp "$WORK/results/$f" "$OUT/"
done
tar -czf "$OUT/results.tgz" -C "$WORK" results 2>/dev/null
echo "== done in $(( $(date +%s) - START )) s; results in $OUT"
ls -la "$OUT"
exit 0
}
