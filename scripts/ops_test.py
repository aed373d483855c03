#!/usr/bin/env python3
"""What an operator relies on, tested on loopback against a running server and a real
Prometheus (Debian's `prometheus`):
  - /healthz answers; /readyz is 200 with the models, the worker and the permalink store
    named, and 503 with the reason on a server whose second model failed to load;
  - every response carries X-Request-Id (the client's when sane, else a new one), and the
    job's log lines (--log-format json) carry the request's id; probes are not logged;
  - /metrics is scraped by Prometheus, which then answers queries through its HTTP API for
    requests by route and status, job seconds, token-passes, refusals, load seconds and
    memory.
Prints what it checked and exits non-zero at the first failure.

  scripts/ops_test.py [--site target/site] [--timeout 120]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from loopback import check, request, wait_healthy

PORT = 3291
BROKEN_PORT = 3292
PROM_PORT = 9391


def start_server(port, site, data_dir, log, extra):
    server = subprocess.Popen(
        ["target/release/tokenlens-server", "--addr", f"127.0.0.1:{port}", "--site-root", site,
         "--data-dir", data_dir, "--log-format", "json", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    wait_healthy(port, server, f"the server on port {port} (log: {log.name})")
    return server


def wait_ready(port, timeout):
    """/readyz until no model is loading; returns its status and JSON."""
    deadline = time.time() + timeout
    while True:
        status, _, body = request(port, "/readyz")
        ready = json.loads(body)
        if "loading" not in ready["models"].values() or time.time() > deadline:
            return status, ready
        time.sleep(0.5)


def explain(port, prompt, headers=None):
    body = {"model": "", "request": {"prompt": prompt, "methods": ["saliency"]}}
    return request(port, "/api/explain", body, headers)


def prom_query(q):
    url = f"http://127.0.0.1:{PROM_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=10) as r:
        out = json.load(r)
    if out.get("status") != "success":
        sys.exit(f"FAIL: Prometheus answered {out}")
    return out["data"]["result"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", default="target/site")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each state")
    args = ap.parse_args()
    prometheus = shutil.which("prometheus")
    check(prometheus is not None, "Debian's prometheus is installed (scripts/apt-install.sh)")
    tmp = tempfile.mkdtemp(prefix="tokenlens-ops-")
    procs = []
    try:
        log_path = os.path.join(tmp, "server.log")
        log = open(log_path, "w")
        # Three requests a minute per client: the fourth is refused, and counted.
        procs.append(start_server(PORT, args.site, tmp, log, ["--rate-limit", "3"]))

        status, headers, body = request(PORT, "/healthz")
        check(status == 200 and body.strip() == "ok", "/healthz answers 200 ok")
        status, ready = wait_ready(PORT, args.timeout)
        check(status == 200 and ready["ready"], f"/readyz is 200 once the model is loaded: {ready}")
        check(ready["worker"] == "running", "/readyz names the worker running")
        check(ready["permalinks"] == "ready (sqlite)", "/readyz names the permalink store")
        check(list(ready["models"].values()) == ["loaded"], "/readyz names the model loaded")

        status, headers, body = explain(PORT, "The capital of France is",
                                        {"x-request-id": "ops-test-1"})
        check(status == 200 and body.rstrip().endswith('{"type":"done"}'),
              "an explanation streams to its end")
        check(headers.get("x-request-id") == "ops-test-1", "the client's X-Request-Id is echoed")
        status, headers, _ = explain(PORT, "Two plus two is")
        made = headers.get("x-request-id", "")
        check(status == 200 and len(made) == 36, f"a request without an id gets one ({made})")
        status, headers, _ = explain(PORT, "Red and", {"x-request-id": "not a sane\tid"})
        check(headers.get("x-request-id", "") not in ("", "not a sane\tid"),
              "an id with spaces or controls is replaced")
        status, headers, body = explain(PORT, "Over the limit")
        check(status == 429 and "retry-after" in headers, "the fourth request is refused (429)")

        # The job ran on the worker thread; its "done" line carries the request's span.
        log.flush()
        lines = [json.loads(l) for l in open(log_path) if l.startswith("{")]

        def ids(line):
            return {s.get("id") for s in line.get("spans", [])} | {line.get("span", {}).get("id")}

        done = [l for l in lines if l.get("message") == "done" and "ops-test-1" in ids(l)]
        check(len(done) == 1, "the job's log line carries its request id (JSON logs)")
        probes = [l for l in lines if any(s.get("route") in ("/healthz", "/readyz", "/metrics")
                                          for s in l.get("spans", []))]
        check(not probes, "probes and scrapes are not logged")

        # A real Prometheus scrapes the server every second.
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    f"  - job_name: tokenlens\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{PORT}']\n")
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{PROM_PORT}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w")))
        queries = {
            'up{job="tokenlens"}': lambda v: v == 1,
            'tokenlens_http_requests_total{route="/api/explain",status="200"}': lambda v: v == 3,
            'tokenlens_http_requests_total{route="/api/explain",status="429"}': lambda v: v == 1,
            'tokenlens_refusals_total{reason="rate"}': lambda v: v == 1,
            'sum(tokenlens_job_duration_seconds_count{task="explain",outcome="done"})':
                lambda v: v == 3,
            'sum(tokenlens_job_duration_seconds_bucket{task="explain",le="+Inf"})':
                lambda v: v == 3,
            'sum(tokenlens_token_passes_total{task="explain"})': lambda v: v > 0,
            "tokenlens_queued_jobs": lambda v: v == 0,
            "tokenlens_running_jobs": lambda v: v == 0,
            "tokenlens_model_load_seconds": lambda v: v > 0,
            "tokenlens_process_resident_memory_bytes": lambda v: v > 50e6,
        }
        deadline = time.time() + args.timeout
        pending = dict(queries)
        while pending and time.time() < deadline:
            for q in list(pending):
                try:
                    result = prom_query(q)
                except OSError:
                    break
                if len(result) == 1 and pending[q](float(result[0]["value"][1])):
                    print(f"ok: Prometheus answers {q} = {result[0]['value'][1]}")
                    del pending[q]
            time.sleep(1)
        check(not pending, f"Prometheus answered every query (still waiting: {list(pending)})")

        # A server whose second model cannot load is alive but not ready, and says why.
        broken = os.path.join(tmp, "broken.gguf")
        with open(broken, "wb") as f:
            f.write(b"GGUF not really")
        log2 = open(os.path.join(tmp, "broken.log"), "w")
        procs.append(start_server(BROKEN_PORT, args.site, tmp, log2,
                                  ["--model", "smollm2-135m", "--model", broken]))
        status, ready = wait_ready(BROKEN_PORT, args.timeout)
        check(status == 503 and not ready["ready"], "/readyz is 503 when a model failed to load")
        check(any("failed to load" in r for r in ready["reasons"]), f"and says why: {ready['reasons']}")
        check(request(BROKEN_PORT, "/healthz")[0] == 200, "/healthz still answers 200")
        print("all operator checks passed")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
