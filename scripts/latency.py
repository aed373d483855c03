#!/usr/bin/env python3
"""Measures the viewer's streaming latency from a client: time from sending the request to
the first stage (the `tokens` event) and to the first colored result (the first `method`
event), for a chat prompt, against a running server.

    scripts/latency.py [--url http://127.0.0.1:3000] [--model smollm2-135m] [--runs 5]

Standard library only. Prints the median of --runs after one warm-up.
"""
import argparse
import json
import statistics
import time
import urllib.request


def once(url, prompt, model):
    body = json.dumps({
        "model": model,
        "request": {"prompt": prompt, "chat_template": True,
                    "methods": ["saliency", "input_x_gradient", "attnlrp", "cp_lrp"]},
    }).encode()
    req = urllib.request.Request(url + "/api/explain", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    marks = {}
    n_tokens = None
    with urllib.request.urlopen(req) as resp:
        for line in resp:
            ev = json.loads(line)
            now = time.perf_counter() - t0
            kind = ev["type"]
            if kind == "tokens":
                n_tokens = len(ev["tokens"])
            if kind == "method":
                kind = "method:" + ev["method"]
            marks.setdefault(kind, now)
            if ev["type"] in ("done", "error"):
                break
    return n_tokens, marks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    # 64 tokens with SmolLM2's chat template: 31 template tokens + this question.
    prompt = ("Which river flows through Paris, and which sea does it finally reach after "
              "passing Rouen and Le Havre on its long way north-west through green Normandy, "
              "please?")
    once(args.url, prompt, args.model)
    runs = [once(args.url, prompt, args.model) for _ in range(args.runs)]
    n = runs[0][0]
    keys = ["tokens", "prediction", "method:saliency", "method:attnlrp", "method:cp_lrp", "done"]
    print(f"prompt tokens: {n}; median of {args.runs} runs (ms from request):")
    for k in keys:
        vals = [r[1][k] * 1000 for r in runs if k in r[1]]
        if vals:
            print(f"  {k:18s} {statistics.median(vals):8.1f}")


if __name__ == "__main__":
    main()
