#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what is missing (idempotent):
# the default model, a font for the figures, then fmt, clippy and the cargo tests.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

echo "== set-up"
bash scripts/fetch-models.sh
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install fonts-dejavu-core
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings

echo "== cargo tests"
cargo test --release
echo "== all tests passed"
