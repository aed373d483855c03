"""HTTP on loopback for the test scripts (ops_test.py, replicas_test.py): one request with
its status, headers (lower-case) and body, a stream cut short returning what arrived; and
the checks' printing."""
import http.client
import json
import sys
import time
import urllib.error
import urllib.request


def request(port, path, body=None, headers=None, timeout=120):
    """GET `path` (POST with `body` as JSON) on 127.0.0.1:`port`: (status, headers, text)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            got = {k.lower(): v for k, v in r.headers.items()}
            try:
                text = r.read()
            except http.client.IncompleteRead as e:
                # The stream was cut (its server died): what arrived.
                text = e.partial
            return r.status, got, text.decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def wait_healthy(port, proc, what, tries=600, pause=0.2):
    """Waits until `/healthz` on `port` answers 200; exits if `proc` ends or it never does."""
    for _ in range(tries):
        try:
            if request(port, "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"FAIL: {what} exited")
        time.sleep(pause)
    sys.exit(f"FAIL: {what} never answered /healthz")


def check(ok, what):
    """Prints `ok: what`, or exits with `FAIL: what`."""
    if not ok:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")
