#!/usr/bin/env bash
# Makes the pinned Python environment for scripts/reference.py (about 6 GB; only needed to
# regenerate tests/fixtures/reference, never by the tests themselves).
set -euo pipefail
venv="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.6.0 transformers==4.52.4 lxt==2.1 gguf==0.19.0 numpy sentencepiece==0.2.0 protobuf==7.36.2
# Captum for the integrated-gradients reference (its own pins ask for numpy<2; it runs with
# the numpy above, so its requirements are installed by hand).
"$venv/bin/pip" install --quiet --no-deps captum==0.8.0
"$venv/bin/pip" install --quiet tqdm matplotlib packaging
echo "$venv/bin/python"
