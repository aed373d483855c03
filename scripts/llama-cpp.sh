#!/usr/bin/env bash
# Builds llama.cpp's llama-bench and llama-quantize, the yardstick of the generation benchmark
# (scripts/bench.py) and the tool that makes Q4_K_M files (scripts/big_models.sh), from the
# llama.cpp tree vendored in PyPI's llama-cpp-python sdist, with PyPI's cmake and ninja, into
# $TOKENLENS_CACHE/llama.cpp (idempotent; about 6 minutes on 2 cores). Prints the bin directory.
# The CPU's instruction sets are named explicitly (GGML_NATIVE=ON builds here, but the binary
# then dies with "Illegal instruction" on these virtual machines): AVX2 and FMA always,
# AVX-512 with VNNI and BF16 where /proc/cpuinfo lists them (Sapphire Rapids; not AMD Zen 3).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
version="0.3.36"
has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
isa="-DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16)"
stamp="$version $isa"
dest="$cache/llama.cpp"
bin="$dest/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-quantize" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$stamp" ]; then
  echo "$bin"
  exit 0
fi
python="$(bash scripts/reference-env.sh)"
venv="$(dirname "$python")"
"$venv/pip" install --quiet cmake ninja
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$venv/pip" download --quiet --no-deps --no-binary llama-cpp-python --dest "$tmp" \
  "llama-cpp-python==$version" >&2
rm -rf "$dest" && mkdir -p "$dest"
tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
cp -r "$tmp"/llama_cpp_python-*/vendor/llama.cpp/. "$dest/"
(
  cd "$dest"
  PATH="$venv:$PATH" cmake -B build -G Ninja -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
    -DGGML_FMA=ON -DGGML_F16C=ON $isa \
    -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >&2
  PATH="$venv:$PATH" cmake --build build --target llama-bench llama-quantize -j"$(nproc)" >&2
)
echo "$stamp" > "$dest/.version"
echo "$bin"
