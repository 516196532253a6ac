#!/usr/bin/env python3
"""What the web application firewall costs: the api directly vs through nginx + ModSecurity + CRS.

SECURITY-REQUIREMENTS T3 / PCI DSS 6.4.2 put a WAF in front of the api in production; this
measures its price on the same machine, in the same run, against the same running platform:

1. saturation (closed loop, wrk, fixed concurrency, bounded duration) of the no-op `GET /livez`
   and of payments (`POST /v1/payment_intents`, pm_card_visa, confirm=true), on three paths:
   - `direct`  the api's own TLS listener;
   - `proxy`   nginx with the production configuration but ModSecurity switched off (what the
               extra TLS termination and the re-encrypted hop cost);
   - `waf`     nginx + ModSecurity v3 + OWASP CRS exactly as deploy/nginx renders it;
2. latency at a fixed load (open loop): payments at --load-fraction of the slowest path's
   saturation rate, latency measured from each request's *scheduled* send time (no coordinated
   omission), p50/p90/p99 per path.

Usage::

    .venv/bin/python bench/waf.py [--duration 20] [--concurrency 16] [--out bench/results-waf.json]

Results: a Markdown table on stdout and JSON in --out. Exit status 0 when every phase was
measured, 2 when a run could not be measured (missing nginx/ModSecurity/CRS, a failed sanity
payment, a false positive of the WAF on the benchmark's own requests), 130 on Ctrl-C.

Server lifecycle, the asyncio HTTP client and wrk installation are bench/run.py's (imported,
unchanged); this file adds the edge, p90, and its own wrk script and open-loop worker. The
worker runs in its own process: `waf.py _worker` reads a JSON spec on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

import run as harness  # bench/run.py: server lifecycle, RawClient, wrk installation

REPO = Path(__file__).resolve().parent.parent
RENDER = REPO / "deploy" / "nginx" / "render.py"
MODSECURITY_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_RULES_DIR = Path("/usr/share/modsecurity-crs/rules")
WORKER_ARG = "_worker"

NOOP_PATH = "/livez"
PAY_PATH = "/v1/payment_intents"
PAY_BODY = "amount=2000&currency=usd&payment_method=pm_card_visa&confirm=true"
USER_AGENT = "bastionpay-bench-waf"
PATHS = ("direct", "proxy", "waf")
MAX_OPEN_LOOP_REQUESTS = 100_000
OPEN_LOOP_CONNECTIONS = 64

log = harness.log


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class Phase:
    path: str  # direct | proxy | waf
    workload: str  # noop | payments | payments-open-loop
    generator: str
    duration_s: float
    requests: int
    succeeded: int
    rate_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: dict[str, int]
    concurrency: int | None = None
    target_rate_per_s: float | None = None
    rounds: int = 1
    api_cpu_s: float = 0.0  # CPU of the platform's process group during the phase
    edge_cpu_s: float = 0.0  # CPU of nginx's process group (master + workers)
    api_cpu_ms_per_ok: float | None = None
    edge_cpu_ms_per_ok: float | None = None
    latencies_ms: list[float] | None = None  # open loop only (merged across rounds, then dropped)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def finish(self, has_edge: bool) -> None:
        """CPU per successful request: steadier than rates on a shared machine."""
        if self.succeeded:
            self.api_cpu_ms_per_ok = round(self.api_cpu_s * 1000 / self.succeeded, 3)
            if has_edge:
                self.edge_cpu_ms_per_ok = round(self.edge_cpu_s * 1000 / self.succeeded, 3)


def median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    return present[mid] if len(present) % 2 else round((present[mid - 1] + present[mid]) / 2, 3)


def merge(rounds: list[Phase]) -> Phase:
    """One phase from its interleaved rounds.

    Counts, durations and CPU add up. Open-loop latencies are merged exactly (the worker returns
    every sample). wrk reports only percentiles per round, so a closed-loop percentile is the
    median of the rounds' values; the rounds are equally long, so this is close to the true one.
    """
    first = rounds[0]
    errors: dict[str, int] = {}
    for r in rounds:
        for kind, n in r.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    duration = sum(r.duration_s for r in rounds)
    ok = sum(r.succeeded for r in rounds)
    merged = Phase(
        path=first.path,
        workload=first.workload,
        generator=first.generator,
        duration_s=round(duration, 3),
        requests=sum(r.requests for r in rounds),
        succeeded=ok,
        rate_per_s=round(ok / duration, 2) if duration else 0.0,
        p50_ms=median([r.p50_ms for r in rounds]),
        p90_ms=median([r.p90_ms for r in rounds]),
        p99_ms=median([r.p99_ms for r in rounds]),
        max_ms=max((r.max_ms for r in rounds if r.max_ms is not None), default=None),
        errors=errors,
        concurrency=first.concurrency,
        target_rate_per_s=first.target_rate_per_s,
        rounds=len(rounds),
        api_cpu_s=round(sum(r.api_cpu_s for r in rounds), 3),
        edge_cpu_s=round(sum(r.edge_cpu_s for r in rounds), 3),
    )
    samples = [r.latencies_ms for r in rounds]
    if all(sample is not None for sample in samples):
        every = sorted(v for sample in samples for v in sample or [])
        merged.p50_ms = harness.percentile(every, 50)
        merged.p90_ms = harness.percentile(every, 90)
        merged.p99_ms = harness.percentile(every, 99)
        merged.max_ms = every[-1] if every else None
    return merged


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    phases: list[Phase] = field(default_factory=list)
    ratios: dict[str, float | None] = field(default_factory=dict)
    waf_audit_entries: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def find(self, path: str, workload: str) -> Phase | None:
        return next((p for p in self.phases if (p.path, p.workload) == (path, workload)), None)


# --------------------------------------------------------------------------------------------
# Load generators: wrk (closed loop) with p90, and a Python open-loop worker
# --------------------------------------------------------------------------------------------

# run.py's wrk script reports p50/p95/p99; this one reports p50/p90/p99.
LUA = r"""
wrk.method = {method}
{body_line}
{header_lines}
local expect = {expect}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; h4 = 0; h5 = 0; hother = 0; badbody = 0 end
function response(status, headers, body)
  if status == 200 then
    if body ~= nil and string.find(body, expect) then ok = ok + 1 else badbody = badbody + 1 end
  elseif status >= 500 then h5 = h5 + 1
  elseif status >= 400 then h4 = h4 + 1
  else hother = hother + 1 end
