#!/usr/bin/env bash
# Downloads into .whl/ the wheels the GPU image lacks, for the device tool's `carry`.
#
# The benchmark path (inception_jax.benchmark -> models, train.step/state/optimizer/sharding,
# bench/*) imports only jax, flax, optax, numpy, pillow, absl-py (and torch, timm for --timm),
# all in the GPU image (jax 0.11.2, flax 0.12.10, optax 0.2.8, torch 2.11, timm 1.0.29), so by
# default NOTHING is needed and .whl/ stays empty. Name extra packages to carry as arguments,
# e.g. for the config-driven training CLI:
#   bash experiments/gpu_wheels.sh ml-collections==1.1.0
# The pip line is the device README's (Python 3.12, manylinux x86-64, no dependencies: name each).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
if [ $# -eq 0 ]; then
  echo "gpu_wheels: the benchmark needs no wheels beyond the GPU image; .whl/ left as is"
  exit 0
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
