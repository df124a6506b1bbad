#!/usr/bin/env bash
# Every GPU measurement of issue 6 in one go, for one lent H100/H200 (see BENCHMARKS.md).
#
# Device call, from the repo root here (gpu_wheels.sh first: grain for the 'data' phase only):
#   bash experiments/gpu_wheels.sh
#   run(command="bash experiments/gpu_benchmark.sh", timeout_s=540, carry=[".whl"])
#
# Phases run in priority order inside a wall-clock budget (BUDGET_S, default 450 s = 7.5 min);
# a phase is skipped when less than its minimum is left, and each runs under `timeout`, so a slow
# phase cannot eat the rest. After every phase, $OUT holds the results so far:
#   log.txt       everything printed
#   summary.md    the Markdown tables of all phases
#   results.tgz   per-phase JSON + Markdown, nvidia-smi, pip versions
# Phases (PHASES selects, comma list):
#   main      JAX: IR-v2 release, v4 release, v3 release, IR-v2 paper; + timm eager for the three
#             released, same process, same card: train + eval, compile, memory, MFU
#   compile   timm + torch.compile for IR-v2 release (+ the JAX IR-v2 train step beside it)
#   blocks2   compile time of the IR-v2 train step with blocks 20/40/20 (x2), scan (x1 is in main)
#   remat     IR-v2 release train step with --remat (vs main's remat off)
#   xla       IR-v2 release train step under XLA flag variants (XLA_VARIANTS, ';'-separated)
#   maxbatch  largest IR-v2 release train batch that fits (doubling, then bisecting)
#   unrolled  compile time of the IR-v2 train step with unrolled blocks (vs main's scan)
#   data      input pipeline on the 16-core host (needs the grain wheels: gpu_wheels.sh)
# Dry run on a CPU with tiny sizes (what BENCHMARKS.md records):
#   OUT=/tmp/gpu_dry PYTHON=.venv/bin/python JAX_PLATFORMS=cpu BENCH_BATCH=4 BENCH_SIZE=75 \
#   BENCH_WIDTH=0.125 BENCH_BLOCKS=1 BENCH_BLOCKS_X2=2 BENCH_DTYPE=float32 \
#   BENCH_MODELS=inception_resnet_v2_paper BENCH_ONE=inception_resnet_v2_paper \
#   BENCH_MAXBATCH_LIMIT=16 BENCH_TIMING="--warmup=1 --repeats=2 --steps=1" BUDGET_S=3000 \
#   CAP_SCALE=10 XLA_FLAGS=--xla_backend_optimization_level=0 bash experiments/gpu_benchmark.sh
{  # braces: bash parses the whole script before running it (safe to edit while it runs)
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET_S=${BUDGET_S:-450}
OUT=${OUT:-$PWD/gpu_out}
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/gpubench}
PHASES=${PHASES:-main,compile,blocks2,remat,xla,maxbatch,unrolled,data}
MODELS=${BENCH_MODELS:-inception_resnet_v2_release,inception_v4_release,inception_v3_release,inception_resnet_v2_paper}
ONE=${BENCH_ONE:-inception_resnet_v2_release}
BATCH=${BENCH_BATCH:-256}
SIZE=${BENCH_SIZE:-299}
DTYPE=${BENCH_DTYPE:-bfloat16}
BLOCKS_X2=${BENCH_BLOCKS_X2:-20,40,20}
XLA_VARIANTS=${XLA_VARIANTS:---xla_gpu_autotune_level=0;--xla_gpu_enable_latency_hiding_scheduler=true}
TIMING=${BENCH_TIMING:---warmup=2 --repeats=5 --steps=10}
COMMON="--batch=$BATCH --image_size=$SIZE --dtype=$DTYPE $TIMING"
[ -n "${BENCH_WIDTH:-}" ] && COMMON="$COMMON --width=$BENCH_WIDTH"
[ -n "${BENCH_BLOCKS:-}" ] && COMMON="$COMMON --blocks=$BENCH_BLOCKS"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"  # a warm machine may hold an earlier run
exec > >(tee -a "$OUT/log.txt") 2>&1

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

