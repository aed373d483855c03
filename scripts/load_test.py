#!/usr/bin/env python3
"""Load test on loopback: N clients at once send explanations to a TokenLens server.

Starts `target/release/tokenlens-server` (with `--trust-forwarded-for`, so each client
can stand for its own address through X-Forwarded-For, and any extra server flags given),
sends one explanation per client at the same time, reads every stream to its end, and checks:
  - every request ends: a stream that ends with `done` or an error event, or a refusal with
    429/503 and `Retry-After`; none hangs past --timeout;
  - the server's peak resident memory (VmHWM) stays bounded;
  - the server still answers afterwards.
Prints a JSON summary and exits non-zero when a check fails.

  scripts/load_test.py [--clients 50] [--timeout 300] [--site target/site] [-- server flags]
"""
import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PORT = 3290


def post(path, body, headers=None, timeout=300):
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take")
    ap.add_argument("--site", default="target/site")
    ap.add_argument("--max-rss-gb", type=float, default=8.0, help="fail above this peak RSS")
    ap.add_argument("server_args", nargs="*", help="extra tokenlens-server flags (after --)")
    args = ap.parse_args()

    server = subprocess.Popen(
        ["target/release/tokenlens-server", "--addr", f"127.0.0.1:{PORT}", "--site-root", args.site,
         "--trust-forwarded-for", *args.server_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(600):
            try:
                if post("/api/models", {}, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                sys.exit(f"server exited: {server.stderr.read()}")
            time.sleep(0.2)
        outcomes = [None] * args.clients

        def client(i):
            started = time.time()
            body = {"model": "", "request": {
                "prompt": f"Client {i} asks: why is the sky blue? " * (1 + i % 4),
                "methods": ["saliency", "attnlrp"]}}
            try:
                status, headers, text = post("/api/explain", body,
                                             {"x-forwarded-for": f"10.1.{i // 200}.{i % 200 + 1}"},
                                             timeout=args.timeout)
            except Exception as e:  # a hang (timeout) or a broken connection
                outcomes[i] = {"kind": f"failed: {e}", "s": time.time() - started}
                return
            lines = [json.loads(l) for l in text.splitlines() if l.strip()] if status == 200 else []
            if status == 200 and lines and lines[-1].get("type") == "done":
                kind = "done"
            elif status == 200 and any(l.get("type") == "error" for l in lines):
                kind = "error event"
            elif status in (429, 503) and "retry-after" in {k.lower() for k in headers}:
                kind = f"{status} with Retry-After"
            else:
                kind = f"unexpected: {status} {text[:200]!r}"
            queued = [l["position"] for l in lines if l.get("type") == "queued"]
            outcomes[i] = {"kind": kind, "s": time.time() - started,
                           "max_position": max(queued, default=0)}

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        after = post("/api/models", {}, timeout=10)[0]
        rss = peak_rss_kb(server.pid) / 1048576
        kinds = {}
        for o in outcomes:
            kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
        summary = {
            "clients": args.clients,
            "outcomes": kinds,
            "longest_request_s": round(max(o["s"] for o in outcomes), 1),
            "longest_line": max(o.get("max_position", 0) for o in outcomes),
            "wall_s": round(wall, 1),
            "server_peak_rss_gib": round(rss, 2),
            "models_after": after,
        }
        print(json.dumps(summary, indent=1))
        ok = (all(k == "done" or k == "error event" or "Retry-After" in k for k in kinds)
              and after == 200 and rss <= args.max_rss_gb)
        sys.exit(0 if ok else 1)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
