#!/usr/bin/env bash
# Builds the viewer: the wasm front end into target/site/pkg and the server binary.
# Installs what is missing, idempotently: the wasm target, wasm-bindgen-cli at the exact
# version of the wasm-bindgen crate in Cargo.lock, and npm's binaryen (Debian's is too old).
set -euo pipefail
cd "$(dirname "$0")/.."
site=target/site

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (had: ${have:-none})"
  # Not --locked: its lockfile pins a crate that no longer builds on current Rust.
  cargo install wasm-bindgen-cli --version "$want"
fi

if [ ! -x end2end/node_modules/.bin/wasm-opt ]; then
  (cd end2end && npm ci --no-audit --no-fund)
fi

echo "== wasm front end"
cargo build -p app --lib --target wasm32-unknown-unknown --profile wasm-release --features hydrate
rm -rf "$site/pkg" && mkdir -p "$site/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$site/pkg" --out-name tokenlens \
  target/wasm32-unknown-unknown/wasm-release/app.wasm
end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals \
  "$site/pkg/tokenlens_bg.wasm" -o "$site/pkg/tokenlens.wasm"
rm "$site/pkg/tokenlens_bg.wasm"
cp style/main.css "$site/style.css"
cp -r public/. "$site/"
echo "wasm bundle: $(du -h "$site/pkg/tokenlens.wasm" | cut -f1)"

echo "== server and CLI"
# The whole workspace, so the features match `cargo test --release --workspace` and the
# test run's artifacts are reused rather than rebuilt for the server alone.
cargo build --release --workspace
