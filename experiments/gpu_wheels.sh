#!/usr/bin/env bash
# Downloads into .whl/ the wheels the GPU image lacks, for the device tool's `carry`.
#
# The step benchmark (python -m inception_jax.bench step -> models, train.setup/step/state/optimizer,
# bench/*) builds its config from train/config_base.get_base_config(), so it needs ml-collections,
# and, as long as that reads the data defaults from data/pipeline.py, grain and
# tensorflow-datasets too (not yet tried on the GPU image: name them below). The image has jax
# 0.11.2, flax 0.12.10, optax 0.2.8, torch 2.11, timm 1.0.29. The input-pipeline phase of
# gpu_benchmark.sh ('data': the 16-core host) needs grain; with no arguments this fetches grain
# and the two of its dependencies the image lacks (etils, cloudpickle, protobuf, psutil are
# there), ~4.3 MB:
#   bash experiments/gpu_wheels.sh
# Or name what to carry, e.g. for the config-driven training CLI:
#   bash experiments/gpu_wheels.sh ml-collections==1.1.0
# The pip line is the device README's (Python 3.12, manylinux x86-64, no dependencies: name each).
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude) && { grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"; }
mkdir -p .whl
if [ $# -eq 0 ]; then
  set -- grain==0.2.18 array-record==0.8.6 portpicker==1.6.0
fi
PIP=${PIP:-python3 -m pip}
$PIP download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "$@"
for w in .whl/*.whl; do
  echo "$w"
  unzip -p "$w" '*/METADATA' | grep '^Requires-Dist' | grep -v extra || true
done
du -sh .whl
