#!/usr/bin/env bash
# Installs oneMKL's runtime for the engine's bf16 matrix products (src/kernels/mkl.rs), once:
# the PyPI wheel `mkl` (Intel Simplified Software License, redistributable), of which only the
# libraries a sequential LP64 `cblas_gemm_bf16bf16f32` loads are kept, in
# $TOKENLENS_CACHE/mkl (default ~/.cache/tokenlens/mkl, about 330 MB). The engine loads it at
# run time and works without it (bf16 requests then compute in f32, with a log line).
set -euo pipefail
cache="${TOKENLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlens}"
dest="$cache/mkl"
version="2026.2.1"
wheel_sha256="76322a3abf512594ab7b4e82cb72df91e4e5d195498769aa8b292373c1ddd6d1"
libs=(libmkl_rt.so.3 libmkl_core.so.3 libmkl_sequential.so.3 libmkl_intel_lp64.so.3
      libmkl_def.so.3 libmkl_avx2.so.3 libmkl_avx512.so.3 libmkl_avx10.so.3)
if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$version" ]; then
  echo "ok: $dest (oneMKL $version)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching mkl==$version ..."
python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$tmp" "mkl==$version"
echo "$wheel_sha256  $(ls "$tmp"/mkl-*.whl)" | sha256sum -c --status || {
  echo "error: sha256 of the mkl $version wheel does not match" >&2
  exit 1
}
mkdir -p "$dest"
python3 - "$tmp" "$dest" "${libs[@]}" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest, *libs = sys.argv[1:]
whl = glob.glob(f"{tmp}/mkl-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for lib in libs:
        name = next(n for n in z.namelist() if n.endswith("/lib/" + lib))
        with z.open(name) as src, open(os.path.join(dest, lib + ".part"), "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(os.path.join(dest, lib + ".part"), os.path.join(dest, lib))
    for n in [n for n in z.namelist() if n.endswith(".dist-info/LICENSE.txt")]:
        with z.open(n) as src, open(os.path.join(dest, "LICENSE.txt"), "wb") as out:
            shutil.copyfileobj(src, out)
PY
echo "$version" > "$dest/.version"
echo "ok: $dest (oneMKL $version)"
