#!/usr/bin/env python3
"""flagbelt's load test: the release server on 127.0.0.1 under wrk.

Started by `loadtest/run` (which installs wrk and builds the release binary).
Generates a 50-flag environment whose flags are all client-visible (the
ruleset of benches/common/mod.rs `ruleset_yaml(env, version, 50)`, plus a
public key), compiles it with `flagbelt compile` into a temporary folder,
serves it with `flagbelt serve --source file://... --preload load`, and runs
one bounded wrk phase per scenario:

  1. GET /healthz                                   the baseline
  2. GET /v1/eval, a new context on every request   no two answers alike
  3. GET /v1/eval, a small set of repeating contexts
  4. GET /v1/eval with If-None-Match                every answer a 304
  5. GET /v1/eval, new contexts, paced at about half of (2)'s throughput: p99
     latency below saturation

It samples the server's RSS (/proc/PID/status) throughout, stops the server,
and prints a Markdown table. Numbers are only comparable within one run
(ratios to /healthz): client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "loadtest", "lua")
ENV = "load"


def ruleset_yaml(env: str, version: int, n: int) -> str:
    """benches/common/mod.rs `ruleset_yaml`, line for line (keep in step)."""
    y = f"environment: {env}\nversion: {version}\n"
    y += (
        "segments:\n  staff:\n    - [{attr: email, op: ends_with, values: [\"@example.com\"]}]\n"
        "  beta:\n    - [{attr: beta, op: eq, values: [true]}]\n    - [{segment: staff}]\n"
        "flags:\n  base:\n    variants: {on: true, off: false}\n    default: on\n"
    )
    for i in range(n):
        client = "true" if (i % 2 == 0 or n <= 100) else "false"
        y += f"  flag-{i}:\n    client: {client}\n"
        kind = i % 5
        if kind == 0:
            y += (
                "    variants: {on: true, off: false}\n    default: off\n    rules:\n"
                "      - when: [{attr: country, op: in, values: [NZ, AU, GB, CA]}, "
                "{attr: app.version, op: semver_gte, values: [\"2.3.0\"]}]\n        serve: on\n"
                "      - when: [{segment: staff}]\n"
                "        serve: {rollout: {weights: {on: 25, off: 75}}}\n"
            )
        elif kind == 1:
            y += (
                "    variants: {a: \"Welcome\", b: \"Hello\", c: \"Kia ora\"}\n    default: a\n"
                "    rules:\n      - when: [{attr: country, op: eq, values: [NZ]}]\n"
                "        serve: c\n      - serve: {rollout: {weights: {a: 50, b: 50}}}\n"
            )
        elif kind == 2:
            y += (
                "    variants: {small: 10, big: 1000}\n    default: small\n"
                "    requires: [{flag: base, variant: on}]\n    rules:\n"
                "      - when: [{attr: plan, op: in, values: [pro, enterprise]}, "
                "{attr: seats, op: gte, values: [10]}]\n        serve: big\n"
            )
        elif kind == 3:
            y += (
                "    variants: {on: true, off: false}\n    default: off\n    rules:\n"
                "      - when: [{segment: beta}]\n        serve: on\n"
                "      - when: [{attr: email, op: matches, values: [\"^qa-[0-9]+@\"]}]\n"
                "        serve: on\n"
            )
        else:
            y += (
                "    variants: {old: {limit: 1}, new: {limit: 2}}\n    default: old\n"
                "    rules:\n      - when: [{attr: signup, op: after, "
                "values: [\"2025-06-01T00:00:00Z\"]}, {attr: platform, op: not_in, "
                "values: [ios]}]\n        serve: new\n"
            )
    return y


def context(i: int) -> dict:
    """benches/common/mod.rs `contexts(n)[i]` (and lua/common.lua `context_json`)."""
    countries = ["NZ", "AU", "US", "GB", "DE", "CA"]
    plans = ["free", "pro", "enterprise"]
    return {
        "targetingKey": f"user-{i}",
        "email": f"u{i}@example.com" if i % 7 == 0 else f"u{i}@mail.test",
        "country": countries[i % 6],
        "plan": plans[i % 3],
        "seats": i % 40,
        "beta": i % 11 == 0,
        "platform": "ios" if i % 2 == 0 else "web",
        "signup": f"2025-{1 + i % 12:02d}-15T10:00:00Z",
        "app": {"version": f"2.{i % 5}.0"},
    }


def b64url(ctx: dict) -> str:
    text = json.dumps(ctx, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def log(msg: str) -> None:
    print(f"[loadtest] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> str:
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    return res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0])
    except FileNotFoundError:
        pass
    return out


class RssSampler:
    """Samples VmRSS every 100 ms while a phase runs; keeps the maximum."""

    def __init__(self, pid: int):
        self.pid = pid
        self.max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.max_kib = max(self.max_kib, rss_kib(self.pid).get("VmRSS", 0))
            self._stop.wait(0.1)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def http_get(url: str, headers: dict[str, str] | None = None):
    """(status, headers with case-insensitive `get`, body)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def lua_string(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid Lua string literal here (ASCII)


def lua_params(params: dict) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, list):
            items = ", ".join(lua_string(v) for v in value)
            parts.append(f"{key} = {{ {items} }}")
        elif isinstance(value, str):
            parts.append(f"{key} = {lua_string(value)}")
        else:
            parts.append(f"{key} = {value}")
    return "PARAMS = {\n  " + ",\n  ".join(parts) + "\n}\n"


