#!/usr/bin/env bash
# The seed's job at the seed's size (BENCHMARKS.md, "Models larger than f32 RAM"): on
# random-weight GGUFs shaped like Qwen3-4B and Llama-3.1-8B, with their real vocabularies and
# chat templates, times the load, the first seed's query (chat template) explained with
# saliency and with AttnLRP, both in one request, and greedy generation, and prints the peak
# resident memory and how the weights were held. A shape is `NAME` (its Q8_0 file) or
# `NAME:q4_k_m` (requantized by llama.cpp's llama-quantize, the file people download). Makes
# the models first if missing (scripts/make_big_gguf.py in the reference venv; the Q8_0 files
# are 4.3 and 8.5 GB, the Q4_K_M ones 2.5 and 4.9 GB).
#   scripts/big_models.sh [qwen3-4b-shape:q4_k_m] [llama31-8b-shape:q4_k_m] [qwen3-4b-shape]
#                         [qwen3-4b-shape-bf16] [phi4-mini-shape:q4_k_m] [smollm3-3b-shape:q4_k_m]
#                         [ministral3-3b-shape:q4_k_m] [qwen3-30b-a3b-shape:q4_k_m]
#                         [qwen35-4b-shape:q4_k_m] [gemma4-e2b-shape:q4_k_m]
#                         [-- extra bench options, e.g. --precision f32]
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
shapes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do shapes+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#shapes[@]} -gt 0 ] || shapes=(qwen3-4b-shape:q4_k_m llama31-8b-shape:q4_k_m)
prompt="$(mktemp)"
trap 'rm -f "$prompt"' EXIT
echo "How much self-awareness a smaller and quantized LLM model like you can achieve?" > "$prompt"
cargo build --release --quiet
for s in "${shapes[@]}"; do
  name="${s%%:*}"
  q8="$cache/models/$name.q8_0.gguf"
  case "$name" in *-bf16) q8="$cache/models/$name" ;; esac
  model="$q8"
  [ "$s" != "$name" ] && model="$cache/models/$name.${s#*:}.gguf"
  if [ ! -e "$model" ] && [ ! -e "$q8" ]; then
    python="$(bash scripts/reference-env.sh)"
    "$python" scripts/make_big_gguf.py "$name"
  fi
  if [ ! -e "$model" ]; then
    # The Q8_0 file can go once requantized (the 30B-A3B one is 32 GB).
    bin="$(bash scripts/llama-cpp.sh)"
    "$bin/llama-quantize" --allow-requantize "$q8" "$model.part" "$(echo "${s#*:}" | tr a-z A-Z)" 2 >&2
    mv "$model.part" "$model"
  fi
  log="$(mktemp)"
  RUST_LOG=tokenlens=info /usr/bin/time -f "%M" ./target/release/tokenlens bench --model "$model" \
    --prompt-file "$prompt" --chat --methods saliency,attnlrp --repeat 1 --generate 32 "$@" \
    2> "$log" > "$log.json"
  weights=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'weights=.*' | head -1)
  kb=$(tail -1 "$log")
  python3 - "$log.json" "$s" "$kb" "$weights" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = d["generate"]
print(f"{sys.argv[2]}: {d['n_tokens']} tokens, {d['precision']}; load {d['load_s']:.1f} s; "
      f"saliency + trace {d['methods_s']['saliency']:.1f} s (the first colored result), "
      f"AttnLRP + trace {d['methods_s']['attnlrp']:.1f} s, both in one request "
      f"{d['methods_together_s']:.1f} s; generation {g['tokens_per_s']:.2f} tok/s "
      f"({g['new_tokens']} tokens, {g['precision']}; a decoding step {g['decode']['step_s'] * 1e3:.0f} ms, "
      f"{g['decode']['bytes_per_s'] / 1e9:.1f} GB/s of {g['decode']['read_bandwidth_bytes_per_s'] / 1e9:.1f}); "
      f"peak RSS {int(sys.argv[3]) / 1048576:.2f} GiB; {sys.argv[4]}")
PY
  rm -f "$log" "$log.json"
done
