#!/usr/bin/env bash
# Models larger than f32 RAM (BENCHMARKS.md): explains a 48-token prompt with saliency and
# AttnLRP on random-weight Q8_0 GGUFs shaped like Qwen3-4B and Llama-3.1-8B (and, on request,
# the Qwen3 shape as a bf16 Hugging Face directory), and prints the wall time, the peak
# resident memory and how the weights were held. Makes the models first if missing
# (scripts/make_big_gguf.py in the reference venv; 4.3 GB, 8.5 GB and 8.1 GB of disk).
#   scripts/big_models.sh [qwen3-4b-shape] [llama31-8b-shape] [qwen3-4b-shape-bf16]
#                         [-- extra explain options]
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
shapes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do shapes+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#shapes[@]} -gt 0 ] || shapes=(qwen3-4b-shape llama31-8b-shape)
prompt="The history of the printing press begins in the fifteenth century, when Johannes \
Gutenberg combined movable metal type, oil-based inks and a wooden screw press into a system \
that could reproduce texts faster than any scribe. Within a few decades,"
cargo build --release --quiet
for s in "${shapes[@]}"; do
  model="$cache/models/$s.q8_0.gguf"
  case "$s" in *-bf16) model="$cache/models/$s" ;; esac
  if [ ! -e "$model" ]; then
    python="$(bash scripts/reference-env.sh)"
    "$python" scripts/make_big_gguf.py "$s"
  fi
  log="$(mktemp)"
  RUST_LOG=tokenlens=info /usr/bin/time -f "%e %M" ./target/release/tokenlens explain \
    --model "$model" --raw --prompt "$prompt" --methods saliency,attnlrp --json "$@" \
    2> "$log" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["tokens"]), "tokens")'
  weights=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'weights=.*' | head -1)
  read -r secs kb < <(tail -1 "$log")
  printf '%s: %s s, peak RSS %.2f GiB; %s\n' "$s" "$secs" "$(awk -v kb="$kb" 'BEGIN { print kb / 1048576 }')" "$weights"
  rm -f "$log"
done