def script(work: str, scenario: str, params: dict) -> str:
    """PARAMS + common.lua + the scenario, in one file for `wrk -s`."""
    path = os.path.join(work, f"{scenario}.lua")
    with open(path, "w") as out:
        out.write(lua_params(params))
        for name in ("common.lua", f"{scenario}.lua"):
            with open(os.path.join(LUA, name)) as f:
                out.write(f"\n-- {name}\n")
                out.write(f.read())
    return path


def wrk(base: str, lua: str, *, threads: int, connections: int, duration: int,
        pid: int) -> dict:
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
        "-s", lua, base,
    ]
    with RssSampler(pid) as rss:
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    m = re.search(r"^FLAGBELT_RESULT (\{.*\})$", res.stdout, re.M)
    if not m:
        raise SystemExit(f"wrk printed no result:\n{res.stdout}\n{res.stderr}")
    result = json.loads(m.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["rss_max_kib"] = rss.max_kib
    result["wrk"] = f"-t{threads} -c{connections} -d{duration}s"
    return result


def fmt_ms(us: int) -> str:
    return f"{us / 1000:.2f} ms"


def fmt_statuses(statuses: dict[str, int], expected: str) -> str:
    total = sum(statuses.values()) or 1
    other = total - statuses.get(expected, 0)
    text = f"{expected}: {100 * statuses.get(expected, 0) / total:.1f}%"
    if other:
        text += f" (other: {json.dumps(statuses)})"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=8, help="seconds per phase (default 8)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--connections", type=int, default=32,
                    help="wrk connections of the throughput phases (default 32)")
    ap.add_argument("--flags", type=int, default=50, help="flags in the environment (default 50)")
    ap.add_argument("--repeat", type=int, default=16,
                    help="contexts in the repeating set (default 16)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "flagbelt"))
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (loadtest/run installs it)")

    work = tempfile.mkdtemp(prefix="flagbelt-load-")
    server = None
    try:
        # The environment: a public key and the 50-flag client view.
        out = run([args.binary, "keys", "new", "--env", ENV, "--id", "web", "--kind", "frontend"])
        token = re.search(r"^key: (\S+)$", out, re.M).group(1)
        stanza = re.search(r"^(- \{id: web.*\})", out, re.M).group(1)
        yaml = ruleset_yaml(ENV, 1, args.flags).replace(
            "version: 1\n", f"version: 1\nkeys:\n  {stanza}\n", 1)
        with open(os.path.join(work, "flags.yaml"), "w") as f:
            f.write(yaml)
        store = os.path.join(work, "store")
        run([args.binary, "compile", os.path.join(work, "flags.yaml"), "--out", store])

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_log = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen(
            [args.binary, "serve", "--source", f"file://{store}/", "--preload", ENV,
             "--listen", f"127.0.0.1:{port}"],
            stdout=server_log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                with open(os.path.join(work, "server.log")) as f:
                    raise SystemExit(f"the server exited:\n{f.read()}")
            try:
                if http_get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready in 30 s")
            time.sleep(0.1)
        idle = rss_kib(server.pid)

        prefix = f"/v1/eval/{token}/"
        status, _, body = http_get(base + prefix + b64url(context(1)))
        answer = json.loads(body)
        if status != 200:
            raise SystemExit(f"GET /v1/eval answered {status}: {body[:200]!r}")
        visible = len(answer["flags"])
        log(f"environment {ENV!r}: {visible} client-visible flags per answer, "
            f"{len(body)} bytes")

        # The validators of the repeating set (contexts 0..repeat-1; the Lua
        # scenarios build the same contexts).
        etags = []
        for i in range(args.repeat):
            status, headers, _ = http_get(base + prefix + b64url(context(i)))
            etag = headers.get("ETag")
            if status != 200 or not etag:
                raise SystemExit(f"GET /v1/eval answered {status} without an ETag")
            etags.append(etag)

        common = dict(threads=args.threads, duration=args.duration, pid=server.pid)
        runs = {}

        def phase(name: str, scenario: str, params: dict, **kw) -> dict:
            log(f"phase {name} ({kw.get('connections', args.connections)} connections, "
                f"{args.duration} s)")
            opts = {**common, "connections": args.connections, **kw}
            r = wrk(base, script(work, scenario, params), **opts)
            runs[name] = r
            return r

        # Warm-up (discarded): first-touch allocations, relevant-attribute cache.
        wrk(base, script(work, "eval_random", {"prefix": prefix}), threads=args.threads,
            connections=args.connections, duration=2, pid=server.pid)

        phase("healthz", "healthz", {})
        phase("random", "eval_random", {"prefix": prefix})
        phase("repeat", "eval_repeat", {"prefix": prefix, "set_size": args.repeat})
        phase("revalidate", "eval_304",
              {"prefix": prefix, "set_size": args.repeat, "etags": etags})

        # Paced at half the peak eval rate. Each connection waits `delay_ms`
        # on average between an answer and its next request, so the rate is
        # about connections * 1000 / (delay_ms + latency): a short calibration
        # run measures it and scales the connections to hit the target.
        target = runs["random"]["rps"] / 2
        delay_ms = 20
        connections = max(args.threads, round(target * delay_ms / 1000))
        paced = {"prefix": prefix, "delay_ms": delay_ms}
        log(f"calibrating the paced phase for {target:,.0f} requests/s")
        probe = wrk(base, script(work, "eval_random", paced), threads=args.threads,
                    connections=connections, duration=2, pid=server.pid)
        connections = max(args.threads, min(4000, round(connections * target / probe["rps"])))
        phase("paced", "eval_random", paced, connections=connections)
        hwm = rss_kib(server.pid)

        # The table.
        base_rps = runs["healthz"]["rps"]
        rows = [
            ("GET /healthz (baseline)", "healthz", "200"),
            ("GET /v1/eval, new context every request", "random", "200"),
            (f"GET /v1/eval, {args.repeat} repeating contexts", "repeat", "200"),
            ("GET /v1/eval + If-None-Match (revalidation)", "revalidate", "304"),
            (f"GET /v1/eval, new contexts, paced at {runs['paced']['rps'] / runs['random']['rps']:.0%}"
             " of its peak", "paced", "200"),
        ]
        print()
        print(f"flagbelt load test: {visible}-flag client view, {os.cpu_count()} CPUs shared "
              f"by wrk and the server, wrk {runs['healthz']['wrk']} per phase "
              f"(paced: {runs['paced']['wrk']}, 0-{2 * delay_ms} ms between requests per "
              "connection), all on 127.0.0.1")
        print()
        print("| route | requests/s | ratio to /healthz | p50 | p99 | answers |")
        print("|---|---:|---:|---:|---:|---|")
        for label, key, expected in rows:
            r = runs[key]
            errors = sum(r["errors"].values()) - r["errors"]["status"]
            answers = fmt_statuses(r["statuses"], expected)
            if errors:
                answers += f", {errors} socket errors"
            print(f"| {label} | {r['rps']:,.0f} | {r['rps'] / base_rps:.2f} | "
                  f"{fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | {answers} |")
        print()
        peak = max(r["rss_max_kib"] for r in runs.values())
        print(f"Server RSS: {idle.get('VmRSS', 0) / 1024:.1f} MiB idle after preload; "
              f"{peak / 1024:.1f} MiB max sampled under load; "
              f"{hwm.get('VmHWM', 0) / 1024:.1f} MiB high-water mark (VmHWM).")
        print("Per phase (max VmRSS): " + ", ".join(
            f"{k} {r['rss_max_kib'] / 1024:.1f} MiB" for k, r in runs.items()))
        wrong = [label for label, key, expected in rows
                 if runs[key]["statuses"].get(expected, 0) < runs[key]["requests"]]
        if wrong:
            raise SystemExit(f"unexpected answers in: {wrong} (see the answers column)")
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
