#!/usr/bin/env bash
# The second pinned Python environment, for the families transformers 4.52.4 lacks (SmolLM3,
# Qwen3.5, Gemma 4, Mistral 3): transformers 5.25.0 in a venv of its own that borrows torch
# (and lxt, numpy, …) from scripts/reference-env.sh's venv through a .pth file, so torch is
# not installed twice. Prints the venv's python. Only the reference scripts need it.
set -euo pipefail
cd "$(dirname "$0")/.."
base_python="$(bash scripts/reference-env.sh)"
base_site="$("$base_python" -c 'import site; print(site.getsitepackages()[0])')"
venv="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}/venv-tf5"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
site="$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
echo "$base_site" > "$site/tokenlens-base-venv.pth"
"$venv/bin/pip" install --quiet transformers==5.25.0 "tokenizers>=0.23.1,<0.24" "huggingface-hub>=2.4,<3"
echo "$venv/bin/python"
