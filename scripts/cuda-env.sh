#!/usr/bin/env bash
# Assembles a CUDA toolkit from NVIDIA's PyPI wheels (no NVIDIA apt repository or GPU
# needed) and prints the environment that builds TokenLens' `cuda` feature with it:
#   eval "$(scripts/cuda-env.sh)"
# Idempotent; everything lives in the TokenLens cache (about 3 GB).
set -euo pipefail
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}/cuda"
venv="$cache/venv"
home="$cache/home"
# Versions that compile candle 0.11.1 (CUDA 13.0).
wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14
        nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88)
if [ ! -f "$home/.complete" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "${wheels[@]}" >&2
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf "$home" && mkdir -p "$home/bin" "$home/include" "$home/lib64"
  # The wheels install under nvidia/cu13/ (or nvidia/<component>/): merge them.
  for d in "$site"/nvidia/*/; do
    [ -d "$d/bin" ] && cp -rs "$d/bin/." "$home/bin/"
    [ -d "$d/include" ] && cp -rsn "$d/include/." "$home/include/" 2>/dev/null || true
    [ -d "$d/lib" ] && cp -rs "$d/lib/." "$home/lib64/"
    [ -d "$d/nvvm" ] && cp -rs "$d/nvvm" "$home/"
  done
  # Unversioned names for the linker.
  for lib in cudart cublas cublasLt curand nvrtc; do
    so=$(ls "$home/lib64/lib$lib.so."* 2>/dev/null | sort | head -1 || true)
    [ -n "$so" ] && ln -sf "$(basename "$so")" "$home/lib64/lib$lib.so"
  done
  chmod +x "$home"/bin/* 2>/dev/null || true
  touch "$home/.complete"
fi
# A stub driver library to link against (the GPU machine's driver provides the real
# libcuda.so.1): every driver function cudarc declares, as an empty symbol.
if [ ! -e "$home/lib64/stubs/libcuda.so" ]; then
  decls=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys/mod.rs \
          2>/dev/null | sort -V | tail -1)
  [ -n "$decls" ] || { echo "cudarc's sources are missing: run \`cargo fetch\` first" >&2; exit 1; }
  stub="$home/lib64/stubs" && mkdir -p "$stub"
  grep -oE '\bcu[A-Z][A-Za-z0-9_]*\b' "$decls" | sort -u | sed 's/.*/void &(void) {}/' > "$stub/cuda_stub.c"
  cc -shared -fPIC -o "$stub/libcuda.so" "$stub/cuda_stub.c" -Wl,-soname,libcuda.so.1
  ln -sf stubs/libcuda.so "$home/lib64/libcuda.so"
fi
cat <<ENV
export CUDA_HOME="$home" CUDA_PATH="$home" CUDA_ROOT="$home"
export PATH="$home/bin:\$PATH"
export LD_LIBRARY_PATH="$home/lib64:\${LD_LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