end
function done(summary, latency, requests)
  local t = {{ok = 0, h4 = 0, h5 = 0, hother = 0, badbody = 0}}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"ok":%d,"h4":%d,"h5":%d,"hother":%d,' ..
    '"badbody":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50":%.1f,"p90":%.1f,"p99":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, t.ok, t.h4, t.h5, t.hother, t.badbody,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_script(req: harness.RequestSpec) -> str:
    if not re.fullmatch(r"[a-z_]+", req.expect_status):
        raise BenchError(f"unsupported expected status {req.expect_status!r}")
    lua = harness.lua_str
    headers = "\n".join(f"wrk.headers[{lua(k)}] = {lua(v)}" for k, v in req.headers.items())
    return LUA.format(
        method=lua(req.method),
        body_line=f"wrk.body = {lua(req.body)}" if req.body else "",
        header_lines=headers,
        expect=lua(f'"status"%s*:%s*"{req.expect_status}"'),
    )


def ms(us: float) -> float:
    return round(us / 1000.0, 3)


def run_wrk(
    path: str, workload: str, req: harness.RequestSpec, concurrency: int, duration: int, tmp: Path
) -> Phase:
    script = tmp / f"{path}-{workload}.lua"
    script.write_text(wrk_script(req))
    cpus = len(os.sched_getaffinity(0))
    threads = next(t for t in range(min(cpus, concurrency), 0, -1) if concurrency % t == 0)
    cmd = [
        "wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{duration}s",
        "--timeout", f"{int(harness.REQUEST_TIMEOUT_S)}s", "-s", str(script), req.url,
    ]  # fmt: skip
    rc, out, err = harness.run_bounded(cmd, None, duration + harness.REQUEST_TIMEOUT_S + 30)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if rc != 0 or line is None:
        raise BenchError(f"wrk failed (rc={rc}): {err.strip()[-800:] or out.strip()[-800:]}")
    d = json.loads(line.removeprefix("BENCHJSON "))
    seconds = d["duration_us"] / 1e6
    answered = d["requests"] > 0
    errors = {
        "http_4xx": d["h4"], "http_5xx": d["h5"], "http_other": d["hother"],
        "unexpected_body": d["badbody"], "connect": d["connect"], "read": d["read"],
        "write": d["write"], "timeout": d["timeout"],
    }  # fmt: skip
    return Phase(
        path=path,
        workload=workload,
        generator="wrk",
        duration_s=round(seconds, 3),
        requests=d["requests"] + d["connect"] + d["read"] + d["write"] + d["timeout"],
        succeeded=d["ok"],
        rate_per_s=round(d["ok"] / seconds, 2) if seconds > 0 else 0.0,
        p50_ms=ms(d["p50"]) if answered else None,
        p90_ms=ms(d["p90"]) if answered else None,
        p99_ms=ms(d["p99"]) if answered else None,
        max_ms=ms(d["max"]) if answered else None,
        errors=errors,
        concurrency=concurrency,
    )


