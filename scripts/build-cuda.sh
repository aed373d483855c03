#!/usr/bin/env bash
# Builds the CLI and the server with the `cuda` feature into target/cuda/release, with a
# CUDA toolkit assembled from PyPI wheels (scripts/cuda-env.sh). No GPU is needed to build.
# CUDA_COMPUTE_CAP picks the GPU generation (default 90: H100/H200).
# Cold: about 25 min on 2 cores (candle's kernels dominate); target/cuda is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fetch --quiet   # cudarc's sources name the driver symbols the stub needs
eval "$(bash scripts/cuda-env.sh)"
cargo build --release --target-dir target/cuda --features cuda --bin tokenlens
cargo build --release --target-dir target/cuda -p server --features cuda
echo "built: target/cuda/release/tokenlens, target/cuda/release/tokenlens-server"
echo "run-time libraries to ship beside them (from $CUDA_HOME/lib64):"
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
  echo "  $lib"
done
