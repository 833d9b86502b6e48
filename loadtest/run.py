#!/usr/bin/env python3
"""flagbelt's load test: the release server on 127.0.0.1 under wrk.

Started by `loadtest/run` (which installs wrk and builds the release binary).
Generates a 50-flag environment whose flags are all client-visible (the
ruleset of benches/common/mod.rs `ruleset_yaml(env, version, 50)`, plus a
public key and a server key), compiles it with `flagbelt compile` into a
temporary folder, serves it with `flagbelt serve --source file://...
--preload load`, and runs bounded wrk phases:

  1. GET /healthz                                   the baseline
  2. GET /v1/eval, a new context on every request   no two answers alike
  3. GET /v1/eval, a small set of repeating contexts
  4. GET /v1/eval with If-None-Match                every answer a 304
  5. POST /ofrep/v1/evaluate/flags (OFREP bulk, server key: every flag), a
     new context on every request                   what server SDKs send
  6. GET /v1/eval, new contexts, paced at about half of (2)'s throughput: p99
     latency below saturation

(1)-(5) run interleaved in --rounds rounds (1, 2, 3, 4, 5, 1, 2, ...): the
machine's speed drifts by +-15 % over minutes, so each eval phase is compared
with the /healthz of its own round, and the table reports the median of those
same-round ratios (with their range). (6) runs once, after the rounds.

Then it stops that server, starts `flagbelt demo` (the bundled demo
environment) and runs new-context GET /v1/eval load against it twice, with
the connections of (2) and with the paced connections of (5), for the demo's
RSS under load.

Every scenario's requests are built before wrk's clock starts, so the
client's CPU per request is small and about equal in every phase (printed per
phase, with the server's). It samples the servers' RSS (/proc/PID/status)
throughout, counts answers by status from the server's /metrics, and prints
Markdown tables. Numbers are only comparable within one run (ratios to
/healthz, within a round): client and server share this machine's cores.

The phases are one table, SCENARIOS (what each sends, to which server, when,
what its answers must be, what it is divided by); run_scenarios runs it and
print_report prints the tables from its results.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "loadtest", "lua")
ENV = "load"
# The demo's public key (src/cli/demo.rs DEMO_PUBLIC_KEY; `flagbelt demo`
# prints it, and the runner reads it from there when it can).
DEMO_PUBLIC_KEY = "fbp.demo.web.l1u83ftUtHOALf0O9eQLbzxoEVeG8ynnsGVGBX0fsRE"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


# The new-context scenario (lua/eval_random.lua) cycles the attributes other
# than targetingKey through a pool of contexts: every combination of the
# cycles of `context` (email domain 7, country 6, plan 3, seats 40, beta 11,
# platform 2, signup month 12, app.version 5), so the same variety as numbering
# every request. The unique part, targetingKey, is appended per request.
POOL = math.lcm(7, 6, 3, 40, 11, 2, 12, 5)  # 9240
KEY_LAST = '"targetingKey":"user-'


def context_head(j: int) -> str:
    """`context(j)` as JSON with targetingKey moved last and cut after
    `"user-`, padded with spaces (JSON whitespace) to a multiple of 3 bytes:
    its base64url followed by the base64url of `<number>"}` is the base64url of
    the whole context."""
    ctx = context(j)
    del ctx["targetingKey"]
    text = json.dumps(ctx, separators=(",", ":"))[:-1] + ","
    return text + " " * (-(len(text) + len(KEY_LAST)) % 3) + KEY_LAST


def write_pool(path: str, prefix: str) -> None:
    """One line per pool context: `prefix` + base64url(context_head(j))."""
    with open(path, "w") as f:
        for j in range(POOL):
            head = context_head(j).encode()
            assert len(head) % 3 == 0, head
            f.write(prefix + base64.urlsafe_b64encode(head).decode() + "\n")


OFREP_PATH = "/ofrep/v1/evaluate/flags"


def ofrep_body_head(j: int) -> str:
    """The OFREP body of `context(j)` up to its unique part:
    `{"context":{...,"targetingKey":"user-` (targetingKey moved last); a
    request appends `<12 digits>"}}`."""
    ctx = context(j)
    del ctx["targetingKey"]
    return '{"context":' + json.dumps(ctx, separators=(",", ":"))[:-1] + "," + KEY_LAST


def write_ofrep_pool(path: str) -> None:
    """One line per pool context: ofrep_body_head(j)."""
    with open(path, "w") as f:
        for j in range(POOL):
            f.write(ofrep_body_head(j) + "\n")


def check_ofrep_samples(stdout: str, host: str, key: str, seen: set[str]) -> list[bytes]:
    """Decodes the whole requests ofrep_random.lua printed at init
    (FLAGBELT_SAMPLE j base64url): each must be `POST /ofrep/v1/evaluate/flags`
    with the server key, a Content-Length equal to its body's length and a
    body `{"context": context(j)}` but for a targetingKey that is last, 12
    digits and never seen before. Returns the raw requests."""
    out = []
    for j, seg in re.findall(r"^FLAGBELT_SAMPLE (\d+) (\S+)$", stdout, re.M):
        raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
        head, sep, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(": ")
            headers[name.lower()] = value
        want_headers = {"host": host, "authorization": f"Bearer {key}",
                        "content-type": "application/json", "content-length": str(len(body))}
        if not sep or lines[0] != f"POST {OFREP_PATH} HTTP/1.1" or headers != want_headers:
            raise SystemExit(f"sample request {raw!r}: unexpected request line or headers "
                             f"(want {want_headers}, body of {len(body)} bytes)")
        try:
            top = json.loads(body)
        except ValueError as e:
            raise SystemExit(f"sample request {raw!r}: body is not JSON: {e}")
        ctx = top.get("context") if isinstance(top, dict) else None
        want = context(int(j))
        key_ = ctx.get("targetingKey") if isinstance(ctx, dict) else None
        if (list(top) != ["context"] or not isinstance(key_, str)
                or list(ctx)[-1] != "targetingKey"
                or not re.fullmatch(r"user-\d{12}", key_) or key_ in seen
                or {**ctx, "targetingKey": None} != {**want, "targetingKey": None}):
            raise SystemExit(f"sample request {raw!r}: unexpected body {top!r}")
        seen.add(key_)
        out.append(raw)
    return out


def ofrep_flags(status: int, body: bytes) -> int:
    """The number of flags of an OFREP bulk answer; exits unless it is a 200
    whose `flags` are all `{key, value, reason, variant}` without errors."""
    try:
        answer = json.loads(body) if status == 200 else None
    except ValueError:
        answer = None
    flags = answer.get("flags") if isinstance(answer, dict) else None
    if (not isinstance(flags, list) or not flags
            or not all(isinstance(f, dict) and {"key", "value", "reason", "variant"} <= set(f)
                       and "errorCode" not in f for f in flags)):
        raise SystemExit(f"POST {OFREP_PATH} answered {status}, not the OFREP bulk shape: "
                         f"{body[:300]!r}")
    return len(flags)


def send_raw(base: str, raw: bytes) -> tuple[int, bytes]:
    """Sends one ready HTTP/1.1 request as is (the bytes wrk would send) and
    reads the answer: (status, body)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(raw)
        res = http.client.HTTPResponse(sock)
        res.begin()
        return res.status, res.read()


