#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what is missing (idempotent): the default
# model, a font for the figures, Chromium, PostgreSQL, the wasm toolchain and node packages;
# then fmt, clippy, the cargo tests, the viewer's build and its browser tests (Playwright +
# Chromium). A throwaway PostgreSQL runs on loopback for the permalink tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Section headers carry the minutes since the start, so a slow CI step shows where it is.
step() { printf '== %s (at %dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }

step "set-up"
bash scripts/fetch-models.sh
# OpenBLAS and oneMKL: the fast f32 and bf16 matrix products (src/kernels/; without them,
# candle's kernel and f32).
bash scripts/apt-install.sh fonts-dejavu-core fonts-wqy-microhei fonts-noto-color-emoji chromium libopenblas0-pthread prometheus nginx-light
bash scripts/fetch-mkl.sh
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
[ -d end2end/node_modules/@playwright/test ] || (cd end2end && npm ci --no-audit --no-fund)
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt

step "PostgreSQL (loopback, for the permalink tests)"
TOKENLENS_TEST_POSTGRES=$(bash scripts/postgres.sh start)
export TOKENLENS_TEST_POSTGRES
trap 'bash scripts/postgres.sh stop' EXIT

step "fmt and clippy"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# The wasm bundle's profile: its proc macros and build scripts are then built once, for the
# lint and the bundle both (the dev profile builds them at opt-level 3 again: 9 min cold).
cargo clippy -p app --lib --target wasm32-unknown-unknown --features hydrate --profile wasm-release -- -D warnings

step "cargo tests"
cargo test --release --workspace

step "viewer build"
bash scripts/build-web.sh

step "load test (short form: 20 clients at once on loopback)"
python3 scripts/load_test.py --clients 20 --timeout 120 -- --demo --model smollm2-135m

step "operator checks (probes, request ids, JSON logs, metrics scraped by Prometheus)"
python3 scripts/ops_test.py

step "two replicas behind nginx on one PostgreSQL, one killed mid-load"
python3 scripts/replicas_test.py

step "browser tests"
(cd end2end && npx playwright test)
step "all tests passed"