async def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Fixed arrival schedule (bench/run.py's method); latency from the scheduled send time."""
    req = harness.RequestSpec(**spec["request"])
    rate, duration, timeout = float(spec["rate"]), float(spec["duration"]), float(spec["timeout"])
    n = max(1, min(MAX_OPEN_LOOP_REQUESTS, round(rate * duration)))
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    outcomes: list[str | None] = []
    pending: dict[asyncio.Task[None], float] = {}
    client = harness.RawClient(req.url, spec["ca_file"], OPEN_LOOP_CONNECTIONS, timeout)

    async def fire(scheduled: float) -> None:
        outcome = await client.request(req)
        latencies.append(loop.time() - scheduled)
        outcomes.append(outcome)

    try:
        prime = harness.RequestSpec("prime", spec["prime_url"], "GET", {}, None, "ok")
        await asyncio.gather(*(client.request(prime) for _ in range(int(spec["prime"]))))
        t0 = loop.time() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            task = asyncio.create_task(fire(scheduled))
            pending[task] = scheduled
            task.add_done_callback(lambda t: pending.pop(t, None))
        still: set[asyncio.Task[None]] = set()
        if pending:
            _, still = await asyncio.wait(set(pending), timeout=timeout + 5.0)
        end = loop.time()
        latencies.extend(end - pending[t] for t in still if t in pending)  # censored, not dropped
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    finally:
        await client.aclose()
    latencies.sort()
    errors: dict[str, int] = {"unfinished": len(still)}
    for outcome in outcomes:
        if outcome is not None:
            errors[outcome] = errors.get(outcome, 0) + 1
    elapsed = n / rate

    def pct(p: float) -> float | None:
        value = harness.percentile(latencies, p)
        return None if value is None else round(value * 1000.0, 3)

    ok = sum(1 for o in outcomes if o is None)
    return {
        "duration_s": round(elapsed, 3),
        "requests": len(outcomes) + len(still),
        "succeeded": ok,
        "rate_per_s": round(ok / elapsed, 2),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": pct(100),
        "errors": errors,
        "latencies_ms": [round(v * 1000.0, 3) for v in latencies],
    }


def worker_main() -> int:
    spec = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(asyncio.run(open_loop(spec))) + "\n")
    return 0


def run_open_loop(
    path: str, req: harness.RequestSpec, prime_url: str, ca_file: str, rate: float, duration: int
) -> Phase:
    spec = {
        "request": asdict(req), "rate": rate, "duration": duration,
        "timeout": harness.REQUEST_TIMEOUT_S, "ca_file": ca_file, "prime_url": prime_url,
        "prime": 16,
    }  # fmt: skip
    cmd = [sys.executable, str(Path(__file__).resolve()), WORKER_ARG]
    rc, out, err = harness.run_bounded(
        cmd, json.dumps(spec), duration + 2 * harness.REQUEST_TIMEOUT_S + 30
    )
    if rc != 0 or not out.strip():
        raise BenchError(f"open-loop worker failed (rc={rc}): {err.strip()[-800:]}")
    data = json.loads(out.strip().splitlines()[-1])
    return Phase(
        path=path,
        workload="payments-open-loop",
        generator="python-open-loop (bench/run.py RawClient)",
        target_rate_per_s=round(rate, 2),
        **data,
    )


# --------------------------------------------------------------------------------------------
# The edge: render deploy/nginx and run nginx in its own process group
# --------------------------------------------------------------------------------------------