def check_samples(stdout: str, prefix: str, seen: set[str]) -> int:
    """Decodes the requests eval_random.lua printed at init (FLAGBELT_SAMPLE
    j path): each must be a JSON object equal to context(j) but for a
    targetingKey that is last and never seen before. Returns how many."""
    n = 0
    for j, path in re.findall(r"^FLAGBELT_SAMPLE (\d+) (\S+)$", stdout, re.M):
        if not path.startswith(prefix):
            raise SystemExit(f"sample request {path!r} is not under {prefix!r}")
        seg = path[len(prefix):]
        try:
            ctx = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
        except ValueError as e:
            raise SystemExit(f"sample request {path!r} is not base64url JSON: {e}")
        want = context(int(j))
        key = ctx.get("targetingKey") if isinstance(ctx, dict) else None
        if (not isinstance(key, str) or list(ctx)[-1] != "targetingKey"
                or not key.startswith("user-") or key in seen
                or {**ctx, "targetingKey": None} != {**want, "targetingKey": None}):
            raise SystemExit(f"sample request {path!r}: unexpected context {ctx!r}")
        seen.add(key)
        n += 1
    return n


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


def busy_ticks() -> int:
    """CPU ticks spent by anything on this machine (/proc/stat, all CPUs)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal


def children_cpu() -> float:
    """User + system seconds of this process's reaped children (wrk runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


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


METRIC = re.compile(r"^flagbelt_http_requests_total\{(.*)\} (\S+)$", re.M)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def answered(base: str) -> dict[tuple[str, str], int]:
    """The server's answers so far by (route template, status), from /metrics
    (`flagbelt_http_requests_total`), without /metrics itself."""
    status, _, body = http_get(base + "/metrics")
    if status != 200:
        raise SystemExit(f"GET /metrics answered {status}: the runner counts statuses there")
    out: dict[tuple[str, str], int] = {}
    for labels, value in METRIC.findall(body.decode()):
        d = dict(LABEL.findall(labels))
        key = (d.get("route", "?"), d.get("status", "?"))
        if key[0] != "/metrics":
            out[key] = out.get(key, 0) + int(float(value))
    if not out:
        raise SystemExit("GET /metrics has no flagbelt_http_requests_total: "
                         "the runner counts statuses there")
    return out


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


