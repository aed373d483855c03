#!/usr/bin/env bash
# The GPU check, in two halves (the GPU machine has no Rust and no network, and takes at most
# 64 MiB from here, the repository included):
#
#   bash scripts/gpu-check.sh prepare       # here: CUDA build (scripts/build-cuda.sh), stripped
#                                           # and packed into target/gpu-check/tokenlens.xz
#   bash scripts/gpu-check.sh run [OUT]     # there, from the repository root, with
#                                           # target/gpu-check carried; under 8 minutes
#
# With the device tool: run(command="bash scripts/gpu-check.sh run $OUT",
# carry=["target/gpu-check"], timeout_s=540). `run` points LD_LIBRARY_PATH at the CUDA
# libraries of the machine's own PyTorch (site-packages/nvidia/*/lib), makes the models there
# and runs scripts/gpu_check.py: CPU-against-GPU agreement on every fixture-shaped model
# (f32 and bf16), saliency against PyTorch on the GPU, and a timing table with TFLOP/s.
# `run OUT --device cpu --small` is a dry run of the same steps on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    bash scripts/build-cuda.sh
    mkdir -p target/gpu-check
    # Stripped, the binary is about 57 MiB, mostly candle's PTX kernels (text): xz takes it
    # to about 8 MiB, which with the repository fits the 64 MiB that may be carried.
    strip -o target/gpu-check/tokenlens target/cuda/release/tokenlens
    xz -9 -T0 -f target/gpu-check/tokenlens
    size=$(du -m target/gpu-check/tokenlens.xz | cut -f1)
    repo=$(git ls-files -z | du -cm --files0-from=- | tail -1 | cut -f1)
    echo "target/gpu-check/tokenlens.xz: ${size} MiB; with the repository ${repo} MiB: $((size + repo)) of 64 MiB" >&2
    [ $((size + repo)) -le 64 ] || { echo "too large to carry" >&2; exit 1; }
    ;;
  run)
    out=${2:-gpu-check-out}
    shift $(( $# >= 2 ? 2 : 1 ))
    py=${PYTHON:-python3}
    bin=${TOKENLENS_BIN:-}
    if [ -z "$bin" ]; then
      packed=target/gpu-check/tokenlens.xz
      [ -f "$packed" ] || { echo "no $packed: run 'bash scripts/gpu-check.sh prepare' here and carry target/gpu-check" >&2; exit 2; }
      bin=/tmp/tokenlens-gpu-check/tokenlens
      mkdir -p "$(dirname "$bin")"
      "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$packed" "$bin"
      chmod +x "$bin"
    fi
    # The CUDA runtime, cuBLAS and cuRAND the binary links: those PyTorch ships (the driver,
    # libcuda.so.1, is the machine's).
    libs=$("$py" - <<'PY'
import glob, os, site
dirs = set()
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in glob.glob(os.path.join(base, "nvidia", "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
PY
)
    export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    "$bin" --version
    timeout 470 "$py" scripts/gpu_check.py --bin "$bin" --out "$out" "$@"
    ;;
  *) sed -n 2,16p "$0" >&2; exit 2 ;;
esac