@dataclass
class EdgeProc:
    name: str
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def audit_entries(self) -> list[dict[str, Any]]:
        path = self.prefix / "logs" / "modsec_audit.json"
        with contextlib.suppress(FileNotFoundError):
            lines = path.read_bytes().split(b"\n")[:-1]
            return [json.loads(ln.decode("utf-8", errors="replace")) for ln in lines if ln]
        return []

    def stop(self) -> None:
        pgid = self.proc.pid
        for sig, wait_s in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # no worker outlives the master


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def edge_certificate(platform_tls: Path, out: Path) -> tuple[Path, Path]:
    """A certificate for the edge from the platform's development CA (as the e2e tests do)."""
    try:
        from bastionpay.crypto.devpki import issue_leaf  # noqa: PLC0415
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
        from bastionpay.crypto.devpki import issue_leaf  # noqa: PLC0415
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    ca = x509.load_pem_x509_certificate((platform_tls / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((platform_tls / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BenchError("the development CA key is not an EC key")
    cert_pem, key_pem = issue_leaf(ca, key, common_name="bastionpay-edge", server=True)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    (out / "edge.pem").write_bytes(cert_pem)
    (out / "edge.key").touch(mode=0o600)
    (out / "edge.key").write_bytes(key_pem)
    return out / "edge.pem", out / "edge.key"


def start_edge(
    name: str, prefix: Path, upstream: str, cert: Path, key: Path, ca_file: str, *, waf: bool
) -> EdgeProc:
    port = free_port()
    rendered = subprocess.run(
        [
            sys.executable, str(RENDER), "--listen", f"127.0.0.1:{port}", "--upstream", upstream,
            "--cert", str(cert), "--key", str(key), "--upstream-ca", ca_file,
            "--prefix", str(prefix),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if rendered.returncode != 0:
        raise BenchError(f"render.py failed: {rendered.stderr.strip()}")
    if not waf:
        # The same configuration with the WAF switched off: isolates ModSecurity's cost from the
        # cost of the proxy itself (second TLS termination, re-encrypted upstream hop).
        conf = prefix / "nginx.conf"
        text = conf.read_text()
        if text.count("        modsecurity on;\n") != 1:
            raise BenchError("rendered nginx.conf no longer has exactly one `modsecurity on;`")
        conf.write_text(text.replace("        modsecurity on;\n", "        modsecurity off;\n"))
    nginx = shutil.which("nginx") or "nginx"
    with (prefix / "logs" / "nginx.out").open("ab") as sink:
        proc = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    edge = EdgeProc(name, prefix, port, proc)
    deadline = time.monotonic() + 20.0
    context = ssl.create_default_context(cafile=ca_file)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = (prefix / "logs" / "nginx.out").read_text(errors="replace")
            raise BenchError(f"nginx ({name}) exited with {proc.returncode}: {out[-1500:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(edge.url + NOOP_PATH, verify=context, timeout=5).status_code == 200:
                return edge
        time.sleep(0.1)
    edge.stop()
    raise BenchError(f"nginx ({name}) did not answer {NOOP_PATH} with 200 within 20 s")


def missing_components() -> str | None:
    crs_init = CRS_RULES_DIR / "REQUEST-901-INITIALIZATION.conf"
    checks = (
        ("nginx", shutil.which("nginx") is not None),
        (str(MODSECURITY_MODULE), MODSECURITY_MODULE.is_file()),
        (f"the OWASP CRS in {CRS_RULES_DIR}", crs_init.is_file()),
    )
    return ", ".join(what for what, ok in checks if not ok) or None


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    duration: int
    load_duration: int
    warmup: int
    concurrency: int
    load_fraction: float
    rounds: int
    out: Path
    keep: bool
    allow_install: bool


def requests_for(base: str, secret_key: str) -> tuple[harness.RequestSpec, harness.RequestSpec]:
    common = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    noop = harness.RequestSpec("noop", base + NOOP_PATH, "GET", common, None, "ok")
    pay = harness.RequestSpec(
        "payments",
        base + PAY_PATH,
        "POST",
        {
            **common,
            "Authorization": f"Bearer {secret_key}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        PAY_BODY,
        "succeeded",
    )
    return noop, pay


def sanity_payment(url: str, pay: harness.RequestSpec, ca_file: str, label: str) -> None:
    resp = httpx.post(
        url,
        headers=pay.headers,
        content=pay.body,
        verify=ssl.create_default_context(cafile=ca_file),
        timeout=30,
    )
    if harness.classify_response(resp.status_code, resp.content, pay.expect_status) is not None:
        raise BenchError(f"sanity payment via {label}: HTTP {resp.status_code} {resp.text[:300]}")


@dataclass
class Targets:
    """What the phases run against: the platform, the two nginx instances, the requests."""

    server: harness.Server
    ca_file: str
    specs: dict[str, tuple[harness.RequestSpec, harness.RequestSpec]]  # path -> (noop, pay)
    edges: dict[str, EdgeProc]

    def edge_cpu(self, path: str) -> float:
        edge = self.edges.get(path)
        return harness.group_cpu_s(edge.proc.pid) if edge else 0.0

    def set_cpu(self, phase: Phase, api0: float, edge0: float) -> None:
        phase.api_cpu_s = round(harness.group_cpu_s(self.server.proc.pid) - api0, 3)
        phase.edge_cpu_s = round(self.edge_cpu(phase.path) - edge0, 3)


def start_targets(tmp: Path, stack: contextlib.ExitStack) -> Targets:
    data_dir = tmp / "data"
    data_dir.mkdir()
    # The api believes X-Forwarded-For from the local proxy, as in production (edge issue).
    os.environ["BASTIONPAY_TRUSTED_PROXIES"] = "127.0.0.1/32"
    server = harness.launch_server(data_dir, tmp / "server.log", None)
    stack.callback(harness.stop_server, server, "bench-waf")
    harness.wait_run_json(server, data_dir)
    harness.wait_ready(server)
    info = server.info
    ca_file, api_url = str(info["ca_file"]), str(info["api_url"]).rstrip("/")
    log(f"platform ready at {api_url}")
    cert, key = edge_certificate(Path(ca_file).parent, tmp / "edge-tls")
    edges: dict[str, EdgeProc] = {}
    for name in ("proxy", "waf"):
        edge = start_edge(
            name, tmp / f"edge-{name}", api_url.removeprefix("https://"), cert, key, ca_file,
            waf=name == "waf",
        )  # fmt: skip
        stack.callback(edge.stop)
        edges[name] = edge
    log(f"nginx without WAF at {edges['proxy'].url}; with ModSecurity + CRS at {edges['waf'].url}")
    bases = {"direct": api_url, **{name: edge.url for name, edge in edges.items()}}
    specs = {p: requests_for(bases[p], str(info["secret_key"])) for p in PATHS}
    for p in PATHS:
        sanity_payment(specs[p][1].url, specs[p][1], ca_file, p)
    time.sleep(0.5)
    if edges["waf"].audit_entries():
        raise BenchError(
            "the WAF logged the benchmark's own requests (a false positive would skew the "
            f"numbers): {json.dumps(edges['waf'].audit_entries())[:1500]}"
        )
    return Targets(server, ca_file, specs, edges)


def saturate(opts: Options, t: Targets, path: str, workload: str, seconds: int, tmp: Path) -> Phase:
    req = t.specs[path][0 if workload == "noop" else 1]
    api0, edge0 = harness.group_cpu_s(t.server.proc.pid), t.edge_cpu(path)
    phase = run_wrk(path, workload, req, opts.concurrency, seconds, tmp)
    t.set_cpu(phase, api0, edge0)
    t.server.check_alive()
    return phase


def at_fixed_load(opts: Options, t: Targets, path: str, rate: float, seconds: int) -> Phase:
    noop, pay = t.specs[path]
    api0, edge0 = harness.group_cpu_s(t.server.proc.pid), t.edge_cpu(path)
    phase = run_open_loop(path, pay, noop.url, t.ca_file, rate, seconds)
    t.set_cpu(phase, api0, edge0)
    t.server.check_alive()
    return phase


def interleaved(
    opts: Options, t: Targets, run_one: Callable[[str, int], Phase], total: int
) -> list[Phase]:
    """Each path's phase as --rounds slices, interleaved (direct, proxy, waf, direct, ...).

    The machine is shared (two cores, other work, the SQLite file growing by thousands of
    payments): slicing and interleaving spreads any drift over the three paths instead of
    charging it to whichever ran last.
    """
    seconds = max(1, round(total / opts.rounds))
    slices: dict[str, list[Phase]] = {p: [] for p in PATHS}
    for _ in range(opts.rounds):
        for p in PATHS:
            slices[p].append(run_one(p, seconds))
            time.sleep(0.5)
    phases = []
    for p in PATHS:
        phase = merge(slices[p])
        phase.finish(has_edge=p in t.edges)
        log(describe(phase))
        phases.append(phase)
    return phases


def measure(opts: Options, report: Report, tmp: Path) -> None:
    with contextlib.ExitStack() as stack:
        t = start_targets(tmp, stack)
        if opts.warmup:
            log(f"warm-up {opts.warmup}s per path")
            for p in PATHS:
                saturate(opts, t, p, "payments", opts.warmup, tmp)
        for workload in ("noop", "payments"):
            seconds = opts.duration / opts.rounds
            log(f"saturation, {workload}: {opts.rounds} slices of {seconds:.0f}s per path")

            def sat(path: str, seconds: int, workload: str = workload) -> Phase:
                return saturate(opts, t, path, workload, seconds, tmp)

            report.phases += interleaved(opts, t, sat, opts.duration)
        slowest = min(ph.rate_per_s for ph in report.phases if ph.workload == "payments")
        if slowest <= 0:
            raise BenchError("a path completed no payment at saturation")
        rate = opts.load_fraction * slowest
        log(f"open loop: payments at {rate:.1f}/s, {opts.rounds} slices per path")

        def fixed(path: str, seconds: int) -> Phase:
            return at_fixed_load(opts, t, path, rate, seconds)

        report.phases += interleaved(opts, t, fixed, opts.load_duration)
        for phase in report.phases:
            phase.latencies_ms = None  # merged already; keeps the JSON small
        report.waf_audit_entries = len(t.edges["waf"].audit_entries())


def describe(p: Phase) -> str:
    errs = {k: v for k, v in p.errors.items() if v}
    return (
        f"{p.path} {p.workload}: {p.rate_per_s:.1f}/s ok, p50 {fmt(p.p50_ms)} p90 "
        f"{fmt(p.p90_ms)} p99 {fmt(p.p99_ms)} ms, errors {errs or 0}, api cpu "
        f"{fmt(p.api_cpu_ms_per_ok)} ms/ok, nginx cpu {fmt(p.edge_cpu_ms_per_ok)} ms/ok"
    )


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def ratio(a: Phase | None, b: Phase | None) -> float | None:
    if a is None or b is None or not b.rate_per_s:
        return None
    return round(a.rate_per_s / b.rate_per_s, 4)


def evaluate(report: Report) -> None:
    f = report.find
    report.ratios = {
        "payments_waf_vs_direct": ratio(f("waf", "payments"), f("direct", "payments")),
        "payments_proxy_vs_direct": ratio(f("proxy", "payments"), f("direct", "payments")),
        "payments_waf_vs_proxy": ratio(f("waf", "payments"), f("proxy", "payments")),
        "noop_waf_vs_direct": ratio(f("waf", "noop"), f("direct", "noop")),
        "noop_proxy_vs_direct": ratio(f("proxy", "noop"), f("direct", "noop")),
    }
    for phase in report.phases:
        if phase.error_total:
            report.warnings.append(
                f"{phase.path} {phase.workload}: {phase.error_total} failed {phase.errors}"
            )
    if report.waf_audit_entries:
        report.warnings.append(
            f"the WAF audit log has {report.waf_audit_entries} entries for benchmark traffic"
        )


def markdown(report: Report) -> str:
    c, m = report.config, report.machine
    lines = [
        f"Measured {m['date']} on {m['nproc']} CPU ({m['cpu_model']}), Python {m['python']}, "
        f"git {m['git']}, load average {m['loadavg_before'][0]} before and "
        f"{m.get('loadavg_after', ['-'])[0]} after; wrk c={c['concurrency']}, "
        f"{c['duration_s']} s per saturation phase; open loop {c['load_duration_s']} s at "
        f"{c['load_fraction']:.0%} of the slowest path's payment saturation; every phase in "
        f"{c['rounds']} slices interleaved across the paths. `direct`: the api's listener; "
        "`proxy`: nginx (TLS + re-encrypted hop) with ModSecurity off; `waf`: nginx + "
        "ModSecurity v3 + OWASP CRS as deploy/nginx renders it.",
        "",
        "| path | workload | ok/s | p50 ms | p90 ms | p99 ms | errors | api CPU ms/ok "
        "| nginx CPU ms/ok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in report.phases:
        label = {
            "noop": f"no-op `GET {NOOP_PATH}` (saturation)",
            "payments": "payments (saturation)",
            "payments-open-loop": f"payments open loop @ {p.target_rate_per_s}/s",
        }[p.workload]
        lines.append(
            f"| {p.path} | {label} | {p.rate_per_s:.1f} | {fmt(p.p50_ms)} | {fmt(p.p90_ms)} | "
            f"{fmt(p.p99_ms)} | {p.error_total} | {fmt(p.api_cpu_ms_per_ok)} | "
            f"{fmt(p.edge_cpu_ms_per_ok)} |"
        )
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    for name, value in report.ratios.items():
        lines.append(f"| {name} | {'-' if value is None else f'{value:.1%}'} |")
    f = report.find
    for path in ("proxy", "waf"):
        a, b = f(path, "payments-open-loop"), f("direct", "payments-open-loop")
        if a and b and None not in (a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms):
            lines.append(
                f"| latency added at fixed load, {path} vs direct (p50 / p90 / p99) | "
                f"{(a.p50_ms or 0) - (b.p50_ms or 0):+.2f} / "
                f"{(a.p90_ms or 0) - (b.p90_ms or 0):+.2f} / "
                f"{(a.p99_ms or 0) - (b.p99_ms or 0):+.2f} ms |"
            )
    lines.append(
        f"| WAF audit-log entries caused by benchmark traffic | {report.waf_audit_entries} |"
    )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    git = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=False, timeout=10,
        ).stdout.strip() or None  # fmt: skip
    versions: dict[str, str | None] = {}
    for name, cmd in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "--version"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
            text = (proc.stderr or proc.stdout).strip().splitlines()
            versions[name] = text[0] if text else None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git,
        **versions,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Cost of the WAF: api direct vs nginx + ModSecurity")
    p.add_argument("--duration", type=int, default=20, help="seconds per saturation phase")
    p.add_argument("--load-duration", type=int, default=None, help="open-loop seconds")
    p.add_argument("--warmup", type=int, default=3, help="warm-up seconds per path (0: none)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--load-fraction", type=float, default=0.6)
    p.add_argument(
        "--rounds", type=int, default=4, help="interleaved slices per phase (drift control)"
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results-waf.json")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 600 or not 1 <= args.concurrency <= 512:
        p.error("--duration must be 1..600 and --concurrency 1..512")
    if args.load_duration is not None and not 1 <= args.load_duration <= 600:
        p.error("--load-duration must be 1..600")
    if not 0 < args.load_fraction <= 1 or not 0 <= args.warmup <= 60:
        p.error("--load-fraction must be in (0, 1] and --warmup 0..60")
    if not 1 <= args.rounds <= 20:
        p.error("--rounds must be 1..20")
    return args


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if argv[:1] == [WORKER_ARG]:
        return worker_main()
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    opts = Options(
        duration=args.duration,
        load_duration=args.load_duration or args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        load_fraction=args.load_fraction,
        rounds=args.rounds,
        out=args.out,
        keep=args.keep,
        allow_install=not args.no_install,
    )
    report = Report(
        machine=machine_info(),
        config={
            "duration_s": opts.duration,
            "load_duration_s": opts.load_duration,
            "warmup_s": opts.warmup,
            "concurrency": opts.concurrency,
            "load_fraction": opts.load_fraction,
            "rounds": opts.rounds,
            "paranoia_level": 1,
            "request_timeout_s": harness.REQUEST_TIMEOUT_S,
        },
    )
    missing = missing_components()
    wrk_ok, wrk_note = harness.ensure_wrk(opts.allow_install)
    if missing or not wrk_ok:
        print(f"error: cannot measure: {missing or wrk_note}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bastionpay-bench-waf-"))
    try:
        measure(opts, report, tmp)
    except (BenchError, harness.HarnessError, OSError, subprocess.SubprocessError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        log(f"ERROR {report.error}")
    finally:
        if opts.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    # Other work on a shared machine shows up here; compare runs only at similar load.
    report.machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    evaluate(report)
    md = markdown(report)
    doc = {"schema": 1, **asdict(report), "markdown": md}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(doc, indent=2) + "\n")
    print("\n" + md + "\n", flush=True)
    for warning in report.warnings:
        print(f"WARN  {warning}")
    log(f"results written to {opts.out}")
    return 2 if report.error else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("\ninterrupted; nginx and the platform were stopped", file=sys.stderr)
        sys.exit(130)
