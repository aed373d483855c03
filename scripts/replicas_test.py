#!/usr/bin/env python3
"""Two replicas behind a real nginx on one PostgreSQL, one killed mid-load (README, "Scaling
past one machine"). On loopback: PostgreSQL ($TOKENLENS_TEST_POSTGRES, else
scripts/postgres.sh), two `tokenlens-server`s sharing it, and Debian's nginx running
deploy/nginx/tokenlens.conf as it is (only the addresses are this test's). Checks:
  - a permalink shared through one replica opens through the other;
  - under a bounded load through nginx, with one replica killed (SIGKILL) mid-load, every
    request ends: done, refused with Retry-After, or (only for a request the killed replica
    was streaming) cut off; none hangs, none gets nginx's own error (with no replica left to
    try, nginx answers 503 with Retry-After, as a busy replica does);
  - after the kill every request reaches the live replica and completes, the dead one's
    /readyz no longer answers, and every permalink stored before and during the load opens.
Prints what it checked and exits non-zero at the first failure.

  scripts/replicas_test.py [--clients 8] [--requests 4] [--site target/site]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from loopback import check, request, wait_healthy

REPLICAS = (3311, 3312)
NGINX = 3310
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def explain_request(prompt):
    """The request a shared view of `prompt` makes (src: app/src/state/view.rs): every
    method, ten candidates, no curves, no lens."""
    return {"prompt": prompt, "chat_template": False, "top_k": 10, "explain_candidates": False,
            "methods": ["saliency", "input_x_gradient", "attnlrp", "cp_lrp"]}


def share(port, prompt):
    """Explains `prompt` on the replica at `port` and shares the view there; returns the id."""
    req = explain_request(prompt)
    status, _, body = request(port, "/api/explain", {"model": "", "request": req})
    check(status == 200, f"explaining on :{port}")
    lines = body.splitlines()
    sealed = next(json.loads(l) for l in lines if '"type":"sealed"' in l)
    skip = {"stage", "progress", "queued", "done", "error", "candidate", "sealed"}
    events = [l for l in lines if json.loads(l)["type"] not in skip]
    view = {"model": sealed["model"], "prompt": prompt, "chat": False, "candidates": False,
            "query_only": False, "explain": {"target": {"kind": "argmax"}},
            "method": "saliency"}
    record = {"model": sealed["model"], "task": {"kind": "explain", "request": req},
              "events": events, "seal": sealed["seal"]}
    snapshot = {"view": view, "answer": None, "explanation": record, "matrix": None}
    status, _, body = request(port, "/api/share", {"snapshot": snapshot})
    check(status == 200, f"sharing on :{port} ({status} {body[:200]})")
    return json.loads(body)


def opens(port, id_):
    status, _, body = request(port, "/api/shared", {"id": id_})
    return status == 200 and json.loads(body)["view"]["method"] == "saliency"


def start_server(port, site, db, tmp):
    log = open(os.path.join(tmp, f"server-{port}.log"), "w")
    p = subprocess.Popen(
        [os.path.join(REPO, "target/release/tokenlens-server"), "--addr", f"127.0.0.1:{port}",
         "--site-root", site, "--database-url", db, "--trust-forwarded-for", "--queue", "4",
         "--shares-per-minute", "0", "--data-dir", tmp],
        stdout=log, stderr=subprocess.STDOUT)
    return p


def wait_ready(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"FAIL: the replica on :{port} exited")
        try:
            status, _, body = request(port, "/readyz", timeout=5)
            if status == 200 and json.loads(body)["permalinks"] == "ready (postgresql)":
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"FAIL: the replica on :{port} was never ready")


def start_nginx(tmp):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    check(os.path.exists(nginx), "Debian's nginx is installed (scripts/apt-install.sh nginx-light)")
    conf = os.path.join(tmp, "nginx.conf")
    with open(os.path.join(tmp, "tokenlens-upstreams.conf"), "w") as f:
        for port in REPLICAS:
            f.write(f"server 127.0.0.1:{port} max_fails=0;\n")
    with open(os.path.join(tmp, "tokenlens-listen.conf"), "w") as f:
        f.write(f"listen 127.0.0.1:{NGINX};\n")
    user = "user root;\n" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
daemon off;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {REPO}/deploy/nginx/tokenlens.conf;
}}
""")
    p = subprocess.Popen([nginx, "-p", tmp, "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(tmp, "nginx.out"), "w"))
    wait_healthy(NGINX, p, f"nginx (see {tmp}/nginx.out)", tries=100, pause=0.1)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4, help="requests per client, one at a time")
    ap.add_argument("--site", default=os.path.join(REPO, "target/site"))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tokenlens-replicas-")
    procs, own_postgres = [], False
    db = os.environ.get("TOKENLENS_TEST_POSTGRES")
    if not db:
        db = subprocess.check_output(["bash", os.path.join(REPO, "scripts/postgres.sh"), "start"],
                                     text=True).strip()
        own_postgres = True
    try:
        servers = [start_server(port, args.site, db, tmp) for port in REPLICAS]
        procs += servers
        for port, p in zip(REPLICAS, servers):
            wait_ready(port, p)
        check(True, "two replicas on one PostgreSQL are ready")
        procs.append(start_nginx(tmp))

        a, b = REPLICAS
        via_a = share(a, "Shared through the first replica.")
        check(opens(b, via_a), "a permalink shared through one replica opens through the other")
        via_b = share(b, "Shared through the second replica.")
        check(opens(a, via_b), "and the other way round")
        stored = [via_a, via_b]

        # The load: each client sends its requests one after another through nginx.
        outcomes, lock = [], threading.Lock()
        killed = threading.Event()
        done_before_kill = threading.Semaphore(0)

        def client(i):
            for k in range(args.requests):
                prompt = f"Client {i}, request {k}: why is the sky blue? " * (1 + (i + k) % 3)
                after_kill = killed.is_set()
                try:
                    status, headers, body = request(
                        NGINX, "/api/explain", {"model": "", "request": explain_request(prompt)},
                        timeout=args.timeout)
                except OSError as e:
                    status, headers, body = None, {}, str(e)
                last = body.rstrip().splitlines()[-1] if body.strip() else ""
                if status == 200 and last == '{"type":"done"}':
                    kind = "done"
                elif status == 200 and '"type":"error"' in last:
                    kind = "error event"
                elif status in (429, 503) and "retry-after" in headers:
                    kind = "refused"
                elif status == 200 or status is None:
                    kind = "cut"
                else:
                    kind = f"status {status}"
                with lock:
                    outcomes.append((kind, after_kill, headers.get("x-request-id", "")))
                if kind == "done":
                    done_before_kill.release()

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        # Kill the second replica once a few requests are done (it is then mid-load).
        for _ in range(max(2, args.clients // 2)):
            if not done_before_kill.acquire(timeout=args.timeout):
                sys.exit("FAIL: no request finished before the kill")
        mid = share(NGINX, "Shared through nginx during the load.")
        stored.append(mid)
        servers[1].send_signal(signal.SIGKILL)
        servers[1].wait()
        killed.set()
        print(f"killed the replica on :{b} with {len(outcomes)} of "
              f"{args.clients * args.requests} requests ended")
        for t in threads:
            t.join(timeout=args.timeout + 30)
        check(not any(t.is_alive() for t in threads), "every request ended (none hangs)")
        kinds = {}
        for kind, _, _ in outcomes:
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"outcomes: {kinds}")
        check(len(outcomes) == args.clients * args.requests, "every request has an outcome")
        bad = [o for o in outcomes if o[0] not in ("done", "refused", "cut")]
        check(not bad, f"each one done, refused with Retry-After, or cut by the kill: {bad[:3]}")
        cut = [o for o in outcomes if o[0] == "cut"]
        check(all(not after for _, after, _ in cut),
              f"only requests the killed replica was streaming or queueing are cut ({len(cut)})")
        check(all(o[2] for o in outcomes if o[0] != "cut"), "every answer carries X-Request-Id")

        # After the kill: nginx leaves the dead replica out.
        try:
            request(b, "/readyz", timeout=2)
            dead = False
        except OSError:
            dead = True
        check(dead, "the killed replica's /readyz no longer answers")
        check(request(a, "/readyz")[0] == 200, "the live replica's /readyz is 200")
        after = [request(NGINX, "/api/explain", {"model": "", "request": explain_request(
            f"After the kill, request {k}.")}) for k in range(4)]
        check(all(s == 200 and body.rstrip().endswith('{"type":"done"}') for s, _, body in after),
              "requests after the kill all complete through nginx")
        check(all(opens(NGINX, id_) for id_ in stored),
              f"every permalink stored before and during the load opens ({len(stored)})")

        # With no replica left to try (the other one too is gone), nginx answers as a busy
        # replica does, not with its own 502 page: the same happens to a request that one
        # replica refused as busy while the other was being killed.
        servers[0].send_signal(signal.SIGKILL)
        servers[0].wait()
        status, headers, _ = request(NGINX, "/api/explain", {"model": "", "request": explain_request(
            "With no replica left.")})
        check(status == 503 and "retry-after" in headers and headers.get("x-request-id"),
              f"with no replica left: 503 with Retry-After and X-Request-Id ({status}, {headers})")
        print("all replica checks passed")
    except SystemExit:
        for name in ("nginx-error.log",):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                print(f"--- {name} (last lines)\n" + "".join(open(path).readlines()[-15:]))
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if own_postgres:
            subprocess.run(["bash", os.path.join(REPO, "scripts/postgres.sh"), "stop"])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
