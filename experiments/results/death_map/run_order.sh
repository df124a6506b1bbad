#!/usr/bin/env bash
# Death map (issue 11), session 3 (frozen code in /work/study-code): runs in priority order, each to 1,000 steps or death.
# Resumable: rerun this script; finished runs are skipped.
cd /work/study-code; export PYTHONPATH=/work/study-code
while kill -0 1207 2>/dev/null; do sleep 10; done
export JAX_COMPILATION_CACHE_DIR=/work/study/jit_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
P=inception_resnet_v2_paper
for r in \
  width0.5-residual_scale0.1-learning_rate0.045-gradient_delay0-seed0 \
  width0.5-residual_scale0.3-learning_rate0.045-gradient_delay0-seed0 \
  width0.5-residual_scale0.2-learning_rate0.045-gradient_delay0-seed0 \
  width0.5-residual_scale1.0-learning_rate0.045-gradient_delay0-seed1 \
  width0.5-residual_scale1.0-learning_rate0.045-gradient_delay0-seed2 \
  width0.375-residual_scale1.0-learning_rate0.045-gradient_delay0-seed1 \
  width0.375-residual_scale1.0-learning_rate0.045-gradient_delay0-seed2 \
  width0.5-residual_scale1.0-learning_rate0.18-gradient_delay0-seed1 \
  width0.5-residual_scale1.0-learning_rate0.18-gradient_delay0-seed2 \
  width0.375-residual_scale0.1-learning_rate0.045-gradient_delay0-seed0 \
  width0.375-residual_scale0.3-learning_rate0.045-gradient_delay0-seed0 \
  width0.375-residual_scale0.2-learning_rate0.045-gradient_delay0-seed0 \
  width0.5-residual_scale1.0-learning_rate0.01125-gradient_delay0-seed0 \
  width0.375-residual_scale1.0-learning_rate0.045-gradient_delay4-seed0 \
  width0.375-residual_scale0.1-learning_rate0.045-gradient_delay4-seed0 \
  width0.5-residual_scale0.1-learning_rate0.045-gradient_delay0-seed1 \
  width0.5-residual_scale0.1-learning_rate0.045-gradient_delay0-seed2 \
  width0.5-residual_scale0.1-learning_rate0.01125-gradient_delay0-seed0 ; do
  [ -f /work/study/STOP ] && exit 0
  echo "== $(date -u +%H:%M:%S) $r"
  /work/main/.venv/bin/python -m experiments.sweep --sweep=death_map --root=/work/study/death_map --scale=small \
    --results=/work/study/death_map_results --only=$P-$r || true
done
echo "== $(date -u +%H:%M:%S) all done"
