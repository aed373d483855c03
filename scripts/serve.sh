#!/usr/bin/env bash
# Starts the viewer at http://127.0.0.1:3000 on the default model, setting up whatever is
# missing first (the model, the wasm toolchain, the build). Extra arguments go to the server,
# e.g. `scripts/serve.sh --model other.gguf --addr 0.0.0.0:8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh
# OpenBLAS and oneMKL: the fast f32 and bf16 matrix products (src/kernels/; without them,
# candle's kernel and f32).
bash scripts/apt-install.sh libopenblas0-pthread
bash scripts/fetch-mkl.sh
bash scripts/build-web.sh
exec target/release/tokenlens-server --model smollm2-135m --model gemma3-270m --site-root target/site "$@"