class Target:
    """One running server and what the phases against it need."""

    def __init__(self, base: str, pid: int, work: str, name: str):
        self.base, self.pid, self.work, self.name = base, pid, work, name
        self.random_runs = 0  # new-context runs so far: each gets its own keys
        self.seen: set[str] = set()  # targetingKeys of the checked samples
        self.ofrep_flags = 0  # flags in an OFREP bulk answer (set by main)

    def random_params(self, prefix: str, **extra) -> dict:
        """PARAMS of eval_random.lua for one wrk run: the pool (written once
        per prefix) and the numbering of this run's keys, a block of 10^10
        numbers no other run against this server gets (every call takes the
        next block: call it once per run). eval_random.lua numbers a thread's
        requests from key_base + thread * 10^8, so up to 98 runs."""
        pool = os.path.join(self.work, f"pool-{self.name}.txt")
        if not os.path.exists(pool):
            write_pool(pool, prefix)
        self.random_runs += 1
        return {"prefix": prefix, "pool_file": pool, "key_base": self.random_runs * 10**10,
                "thread_stride": 10**8, "samples": 4, **extra}

    def ofrep_params(self, key: str) -> dict:
        """PARAMS of ofrep_random.lua for one wrk run: its pool (written once)
        and the next block of keys, from the same counter as random_params, so
        POST and GET runs never share a key either."""
        pool = os.path.join(self.work, f"pool-{self.name}-ofrep.txt")
        if not os.path.exists(pool):
            write_ofrep_pool(pool)
        self.random_runs += 1
        return {"path": OFREP_PATH, "key": key, "pool_file": pool,
                "key_base": self.random_runs * 10**10, "thread_stride": 10**8, "samples": 4}

    def wrk(self, scenario: str, params: dict, *, threads: int, connections: int,
            duration: int) -> dict:
        lua = script(self.work, scenario, params)
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
               "--timeout", "5s", "-s", lua, self.base]
        before = answered(self.base)
        ticks, busy, wrk_cpu, t0 = cpu_ticks(self.pid), busy_ticks(), children_cpu(), time.monotonic()
        with RssSampler(self.pid) as rss:
            res = subprocess.run(cmd, capture_output=True, text=True)
        elapsed, wrk_cpu = time.monotonic() - t0, children_cpu() - wrk_cpu
        ticks, busy = cpu_ticks(self.pid) - ticks, busy_ticks() - busy
        after = answered(self.base)
        m = re.search(r"^FLAGBELT_RESULT (\{.*\})$", res.stdout, re.M)
        if res.returncode != 0 or not m:
            raise SystemExit(f"wrk failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        r = json.loads(m.group(1))
        if scenario == "eval_random":
            r["samples"] = check_samples(res.stdout, params["prefix"], self.seen)
            if r["samples"] < threads:
                raise SystemExit(f"eval_random.lua printed {r['samples']} sample requests")
        elif scenario == "ofrep_random":
            host = self.base.removeprefix("http://")
            raws = check_ofrep_samples(res.stdout, host, params["key"], self.seen)
            if len(raws) < threads:
                raise SystemExit(f"ofrep_random.lua printed {len(raws)} sample requests")
            # The very bytes wrk sent for other keys, answered outside the
            # phase (after its /metrics count): 200, OFREP shape, every flag.
            for raw in raws:
                n_flags = ofrep_flags(*send_raw(self.base, raw))
                if n_flags != self.ofrep_flags:
                    raise SystemExit(f"sample POST {OFREP_PATH} answered {n_flags} flags, "
                                     f"not {self.ofrep_flags}")
            r["samples"] = len(raws)
        r["answers"] = {k: after.get(k, 0) - before.get(k, 0)
                        for k in after if after.get(k, 0) != before.get(k, 0)}
        n = max(r["requests"], 1)
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["client_us"] = r["client_cpu_us"] / n
        r["server_us"] = ticks / CLK_TCK * 1e6 / n
        r["rss_max_kib"] = rss.max_kib
        # CPU used by neither wrk nor the server (other processes: noise), as
        # a share of the machine during the run.
        other = busy / CLK_TCK - ticks / CLK_TCK - wrk_cpu
        r["other_cpu"] = max(0.0, other / (elapsed * (os.cpu_count() or 1)))
        r["connections"] = connections
        r["wrk"] = f"-t{threads} -c{connections} -d{duration}s"
        return r


def start_server(cmd: list[str], log_path: str, base: str, env: dict) -> subprocess.Popen:
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            with open(log_path) as f:
                raise SystemExit(f"{cmd[1]} exited:\n{f.read()}")
        try:
            if http_get(f"{base}/readyz")[0] == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{cmd[1]} did not become ready in 30 s")
        time.sleep(0.1)


def stop_server(server: subprocess.Popen | None) -> None:
    if server is not None and server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def fmt_ms(us: int) -> str:
    return f"{us / 1000:.2f} ms"


def check_answers(r: dict, route: str, expected: str) -> tuple[str, bool]:
    """The answers column and whether the phase is clean: every answer the
    server counted in the phase is `expected` on `route`, it counted at least
    as many as wrk completed (it may count a few that wrk cut off at the
    end), and wrk saw no 4xx/5xx."""
    on_route = {s: n for (rt, s), n in r["answers"].items() if rt == route}
    stray = {f"{rt} {s}": n for (rt, s), n in r["answers"].items() if rt != route}
    total = sum(on_route.values())
    good = on_route.get(expected, 0)
    text = f"{expected}: {100 * good / (total or 1):.1f}%"
    ok = good == total and not stray and good >= r["requests"] and r["errors"]["status"] == 0
    if good != total:
        text += f" (server: {json.dumps(on_route)})"
    if stray:
        text += f" (other routes: {json.dumps(stray)})"
    if good < r["requests"]:
        text += f" (server counted {good} < wrk's {r['requests']})"
    if r["errors"]["status"]:
        text += f", wrk saw {r['errors']['status']} 4xx/5xx"
    errors = sum(r["errors"].values()) - r["errors"]["status"]
    if errors:
        text += f", {errors} socket errors"
    return text, ok


# The scenario table. The runner runs it in order, one server after the
# other; the report prints its rows in the same order.

WARM_UP, ROUNDS, ONCE = "warm-up", "rounds", "once"  # Scenario.stage
BASELINE, ROUND, MEDIAN = "baseline", "round", "median"  # Scenario.ratio
HEALTHZ = "/healthz"
# Scenario.route of GET /v1/eval: its route template is read from /metrics
# when the load server starts (Served.eval_route), not written here.
EVAL = "GET /v1/eval"
# The phase whose median requests/s, halved, the paced phases aim at.
PACE_OF = "random"


@dataclass
class Served:
    """One started server and what its scenarios' requests and the report
    need of it."""

    process: subprocess.Popen
    target: Target
    # /v1/eval/<its public key>/
    prefix: str
    # Client-visible flags in its GET /v1/eval answer.
    visible: int
    # VmRSS right after it became ready (rss_kib).
    idle: dict[str, int]
    # The load environment's server key, for OFREP (empty for the demo).
    server_key: str = ""
    # The repeating set: ready paths of contexts 0..--repeat-1 and the ETags
    # they were answered with (empty for the demo).
    paths: list[str] = field(default_factory=list)
    etags: list[str] = field(default_factory=list)
    # GET /v1/eval's route template in /metrics (empty for the demo: its
    # routes are the same code's).
    eval_route: str = ""
    # VmHWM just before it was stopped (rss_kib).
    hwm: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """One phase: what wrk sends, against which server, when, what every
    answer must be and what its numbers are divided by."""

    # Its name in the progress lines, the per-round and per-phase lines and
    # the noise line; the key of its results.
    name: str
    # The table's route column: `{repeat}` is --repeat, `{share}` (paced
    # rows only) its requests/s over the PACE_OF phase's median.
    label: str
    # lua/<lua>.lua, sent to wrk after lua/common.lua.
    lua: str
    # Its PARAMS for one wrk run. A new-context one takes the server's next
    # block of keys, so it is called once per run.
    params: Callable[[Served], dict]
    # "load" (the generated environment) or "demo" (`flagbelt demo`): each
    # server runs all its scenarios, then stops; in order of first mention.
    server: str = "load"
    # WARM_UP: run before the rounds for `seconds`, its numbers discarded
    # and no progress line. ROUNDS: once per round, interleaved in table
    # order. ONCE: after the rounds, --duration seconds.
    stage: str = ONCE
    seconds: int = 0
    # False: --connections and no pause. True: the connections calibrated
    # to half the PACE_OF phase's median requests/s, and a pause of 0 to
    # 2 * --pace-delay-ms after each answer (both: --threads).
    paced: bool = False
    # The route (HEALTHZ, EVAL or OFREP_PATH) every answer must be on, with
    # status `expected` (check_answers).
    route: str = EVAL
    expected: str = "200"
    # What its requests/s and server CPU per request are divided by:
    # BASELINE (it is the baseline: 1.00), ROUND (the same round's
    # baseline), MEDIAN (the baseline's median over the rounds), "" (no
    # ratio: the demo table).
    ratio: str = ""


def new_contexts(s: Served) -> dict:
    """GET /v1/eval, a context never seen before on every request."""
    return s.target.random_params(s.prefix)


def ofrep_new_contexts(s: Served) -> dict:
    """POST /ofrep/v1/evaluate/flags with the server key, a context never
    seen before on every request."""
    return s.target.ofrep_params(s.server_key)


SCENARIOS = (
    # Warm-up (discarded): first-touch allocations, relevant-attribute
    # cache; then the OFREP route's own.
    Scenario("warm-up random", "", "eval_random", new_contexts, stage=WARM_UP, seconds=2),
    Scenario("warm-up ofrep", "", "ofrep_random", ofrep_new_contexts, stage=WARM_UP,
             seconds=1),
    # The throughput phases, interleaved: round k runs each of them once,
    # so an eval phase and the /healthz it is compared with are at most 4
    # phases apart, not minutes (the machine's speed drifts). The OFREP
    # phase comes last, so the GET phases keep their places.
    Scenario("healthz", "GET /healthz (baseline)", "healthz", lambda s: {}, stage=ROUNDS,
             route=HEALTHZ, ratio=BASELINE),
    Scenario("random", "GET /v1/eval, new context every request", "eval_random",
             new_contexts, stage=ROUNDS, ratio=ROUND),
    Scenario("repeat", "GET /v1/eval, {repeat} repeating contexts", "eval_repeat",
             lambda s: {"paths": s.paths}, stage=ROUNDS, ratio=ROUND),
    Scenario("revalidate", "GET /v1/eval + If-None-Match (revalidation)", "eval_304",
             lambda s: {"paths": s.paths, "etags": s.etags}, stage=ROUNDS,
             expected="304", ratio=ROUND),
    Scenario("ofrep", "POST /ofrep/v1/evaluate/flags (server key), new context every request",
             "ofrep_random", ofrep_new_contexts, stage=ROUNDS, route=OFREP_PATH, ratio=ROUND),
    # Latency below saturation: one run after the rounds.
    Scenario("paced", "GET /v1/eval, new contexts, paced at {share:.0%} of its peak "
             "(one run¹)", "eval_random", new_contexts, paced=True, ratio=MEDIAN),
    # The demo environment (`flagbelt demo`, examples/demo.yaml): its own
    # server on a new port, the same new-context load (the contexts'
    # attributes are those its rules read: country, app.version, email,
    # plan, beta, signup), for its RSS.
    Scenario("demo", "GET /v1/eval, new context every request", "eval_random", new_contexts,
             server="demo"),
    Scenario("demo paced", "GET /v1/eval, new contexts, paced", "eval_random", new_contexts,
             server="demo", paced=True),
)
# The phase every ratio is taken to.
BASELINE_NAME = next(sc.name for sc in SCENARIOS if sc.ratio == BASELINE)


def in_rounds() -> list[Scenario]:
    """The scenarios interleaved in the rounds, in round order."""
    return [sc for sc in SCENARIOS if sc.stage == ROUNDS]


def shown(server: str) -> list[Scenario]:
    """The measured (not warm-up) scenarios against `server`: its table's
    rows, in order."""
    return [sc for sc in SCENARIOS if sc.server == server and sc.stage != WARM_UP]


# Starting the servers.

def write_environment(binary: str, work: str, flags: int) -> tuple[str, str, str]:
    """The environment: a public key (the client view) and a server key
    (every flag; all of them are client-visible anyway) in the generated
    ruleset, compiled into a store in `work`. Returns (public key, server
    key, store folder)."""
    out = run([binary, "keys", "new", "--env", ENV, "--id", "web", "--kind", "frontend"])
    token = re.search(r"^key: (\S+)$", out, re.M).group(1)
    stanza = re.search(r"^(- \{id: web.*\})", out, re.M).group(1)
    out = run([binary, "keys", "new", "--env", ENV, "--id", "api", "--kind", "backend"])
    server_key = re.search(r"^key: (fbs\.\S+)$", out, re.M).group(1)
    server_stanza = re.search(r"^(- \{id: api.*\})", out, re.M).group(1)
    yaml = ruleset_yaml(ENV, 1, flags).replace(
        "version: 1\n", f"version: 1\nkeys:\n  {stanza}\n  {server_stanza}\n", 1)
    with open(os.path.join(work, "flags.yaml"), "w") as f:
        f.write(yaml)
    store = os.path.join(work, "store")
    run([binary, "compile", os.path.join(work, "flags.yaml"), "--out", store])
    return token, server_key, store


def eval_route_of(base: str) -> str:
    """GET /v1/eval's route template in the server's /metrics (after one
    GET /v1/eval)."""
    eval_routes = [rt for rt, s in answered(base) if rt.startswith("/v1/eval")]
    if len(set(eval_routes)) != 1:
        raise SystemExit(f"cannot tell GET /v1/eval's route in /metrics: {eval_routes}")
    return eval_routes[0]


def probe_ofrep(base: str, server_key: str, n_flags: int) -> int:
    """POST /ofrep/v1/evaluate/flags with the server key: every flag (the
    `n_flags` generated ones and `base`), counted on OFREP_PATH in /metrics.
    Returns the number of flags in an answer."""
    body = json.dumps({"context": context(1)})
    status, answer = send_raw(base, (
        f"POST {OFREP_PATH} HTTP/1.1\r\nHost: {base.removeprefix('http://')}\r\n"
        f"Authorization: Bearer {server_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n{body}").encode())
    flags = ofrep_flags(status, answer)
    if flags != n_flags + 1:
        raise SystemExit(f"POST {OFREP_PATH} with the server key answered "
                         f"{flags} flags, not all {n_flags + 1} "
                         "(flag-0.. and base)")
    log(f"POST {OFREP_PATH} (server key): {flags} flags per answer, "
        f"{len(answer)} bytes")
    ofrep_routes = {rt for rt, s in answered(base) if rt.startswith("/ofrep/")}
    if ofrep_routes != {OFREP_PATH}:
        raise SystemExit(f"cannot tell POST {OFREP_PATH}'s route in /metrics: {ofrep_routes}")
    return flags


def repeating_set(base: str, prefix: str, n: int) -> tuple[list[str], list[str]]:
    """The ready paths of contexts 0..n-1 and the validators they are
    answered with."""
    paths, etags = [], []
    for i in range(n):
        paths.append(prefix + b64url(context(i)))
        status, headers, _ = http_get(base + paths[-1])
        etag = headers.get("ETag")
        if status != 200 or not etag:
            raise SystemExit(f"GET /v1/eval answered {status} without an ETag")
        etags.append(etag)
    return paths, etags


def start_load(args: argparse.Namespace, work: str, quiet: dict,
               started: list[subprocess.Popen]) -> Served:
    """Serves the generated environment (`flagbelt serve --preload`) and
    probes it: its GET /v1/eval answer and route, an OFREP answer with every
    flag, the repeating set."""
    token, server_key, store = write_environment(args.binary, work, args.flags)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(
        [args.binary, "serve", "--source", f"file://{store}/", "--preload", ENV,
         "--listen", f"127.0.0.1:{port}"],
        os.path.join(work, "server.log"), base, quiet)
    started.append(process)
    idle = rss_kib(process.pid)
    target = Target(base, process.pid, work, "load")

    prefix = f"/v1/eval/{token}/"
    status, _, body = http_get(base + prefix + b64url(context(1)))
    answer = json.loads(body)
    if status != 200:
        raise SystemExit(f"GET /v1/eval answered {status}: {body[:200]!r}")
    visible = len(answer["flags"])
    log(f"environment {ENV!r}: {visible} client-visible flags per answer, "
        f"{len(body)} bytes")
    eval_route = eval_route_of(base)
    target.ofrep_flags = probe_ofrep(base, server_key, args.flags)
    paths, etags = repeating_set(base, prefix, args.repeat)
    return Served(process, target, prefix, visible, idle, server_key=server_key,
                  paths=paths, etags=etags, eval_route=eval_route)


def start_demo(args: argparse.Namespace, work: str, quiet: dict,
               started: list[subprocess.Popen]) -> Served:
    """Serves the bundled demo environment (`flagbelt demo`) on a new port
    and probes its GET /v1/eval answer, with the public key it prints
    (DEMO_PUBLIC_KEY if it prints none)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    demo_log = os.path.join(work, "demo.log")
    process = start_server([args.binary, "demo", "--listen", f"127.0.0.1:{port}"],
                           demo_log, base, quiet)
    started.append(process)
    idle = rss_kib(process.pid)
    with open(demo_log) as f:
        m = re.search(r"^\s*public key\s+(\S+)$", f.read(), re.M)
    key = m.group(1) if m else DEMO_PUBLIC_KEY
    target = Target(base, process.pid, work, "demo")
    prefix = f"/v1/eval/{key}/"
    status, _, body = http_get(base + prefix + b64url(context(1)))
    if status != 200:
        raise SystemExit(f"demo: GET /v1/eval answered {status}: {body[:200]!r}")
    visible = len(json.loads(body)["flags"])
    log(f"demo environment: {visible} client-visible flags per answer, "
        f"{len(body)} bytes")
    return Served(process, target, prefix, visible, idle)


# Scenario.server -> how to start that server.
START = {"load": start_load, "demo": start_demo}


# The runner.

@dataclass
class Results:
    """What the runner measured, for the report."""

    args: argparse.Namespace
    # Scenario.server -> that server, stopped by now.
    served: dict[str, Served] = field(default_factory=dict)
    # GET /v1/eval's route template (Served.eval_route of the load server).
    eval_route: str = ""
    # Per round: scenario name -> its wrk result (Target.wrk).
    rounds: list[dict[str, dict]] = field(default_factory=list)
    # ROUNDS scenarios over the rounds (over_rounds), by name.
    agg: dict[str, dict] = field(default_factory=dict)
    # ONCE scenarios' wrk results, by name, in the order they ran.
    runs: dict[str, dict] = field(default_factory=dict)


def ratio(a: float, b: float) -> float:
    """a / b, NaN (not an exception) for a phase with no requests or CPU."""
    return a / b if b else math.nan


def over_rounds(rounds: list[dict[str, dict]], key: str) -> dict:
    """One scenario over the rounds: its ratios to each round's own
    baseline (per round), the medians of its numbers, its max RSS."""
    rs = [rd[key] for rd in rounds]
    return {
        "rounds": rs,
        "rps_ratios": [ratio(rd[key]["rps"], rd[BASELINE_NAME]["rps"]) for rd in rounds],
        "cpu_ratios": [ratio(rd[key]["server_us"], rd[BASELINE_NAME]["server_us"])
                       for rd in rounds],
        **{f: statistics.median([r[f] for r in rs])
           for f in ("rps", "server_us", "client_us", "p50_us", "p99_us")},
        "rss_max_kib": max(r["rss_max_kib"] for r in rs),
        "wrk": rs[0]["wrk"],
        "connections": rs[0]["connections"],
    }


def wrk_run(sc: Scenario, served: Served, args: argparse.Namespace, connections: int,
            duration: int) -> dict:
    """One bounded wrk run of `sc` against `served`: fresh PARAMS (and the
    pause, if paced)."""
    params = sc.params(served)
    if sc.paced:
        params = {**params, "delay_ms": args.pace_delay_ms}
    return served.target.wrk(sc.lua, params, threads=args.threads, connections=connections,
                             duration=duration)


def run_phase(sc: Scenario, served: Served, args: argparse.Namespace, connections: int,
              note: str = "") -> dict:
    """A measured phase of `sc`: its progress line, then --duration s of wrk."""
    log(f"phase {sc.name}{note} ({connections} connections, {args.duration} s)")
    return wrk_run(sc, served, args, connections, args.duration)


def calibrate(sc: Scenario, served: Served, args: argparse.Namespace, rate: float) -> int:
    """The connections of the paced phases, for `rate` requests/s. Each
    connection waits delay_ms on average between an answer and its next
    request, so the rate is about connections * 1000 / (delay_ms +
    latency): a short run of `sc` measures it and scales the connections to
    hit the target."""
    connections = max(args.threads, round(rate * args.pace_delay_ms / 1000))
    log(f"calibrating the paced phase for {rate:,.0f} requests/s")
    probe = wrk_run(sc, served, args, connections, 2)
    return max(args.threads, min(4000, round(connections * rate / probe["rps"])))


def run_scenarios(args: argparse.Namespace, work: str,
                  started: list[subprocess.Popen]) -> Results:
    """Runs SCENARIOS, one server after the other: start it, its warm-ups,
    its rounds (then their medians), its once-run phases (calibrating the
    pacing before the first paced one), then read its VmHWM and stop it.
    Every server it starts is added to `started` at once (the caller stops
    them on failure)."""
    quiet = {**os.environ, "RUST_LOG": "warn", "TMPDIR": work}
    res = Results(args)
    paced_connections: int | None = None  # calibrated before the first paced phase
    for name in dict.fromkeys(sc.server for sc in SCENARIOS):
        served = START[name](args, work, quiet, started)
        res.served[name] = served
        res.eval_route = res.eval_route or served.eval_route
        mine = [sc for sc in SCENARIOS if sc.server == name]
        for sc in mine:
            if sc.stage == WARM_UP:
                wrk_run(sc, served, args, args.connections, sc.seconds)
        rounds = [sc for sc in mine if sc.stage == ROUNDS]
        if rounds:
            for k in range(args.rounds):
                note = f", round {k + 1}/{args.rounds}"
                res.rounds.append({sc.name: run_phase(sc, served, args, args.connections, note)
                                   for sc in rounds})
            res.agg = {sc.name: over_rounds(res.rounds, sc.name) for sc in rounds}
        for sc in mine:
            if sc.stage != ONCE:
                continue
            if sc.paced and paced_connections is None:
                paced_connections = calibrate(sc, served, args, res.agg[PACE_OF]["rps"] / 2)
            connections = paced_connections if sc.paced else args.connections
            res.runs[sc.name] = run_phase(sc, served, args, connections)
        served.hwm = rss_kib(served.process.pid)
        stop_server(served.process)
    return res


# The report (Markdown on stdout).

class Answers:
    """The answers column of the tables; collects the phases whose answers
    were not all as expected, for the exit status."""

    def __init__(self) -> None:
        self.wrong: list[str] = []

    def cell(self, rs: list[dict], route: str, expected: str, label: str) -> str:
        """check_answers for every round's run: one text if all agree."""
        texts = []
        for k, r in enumerate(rs):
            text, ok = check_answers(r, route, expected)
            texts.append(text)
            if not ok:
                self.wrong.append(label if len(rs) == 1 else f"{label} (round {k + 1})")
        if len(set(texts)) == 1:
            return texts[0] + (f" (each of {len(rs)} rounds)" if len(rs) > 1 else "")
        return "; ".join(f"round {k + 1}: {t}" for k, t in enumerate(texts))


def measured(res: Results, sc: Scenario) -> dict:
    """A scenario's numbers: over the rounds (over_rounds) or its one run."""
    return res.agg[sc.name] if sc.stage == ROUNDS else res.runs[sc.name]


def route_of(res: Results, sc: Scenario) -> str:
    """The route template its answers are counted on in /metrics."""
    return res.eval_route if sc.route == EVAL else sc.route


def label_of(res: Results, sc: Scenario, a: dict) -> str:
    """Its table label, `a` being its numbers (measured)."""
    share = a["rps"] / res.agg[PACE_OF]["rps"] if sc.paced else None
    return sc.label.format(repeat=res.args.repeat, share=share)


def ratio_cell(values: list[float]) -> str:
    """The median of the per-round ratios and their range."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return (f"**{statistics.median(values):.2f}** "
            f"({min(values):.2f}–{max(values):.2f})")


def ratio_cells(res: Results, sc: Scenario, a: dict) -> tuple[str, str]:
    """Its requests/s and server CPU ratio cells, as Scenario.ratio says."""
    if sc.ratio == BASELINE:
        return "1.00", "1.00"
    if sc.ratio == ROUND:
        return ratio_cell(a["rps_ratios"]), ratio_cell(a["cpu_ratios"])
    base = res.agg[BASELINE_NAME]
    return (f"{ratio(a['rps'], base['rps']):.2f}",
            f"{ratio(a['server_us'], base['server_us']):.2f}")


def print_main_table(res: Results, answers: Answers) -> None:
    """The load server's phases: what ran, then one row per phase."""
    load = res.served["load"]
    base = res.agg[BASELINE_NAME]
    n_rounds = len(res.rounds)
    paced = next(measured(res, sc) for sc in shown("load") if sc.paced)
    print()
    print(f"flagbelt load test: {load.visible}-flag client view, {os.cpu_count()} CPUs shared "
          f"by wrk and the server, all on 127.0.0.1. Throughput phases: wrk "
          f"{base['wrk']} each, {n_rounds} interleaved round"
          f"{'s' if n_rounds != 1 else ''} of {', '.join(sc.name for sc in in_rounds())} "
          f"(server key: all {load.target.ofrep_flags} flags, the client view and `base`); "
          "a ratio is taken to the /healthz of the same round, and the table gives "
          "the **median of the per-round ratios** (min–max over the rounds in "
          "parentheses); requests/s, CPU µs/req, p50 and p99 are medians over the "
          f"rounds. Paced: one run after the rounds, wrk {paced['wrk']}, "
          f"0-{2 * res.args.pace_delay_ms} ms between requests per connection. CPU µs/req: "
          "process CPU time (user + system) during the phase over wrk's completed requests.")
    print()
    print("| route | requests/s | ratio to /healthz | server CPU µs/req | ratio to /healthz "
          "| client CPU µs/req | p50 | p99 | answers |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for sc in shown("load"):
        a = measured(res, sc)
        label = label_of(res, sc, a)
        cell = answers.cell(a["rounds"] if sc.stage == ROUNDS else [a], route_of(res, sc),
                            sc.expected, label)
        rps_cell, cpu_cell = ratio_cells(res, sc, a)
        print(f"| {label} | {a['rps']:,.0f} | {rps_cell} | {a['server_us']:.1f} | "
              f"{cpu_cell} | {a['client_us']:.1f} | {fmt_ms(a['p50_us'])} | "
              f"{fmt_ms(a['p99_us'])} | {cell} |")
    print()
    print("¹ Its ratios are to the median /healthz of the rounds, measured up to a "
          "minute earlier: they carry the machine's drift (±15 %) that the "
          "same-round ratios above do not.")


def print_round_lines(res: Results) -> None:
    """The per-round ratios, the baseline's own per-round numbers (the drift
    the ratios remove) and each round's noise."""
    base = res.agg[BASELINE_NAME]
    print()
    print(f"Per-round ratios to the same round's /healthz (rounds 1..{len(res.rounds)}):")
    print()
    for sc in in_rounds():
        if sc.ratio == ROUND:
            a = res.agg[sc.name]
            print(f"- {sc.name}: requests/s " + " ".join(f"{x:.2f}" for x in a["rps_ratios"])
                  + "; server CPU " + " ".join(f"{x:.2f}" for x in a["cpu_ratios"]))
    print("- healthz itself (absolute): requests/s "
          + " ".join(f"{r['rps']:,.0f}" for r in base["rounds"])
          + "; server CPU µs/req "
          + " ".join(f"{r['server_us']:.1f}" for r in base["rounds"]))
    print("- other processes' CPU (max over the round's phases; a round well above 0 % "
          "was disturbed): " + " ".join(f"{max(r['other_cpu'] for r in rd.values()):.0%}"
                                        for rd in res.rounds))


def print_rss(res: Results) -> None:
    """The load server's RSS: idle, max sampled, VmHWM, and per phase."""
    load = res.served["load"]
    phases = [(sc.name, measured(res, sc)) for sc in shown("load")]
    peak = max(a["rss_max_kib"] for _, a in phases)
    print()
    print(f"Server RSS: {load.idle.get('VmRSS', 0) / 1024:.1f} MiB idle after preload; "
          f"{peak / 1024:.1f} MiB max sampled under load; "
          f"{load.hwm.get('VmHWM', 0) / 1024:.1f} MiB high-water mark (VmHWM).")
    print("Per phase (max VmRSS, over all rounds): " + ", ".join(
        f"{k} {a['rss_max_kib'] / 1024:.1f} MiB" for k, a in phases))


def print_demo_table(res: Results, answers: Answers) -> None:
    """The demo server's phases, one row each, and its RSS line against the
    target."""
    demo = res.served["demo"]
    rows = shown("demo")
    print()
    print(f"Demo environment (`flagbelt demo`, {demo.visible}-flag client view), "
          "new-context load (one run each):")
    print()
    print("| route | connections | requests/s | server CPU µs/req | client CPU µs/req "
          "| p50 | p99 | max VmRSS | answers |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for sc in rows:
        r = res.runs[sc.name]
        label = label_of(res, sc, r)
        cell = answers.cell([r], route_of(res, sc), sc.expected, f"demo: {label}")
        print(f"| {label} | {r['connections']} | {r['rps']:,.0f} | {r['server_us']:.1f} | "
              f"{r['client_us']:.1f} | {fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | "
              f"{r['rss_max_kib'] / 1024:.1f} MiB | {cell} |")
    print()
    top = max((res.runs[sc.name] for sc in rows), key=lambda r: r["rss_max_kib"])
    hwm = demo.hwm.get("VmHWM", 0)
    print(f"Demo environment RSS: idle {demo.idle.get('VmRSS', 0) / 1024:.1f} MiB, "
          f"max under load {top['rss_max_kib'] / 1024:.1f} MiB ({top['connections']} "
          f"connections); VmHWM {hwm / 1024:.1f} MiB "
          f"(target ≤ 40 MiB: {'met' if hwm <= 40 * 1024 else 'NOT met'}).")


def print_other_cpu(res: Results) -> None:
    """The noise line: CPU used by other processes during each phase."""
    print()
    print("CPU used by other processes during each phase (noise; share of all "
          "CPUs; per round for the rounds): "
          + ", ".join(f"{sc.name} " + "/".join(f"{r['other_cpu']:.0%}"
                                               for r in res.agg[sc.name]["rounds"])
                      for sc in in_rounds())
          + ", " + ", ".join(f"{k} {r['other_cpu']:.0%}" for k, r in res.runs.items())
          + ".")


def print_report(res: Results) -> None:
    """The Markdown report; exits non-zero (after printing it all) if any
    phase of any round got an unexpected answer."""
    answers = Answers()
    print_main_table(res, answers)
    print_round_lines(res)
    print_rss(res)
    print_demo_table(res, answers)
    print_other_cpu(res)
    if answers.wrong:
        raise SystemExit(f"unexpected answers in: {answers.wrong} (see the answers column)")


def parse_args() -> argparse.Namespace:
    """The command line (loadtest/run passes its arguments on unchanged)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=4, help="seconds per phase (default 4)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the throughput phases (healthz, random, repeat, "
                         "revalidate, ofrep), each eval phase compared with its round's "
                         "healthz (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--connections", type=int, default=32,
                    help="wrk connections of the throughput phases (default 32)")
    ap.add_argument("--flags", type=int, default=50, help="flags in the environment (default 50)")
    ap.add_argument("--repeat", type=int, default=16,
                    help="contexts in the repeating set (default 16)")
    ap.add_argument("--pace-delay-ms", type=int, default=20,
                    help="mean pause per connection between requests in the paced phases "
                         "(default 20; fewer connections with a shorter pause)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "flagbelt"))
    args = ap.parse_args()
    if not 1 <= args.rounds <= 45:
        ap.error("--rounds must be 1..45 (each round's two new-context runs get their own "
                 "blocks of keys)")
    if args.duration < 1:
        ap.error("--duration must be at least 1 (seconds)")
    return args


def main() -> None:
    """Checks the command line and wrk, runs the scenarios in a temporary
    folder, prints the report; stops every server and removes the folder
    however it ends."""
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (loadtest/run installs it)")
    work = tempfile.mkdtemp(prefix="flagbelt-load-")
    started: list[subprocess.Popen] = []  # every server, stopped however this ends
    try:
        print_report(run_scenarios(args, work, started))
    finally:
        for server in started:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
