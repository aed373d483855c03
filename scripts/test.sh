#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what is missing (idempotent): the default
# model, a font for the figures, Chromium, PostgreSQL, the wasm toolchain and node packages;
# then fmt, clippy, the cargo tests, the viewer's build and its browser tests (Playwright +
# Chromium). A throwaway PostgreSQL runs on loopback for the permalink tests.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

echo "== set-up"
bash scripts/fetch-models.sh
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install fonts-dejavu-core
[ -x /usr/bin/chromium ] || apt_install chromium
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
[ -d end2end/node_modules/@playwright/test ] || (cd end2end && npm ci --no-audit --no-fund)
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt

echo "== PostgreSQL (loopback, for the permalink tests)"
TOKENLENS_TEST_POSTGRES=$(bash scripts/postgres.sh start)
export TOKENLENS_TEST_POSTGRES
trap 'bash scripts/postgres.sh stop' EXIT

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo clippy -p app --lib --target wasm32-unknown-unknown --features hydrate -- -D warnings

echo "== cargo tests"
cargo test --release --workspace

echo "== viewer build"
bash scripts/build-web.sh

echo "== browser tests"
(cd end2end && npx playwright test)
echo "== all tests passed"