pack() {  # summary.md and results.tgz from what the phases wrote so far
  cat "$WORK"/*.md > "$OUT/summary.md" 2>/dev/null
  tar -czf "$OUT/results.tgz" -C "$WORK" . 2>/dev/null
}

phase() {  # phase NAME MIN_S CAP_S COMMAND...: run if selected and MIN_S are left
  local name=$1 min=$(( $2 * ${CAP_SCALE:-1} )) cap=$(( $3 * ${CAP_SCALE:-1} )); shift 3
  case ",$PHASES," in *",$name,"*) ;; *) return 0 ;; esac
  local t; t=$(left)
  if (( t < min )); then echo "== $name: skipped, ${t}s left < ${min}s"; return 0; fi
  (( cap > t )) && cap=$t
  echo "== $name (cap ${cap}s, ${t}s left) $(date +%T)"
  local s; s=$(date +%s)
  timeout -k 10 "$cap" "$@"
  local rc=$?
  touch "$WORK/.ran_$name"
  echo "== $name: rc=$rc in $(( $(date +%s) - s ))s"
  pack
}

BENCH=("$PY" -m inception_jax.bench step)  # an array, not a function: `timeout` runs it

echo "== env $(date -Is)"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; nproc; uptime; } | tee "$WORK/nvidia_smi.txt"
"$PY" -c "import sys, jax, flax, optax; print(sys.version); print('jax', jax.__version__, \
'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee "$WORK/versions.txt"
"$PY" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, \
torch.cuda.is_available())" 2>&1 | tee -a "$WORK/versions.txt"

phase main 120 330 "${BENCH[@]}" --models="$MODELS" $COMMON --timm --timm_compile= \
  --label="main: JAX vs timm eager" --json="$WORK/1_main.json" --markdown="$WORK/1_main.md"
# If torch and JAX could not share the process, measure JAX alone (timm then comes from 'compile').
jax_rows() {  # whether JSON file $1 holds a measured JAX train step
  "$PY" -c "import json, sys; rows = json.load(open(sys.argv[1]))['rows']
sys.exit(not any(r['impl'] == 'jax' and 'train' in r for r in rows))" "$1" 2>/dev/null
}
if [ -e "$WORK/.ran_main" ] && ! jax_rows "$WORK/1_main.json"; then
  phase main 90 300 "${BENCH[@]}" --models="$MODELS" $COMMON --label="main: JAX only (fallback)" \
    --json="$WORK/1_main_jax.json" --markdown="$WORK/1_main_jax.md"
fi
phase compile 150 270 "${BENCH[@]}" --models="$ONE" $COMMON --timm --notimm_eager --timm_compile=all \
  --noeval --nocount_flops --label="timm + torch.compile beside JAX" \
  --json="$WORK/2_compile.json" --markdown="$WORK/2_compile.md"
phase blocks2 40 120 "${BENCH[@]}" --models="$ONE" $COMMON --blocks="$BLOCKS_X2" --noeval \
  --compile_only --nocount_flops --label="blocks x2 (compile only)" \
  --json="$WORK/3_blocks2.json" --markdown="$WORK/3_blocks2.md"
phase remat 40 120 "${BENCH[@]}" --models="$ONE" $COMMON --remat --noeval --nocount_flops \
  --label="remat on" --json="$WORK/4_remat.json" --markdown="$WORK/4_remat.md"
i=0
IFS=';' read -ra VARIANTS <<< "$XLA_VARIANTS"
for flags in "${VARIANTS[@]}"; do
  i=$((i + 1))
  phase xla 40 120 env XLA_FLAGS="${XLA_FLAGS:-} $flags" "${BENCH[@]}" \
    --models="$ONE" $COMMON --noeval --nocount_flops --label="XLA_FLAGS=$flags" \
    --json="$WORK/5_xla_$i.json" --markdown="$WORK/5_xla_$i.md"
done
phase maxbatch 90 200 env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 "${BENCH[@]}" \
  --models="$ONE" $COMMON --noeval --nocount_flops --find_max_batch --repeats=1 --steps=2 \
  --max_batch_limit="${BENCH_MAXBATCH_LIMIT:-4096}" \
  --label="largest batch" --json="$WORK/6_maxbatch.json" --markdown="$WORK/6_maxbatch.md"
phase unrolled 60 150 "${BENCH[@]}" --models="$ONE" $COMMON --noscan_blocks --noeval --compile_only \
  --nocount_flops --label="unrolled blocks (compile only)" \
  --json="$WORK/7_unrolled.json" --markdown="$WORK/7_unrolled.md"
phase data 45 120 "$PY" -m inception_jax.bench input --num_images "${DATA_IMAGES:-2048}" \
  --num_source_images 128 --batch_size 64 --workers "${DATA_WORKERS:-0,8,15}" --draft on \
  --json "$WORK/8_data.json"
pack
echo "== done in $(( $(date +%s) - START ))s; results in $OUT"
exit 0
}
