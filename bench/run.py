#!/usr/bin/env python3
"""BastionPay benchmark harness.

Starts the platform (``python -m bastionpay up``) once per backend, then measures, against the
same running server:

1. saturation (closed loop, fixed concurrency, bounded duration): the no-op ``GET /livez``
   rate and latency, then the payment (``POST /v1/payment_intents``, confirm + automatic
   capture) rate and latency, and the ratio payments/s / no-op/s;
2. latency at load (open loop): payments at a fixed arrival rate of 60 % of the measured payment
   saturation rate, latency measured from each request's *scheduled* send time (no coordinated
   omission).

Usage (see bench/README.md)::

    .venv/bin/python bench/run.py [--backend sqlite|postgresql|both] [--duration 20]
                                  [--concurrency 16] [--out bench/results.json]

Exit status: 0 all targets PASS, 1 a target FAILed, 2 a run could not be measured, 130 on Ctrl-C.

The same file is also the Python load generator: ``run.py _worker`` reads a JSON spec on stdin
and writes one JSON result line on stdout (it always runs in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parent.parent
WORKER_ARG = "_worker"

NOOP_PATH = "/livez"
PAY_PATH = "/v1/payment_intents"
PAY_BODY = "amount=2000&currency=usd&payment_method=pm_card_visa&confirm=true"

RATIO_TARGET = 0.10  # payments/s must be >= 10 % of the no-op rate
P99_TARGET_MS = 50.0  # p99 at 60 % of payment saturation must be <= 50 ms

REQUEST_TIMEOUT_S = 10.0  # per request, both generators
MAX_OPEN_LOOP_REQUESTS = 200_000  # hard cap on requests scheduled by one open-loop phase
MAX_OPEN_LOOP_CONNECTIONS = 256
STARTUP_TIMEOUT_S = 120.0
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("BASTIONPAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LIST_PATH = "/v1/payment_intents?limit=10"
# Overload phase: payments at the latency phase's rate plus lists at this multiple of the payment
# saturation rate, together well beyond what the process can serve (edge issue, item 4).
OVERLOAD_LIST_FACTOR = 2.0

ERROR_KINDS = (
    "http_4xx",
    "http_5xx",
    "http_other",  # any other non-200 status (1xx/2xx/3xx)
    "unexpected_body",  # 200 whose JSON "status" is not the expected one
    "connect",
    "read",
    "write",
    "timeout",
    "other",
    "unfinished",  # open loop only: still in flight when the phase's grace period ended
)

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Shared data shapes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSpec:
    name: str  # "noop" | "payments"
    url: str
    method: str
    headers: dict[str, str]
    body: str | None
    expect_status: str  # value of the response's JSON "status" that counts as a success


@dataclass
class PhaseResult:
    generator: str  # "wrk" | "python-closed-loop" | "python-open-loop"
    mode: str  # "closed" | "open"
    duration_s: float  # measured wall time of the phase
    requests: int  # finished attempts (responses + transport errors)
    succeeded: int  # 200 + expected JSON status
    rate_per_s: float  # succeeded / duration_s
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: dict[str, int]
    concurrency: int | None = None
    target_rate_per_s: float | None = None  # open loop
    sent: int | None = None  # open loop
    send_lag_p99_ms: float | None = None  # open loop: how late the generator sent (p99)
    generator_cpu_s: float | None = None
    server_cpu_s: float | None = None
    server_cpu_ms_per_ok: float | None = None  # server CPU per success: steadier than rates

    def set_server_cpu(self, cpu_s: float) -> None:
        self.server_cpu_s = round(cpu_s, 2)
        if self.succeeded:
            self.server_cpu_ms_per_ok = round(cpu_s * 1000.0 / self.succeeded, 3)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


def empty_errors() -> dict[str, int]:
    return dict.fromkeys(ERROR_KINDS, 0)


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --------------------------------------------------------------------------------------------
# Python generator (runs in a separate process: `run.py _worker`)
# --------------------------------------------------------------------------------------------


def classify_response(status: int, body: bytes, expect: str) -> str | None:
    """Return None for a success, else the error kind."""
    if status != 200:
        if 400 <= status < 500:
            return "http_4xx"
        if status >= 500:
            return "http_5xx"
        return "http_other"
    try:
        doc = json.loads(body)
    except ValueError:
        return "unexpected_body"
    if isinstance(doc, dict) and expect in (doc.get("status"), doc.get("object")):
        return None
    return "unexpected_body"


class HttpxClient:
    """httpx.AsyncClient (a full HTTP client; ~5x the CPU per request of RawClient)."""

    def __init__(self, ca_file: str | None, max_connections: int, timeout: float) -> None:
        verify: ssl.SSLContext | bool = False
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            verify=verify, limits=limits, timeout=httpx.Timeout(timeout)
        )

    async def request(self, req: RequestSpec) -> str | None:
        try:
            resp = await self._client.request(
                req.method, req.url, headers=req.headers, content=req.body or None
            )
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                return "connect"
            if isinstance(exc, httpx.TimeoutException):
                return "timeout"
            if isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError):
                return "read"
            if isinstance(exc, httpx.WriteError):
                return "write"
            return "other"
        return classify_response(resp.status_code, resp.content, req.expect_status)

    async def aclose(self) -> None:
        await self._client.aclose()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RawClient:
    """Minimal keep-alive HTTP/1.1 client on asyncio TLS streams, for one origin.

    It only needs to be correct for this benchmark's requests (status line, Content-Length or
    chunked bodies, Connection: close) and costs far less CPU per request than httpx, which
    matters on a 2-core machine shared with the server.
    """

    def __init__(
        self, base_url: str, ca_file: str | None, max_connections: int, timeout: float
    ) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._authority = parts.netloc
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=ca_file)
            if not ca_file:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._idle: list[Conn] = []
        self._all: set[asyncio.StreamWriter] = set()
        self._slots = asyncio.Semaphore(max_connections)
        self._timeout = timeout
        self._payloads: dict[tuple[str, str], bytes] = {}

    def _payload(self, req: RequestSpec) -> bytes:
        payload = self._payloads.get((req.name, req.url))
        if payload is None:
            path = urlsplit(req.url)
            target = path.path + (f"?{path.query}" if path.query else "")
            body = (req.body or "").encode()
            lines = [f"{req.method} {target} HTTP/1.1", f"Host: {self._authority}"]
            lines += ["User-Agent: bastionpay-bench", "Accept: */*"]
            lines += [f"{k}: {v}" for k, v in req.headers.items()]
            if body or req.method != "GET":
                lines.append(f"Content-Length: {len(body)}")
            payload = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
            self._payloads[req.name, req.url] = payload
        return payload

    async def request(self, req: RequestSpec) -> str | None:
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._exchange(req)
            except TimeoutError:
                return "timeout"

    def _checkout(self) -> Conn | None:
        while self._idle:
            conn = self._idle.pop()  # LIFO keeps the hot connections hot
            if conn[0].at_eof() or conn[1].is_closing():
                self._discard(conn)  # closed by the server while idle (keep-alive timeout)
                continue
            return conn
        return None

    async def _exchange(self, req: RequestSpec) -> str | None:
        # A kept-alive connection that the server closes just as we reuse it fails before any
        # response byte arrives; as httpx does, retry such a request once on a new connection.
        for attempt in range(2):
            conn = self._checkout()
            reused, stage = conn is not None, "connect"
            try:
                if conn is None:
                    conn = await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
                    self._all.add(conn[1])
                stage = "write"
                conn[1].write(self._payload(req))
                stage = "read"
                status, body, keep = await read_response(conn[0])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self._discard(conn)
                no_reply = isinstance(exc, ConnectionResetError) or (
                    isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
                )
                if attempt == 0 and reused and stage == "read" and no_reply:
                    continue
                return stage
            except ValueError:  # unparsable status line or header value
                self._discard(conn)
                return "read"
            except BaseException:  # timeout or cancellation: the connection state is unknown
                self._discard(conn)
                raise
            if keep:
                self._idle.append(conn)
            else:
                self._discard(conn)
            return classify_response(status, body, req.expect_status)
        return "read"

    def _discard(self, conn: Conn | None) -> None:
        if conn is not None:
            self._all.discard(conn[1])
            conn[1].close()

    async def aclose(self) -> None:
        for writer in list(self._all):
            writer.close()
        self._idle.clear()
        self._all.clear()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one HTTP/1.1 response: (status, body, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    keep = not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep = b"close" not in value if keep else b"keep-alive" in value
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # optional trailers
                    pass
                break
            parts.append(await reader.readexactly(size + 2))
        return status, b"".join(p[:-2] for p in parts), keep
    if length is not None:
        return status, await reader.readexactly(length), keep
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", keep
    return status, await reader.read(), False


Client = HttpxClient | RawClient
PY_CLIENTS = {
    "raw": "asyncio TLS streams + minimal HTTP/1.1 (bench/run.py RawClient)",
    "httpx": "httpx.AsyncClient",
}


def make_client(spec: dict[str, Any], base_url: str, max_connections: int) -> Client:
    ca_file, timeout = spec.get("ca_file"), float(spec["timeout"])
    if spec.get("client") == "httpx":
        return HttpxClient(ca_file, max_connections, timeout)
    return RawClient(base_url, ca_file, max_connections, timeout)


def summarize(
    generator: str,
    mode: str,
    duration: float,
    *,
    latencies: list[float],
    outcomes: list[str | None],
    errors: dict[str, int],
) -> PhaseResult:
    latencies.sort()
    succeeded = sum(1 for o in outcomes if o is None)
    for o in outcomes:
        if o is not None:
            errors[o] = errors.get(o, 0) + 1

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    return PhaseResult(
        generator=generator,
        mode=mode,
        duration_s=round(duration, 3),
        requests=len(outcomes) + errors.get("unfinished", 0),
        succeeded=succeeded,
        rate_per_s=round(succeeded / duration, 2) if duration > 0 else 0.0,
        p50_ms=ms(percentile(latencies, 50)),
        p95_ms=ms(percentile(latencies, 95)),
        p99_ms=ms(percentile(latencies, 99)),
        max_ms=ms(latencies[-1] if latencies else None),
        errors=errors,
    )


async def closed_loop(spec: dict[str, Any]) -> PhaseResult:
    req = RequestSpec(**spec["request"])
    concurrency = int(spec["concurrency"])
    duration = float(spec["duration"])
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    outcomes: list[str | None] = []
    client = make_client(spec, req.url, concurrency)
    try:
        # Open every connection (TLS handshake) before the clock starts, as wrk does.
        await asyncio.gather(*(client.request(req) for _ in range(concurrency)))
        start = loop.time()
        deadline = start + duration

        async def worker() -> None:
            while loop.time() < deadline:
                t0 = loop.time()
                outcome = await client.request(req)
                latencies.append(loop.time() - t0)
                outcomes.append(outcome)

        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(concurrency))),
            timeout=duration + float(spec["timeout"]) + 5.0,
        )
        elapsed = loop.time() - start
    finally:
        await client.aclose()
    result = summarize(
        f"python-closed-loop ({spec.get('client', 'raw')})", "closed", elapsed,
        latencies=latencies, outcomes=outcomes, errors=empty_errors(),
    )  # fmt: skip
    result.concurrency = concurrency
    return result


async def open_loop(spec: dict[str, Any]) -> PhaseResult:
    """Fixed arrival schedule; latency counted from each request's scheduled send time."""
    req = RequestSpec(**spec["request"])
    rate = float(spec["rate"])
    timeout = float(spec["timeout"])
    n = max(1, min(MAX_OPEN_LOOP_REQUESTS, round(rate * float(spec["duration"]))))
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    outcomes: list[str | None] = []
    lags: list[float] = []
    last_end = 0.0
    pending: dict[asyncio.Task[None], float] = {}  # in-flight task -> scheduled send time

    async def fire(scheduled: float) -> None:
        nonlocal last_end
        outcome = await client.request(req)
        end = loop.time()
        last_end = max(last_end, end)
        latencies.append(end - scheduled)
        outcomes.append(outcome)

    client = make_client(spec, req.url, int(spec["max_connections"]))
    try:
        prime = RequestSpec("prime", spec["prime_url"], "GET", {}, None, "ok")
        await asyncio.gather(*(client.request(prime) for _ in range(int(spec["prime"]))))
        t0 = loop.time() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))  # sleep(0) yields if late
            lags.append(max(0.0, loop.time() - scheduled))
            task = asyncio.create_task(fire(scheduled))
            pending[task] = scheduled
            task.add_done_callback(lambda t: pending.pop(t, None))
        still: set[asyncio.Task[None]] = set()
        if pending:
            _, still = await asyncio.wait(set(pending), timeout=timeout + 5.0)
        end_time = max(last_end, t0 + n / rate) if not still else loop.time()
        # Still in flight after the grace period: cancelled, counted as errors, and their
        # latency censored at the end of the phase (pessimistic rather than dropped).
        latencies.extend(end_time - pending[t] for t in still if t in pending)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    finally:
        await client.aclose()
    errors = empty_errors()
    errors["unfinished"] = len(still)
    result = summarize(
        f"python-open-loop ({spec.get('client', 'raw')})", "open", end_time - t0,
        latencies=latencies, outcomes=outcomes, errors=errors,
    )  # fmt: skip
    lags.sort()
    lag99 = percentile(lags, 99)
    result.target_rate_per_s = round(rate, 2)
    result.sent = n
    result.send_lag_p99_ms = None if lag99 is None else round(lag99 * 1000.0, 3)
    return result


def worker_main() -> int:
    spec = json.loads(sys.stdin.read())
    coro = closed_loop(spec) if spec["mode"] == "closed" else open_loop(spec)
    result = asyncio.run(coro)
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# Subprocess helpers
# --------------------------------------------------------------------------------------------


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def group_pids(pgid: int) -> list[int]:
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user+sys) used so far by the live processes of a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in group_pids(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def run_bounded(cmd: list[str], stdin: str | None, timeout: float) -> tuple[int, str, str]:
    """Run a generator process; always reaped, killed if it outlives `timeout`."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise HarnessError(
            f"{cmd[0]} exceeded {timeout:.0f}s and was killed: {err[-500:]}"
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


class HarnessError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# wrk generator
# --------------------------------------------------------------------------------------------

LUA_TEMPLATE = r"""
wrk.method = {method}
{body_line}
{header_lines}
local expect = {expect}
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  ok = 0; h4 = 0; h5 = 0; hother = 0; badbody = 0
end
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
    '"p50":%.1f,"p95":%.1f,"p99":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, t.ok, t.h4, t.h5, t.hother, t.badbody,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def lua_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03d}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def wrk_script(req: RequestSpec) -> str:
    if not re.fullmatch(r"[a-z_]+", req.expect_status):
        raise HarnessError(f"unsupported expected status {req.expect_status!r}")
    headers = "\n".join(f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in req.headers.items())
    return LUA_TEMPLATE.format(
        method=lua_str(req.method),
        body_line=f"wrk.body = {lua_str(req.body)}" if req.body else "",
        header_lines=headers,
        expect=lua_str(f'"status"%s*:%s*"{req.expect_status}"'),
    )


def run_wrk(req: RequestSpec, concurrency: int, duration: int, workdir: Path) -> PhaseResult:
    script = workdir / f"{req.name}.lua"
    script.write_text(wrk_script(req))
    cpus = len(os.sched_getaffinity(0))
    threads = next(t for t in range(min(cpus, concurrency), 0, -1) if concurrency % t == 0)
    cmd = [
        "wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{duration}s",
        "--timeout", f"{int(REQUEST_TIMEOUT_S)}s", "-s", str(script), req.url,
    ]  # fmt: skip
    cpu0 = children_cpu_s()
    rc, out, err = run_bounded(cmd, None, duration + REQUEST_TIMEOUT_S + 30)
    cpu = children_cpu_s() - cpu0
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if rc != 0 or line is None:
        raise HarnessError(f"wrk failed (rc={rc}): {err.strip()[-800:] or out.strip()[-800:]}")
    d = json.loads(line.removeprefix("BENCHJSON "))
    duration_s = d["duration_us"] / 1e6
    answered = d["requests"] > 0  # wrk reports 0 for the percentiles of an empty histogram
    errors = empty_errors()
    errors.update(
        http_4xx=d["h4"], http_5xx=d["h5"], http_other=d["hother"], unexpected_body=d["badbody"],
        connect=d["connect"], read=d["read"], write=d["write"], timeout=d["timeout"],
    )  # fmt: skip
    return PhaseResult(
        generator="wrk",
        mode="closed",
        duration_s=round(duration_s, 3),
        requests=d["requests"] + d["connect"] + d["read"] + d["write"] + d["timeout"],
        succeeded=d["ok"],
        rate_per_s=round(d["ok"] / duration_s, 2) if duration_s > 0 else 0.0,
        p50_ms=round(d["p50"] / 1000.0, 3) if answered else None,
        p95_ms=round(d["p95"] / 1000.0, 3) if answered else None,
        p99_ms=round(d["p99"] / 1000.0, 3) if answered else None,
        max_ms=round(d["max"] / 1000.0, 3) if answered else None,
        errors=errors,
        concurrency=concurrency,
        generator_cpu_s=round(cpu, 2),
    )


def ensure_wrk(allow_install: bool) -> tuple[bool, str]:
    """Return (available, message)."""
    if shutil.which("wrk"):
        return True, "wrk found on PATH"
    if not allow_install:
        return False, "wrk not found and --no-install given"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False, "wrk not found and cannot apt-get install it (not root or no apt-get)"
    log("wrk not found; installing it with apt-get (Debian package 'wrk') ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    attempts = (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"])
    for cmd in (attempts[0], attempts[1], attempts[0]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return False, f"'{' '.join(cmd)}' timed out"
        if shutil.which("wrk"):
            return True, "wrk installed with apt-get"
    return False, "apt-get install wrk failed"


# --------------------------------------------------------------------------------------------
# Python generator, parent side
# --------------------------------------------------------------------------------------------


def run_python(spec: dict[str, Any], duration: float) -> PhaseResult:
    cmd = [sys.executable, str(Path(__file__).resolve()), WORKER_ARG]
    cpu0 = children_cpu_s()
    grace = 2 * REQUEST_TIMEOUT_S + 30
    rc, out, err = run_bounded(cmd, json.dumps(spec), duration + grace)
    cpu = children_cpu_s() - cpu0
    if rc != 0 or not out.strip():
        raise HarnessError(f"python generator failed (rc={rc}): {err.strip()[-800:]}")
    data = json.loads(out.strip().splitlines()[-1])
    result = PhaseResult(**data)
    result.generator_cpu_s = round(cpu, 2)
    return result


# --------------------------------------------------------------------------------------------
# Server lifecycle and PostgreSQL database
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path
    verify: bool = True

    @property
    def ca_file(self) -> str | None:
        return str(self.info["ca_file"]) if self.verify and self.info.get("ca_file") else None

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise HarnessError(
                f"server exited with code {self.proc.returncode}\n{tail(self.log_path)}"
            )


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return f"--- last {lines} lines of {path} ---\n" + "\n".join(text[-lines:])


def server_env(db_url: str | None, rate_limit_store: str = "memory") -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BASTIONPAY_DATABASE_URL", None)
    env.pop("BASTIONPAY_REDIS_URL", None)
    if db_url:
        env["BASTIONPAY_DATABASE_URL"] = db_url
    # The edge stays on: every request is rate limited, filtered and admitted as in production.
    # The bench merchant gets a limit above the offered load, as a high-volume merchant would
    # (`bastionpay merchants limits`), so the limiter is paid for but never refuses.
    env["BASTIONPAY_RATE_LIMIT_TEST_READ"] = "1000000/second"
    env["BASTIONPAY_RATE_LIMIT_TEST_WRITE"] = "1000000/second"
    if rate_limit_store == "redis":
        env["BASTIONPAY_REDIS_URL"] = REDIS_URL
    probe = subprocess.run(
        [sys.executable, "-c", "import bastionpay"], env=env, capture_output=True, check=False
    )
    if probe.returncode != 0 and (REPO / "src" / "bastionpay").is_dir():
        # Not installed in this interpreter: benchmark the working tree's src/ directly.
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])
        )
        log(f"bastionpay is not importable by {sys.executable}; using PYTHONPATH={REPO / 'src'}")
    return env


def launch_server(
    data_dir: Path, log_path: Path, db_url: str | None, rate_limit_store: str = "memory"
) -> Server:
    cmd = [
        sys.executable, "-m", "bastionpay", "up", "--data-dir", str(data_dir),
        "--host", "127.0.0.1", "--api-port", "0",
    ]  # fmt: skip
    env = server_env(db_url, rate_limit_store)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: we deliver SIGINT ourselves
        )
    return Server(proc, {}, log_path)


def wait_run_json(server: Server, data_dir: Path) -> None:
    run_json = data_dir / "run.json"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(run_json.read_text())
            if isinstance(info, dict) and info.get("api_url") and info.get("secret_key"):
                server.info = info
                return
        time.sleep(0.1)
    raise HarnessError(
        f"no usable {run_json} after {STARTUP_TIMEOUT_S:.0f}s\n{tail(server.log_path)}"
    )


def stop_server(server: Server, label: str) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the server's process group."""
    if server.proc.poll() is None:
        log(f"{label}: stopping server (SIGINT)")
    pgid = server.proc.pid
    for sig, wait_s in ((signal.SIGINT, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if server.proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(wait_s)
        if server.proc.poll() is None:
            log(f"server did not stop after {sig.name}; escalating")
    if group_pids(pgid):  # stragglers the server left behind in its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def wait_ready(server: Server) -> None:
    """GET /livez until 200; verify TLS with run.json's ca_file, fall back to unverified."""
    url = server.info["api_url"].rstrip("/") + NOOP_PATH
    ca = server.info.get("ca_file")
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else False
    server.verify = bool(ca)
    deadline = time.monotonic() + 30.0
    last = "no attempt"
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            resp = httpx.get(url, verify=verify, timeout=5.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.ConnectError as exc:
            last = str(exc)
            if "CERTIFICATE" in last.upper() and verify is not False:
                log(f"WARNING: TLS verification with {ca} failed ({last}); continuing unverified")
                verify, server.verify = False, False
                continue
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise HarnessError(f"{url} not ready after 30s: {last}\n{tail(server.log_path)}")


# The benchmark charges the same test card thousands of times a minute: exactly the velocity burst
# the fraud model blocks (issue 7). A merchant rule allows them, so the numbers are those of
# accepted payments; scoring still runs in full (features, model, rules) on every one of them.
BENCH_ALLOW_RULE = "allow if :amount_in_usd: > 0"


def allow_bench_payments(server: Server) -> None:
    verify: ssl.SSLContext | bool = False
    if server.ca_file:
        verify = ssl.create_default_context(cafile=server.ca_file)
    resp = httpx.post(
        server.info["api_url"].rstrip("/") + "/v1/radar/rules",
        headers={"Authorization": f"Bearer {server.info['secret_key']}"},
        data={"rule": BENCH_ALLOW_RULE},
        verify=verify,
        timeout=30.0,
    )
    if resp.status_code != 200:
        raise HarnessError(
            f"could not add the bench's allow rule: HTTP {resp.status_code} {resp.text[:300]!r}"
        )


def sanity_check(server: Server, pay: RequestSpec) -> None:
    """One payment before load, so a broken endpoint fails fast with its actual response."""
    verify: ssl.SSLContext | bool = False
    if server.ca_file:
        verify = ssl.create_default_context(cafile=server.ca_file)
    resp = httpx.post(pay.url, headers=pay.headers, content=pay.body, verify=verify, timeout=30.0)
    if classify_response(resp.status_code, resp.content, pay.expect_status) is not None:
        raise HarnessError(
            f"sanity payment failed: HTTP {resp.status_code} {resp.text[:500]!r}\n"
            f"{tail(server.log_path)}"
        )


def pg_admin_conninfo(base_url: str) -> tuple[str, str]:
    """SQLAlchemy URL -> (libpq URL to the admin database, URL template without database)."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise HarnessError(f"--pg-url must be a postgresql URL, got {base_url!r}")
    admin = urlunsplit(("postgresql", parts.netloc, parts.path or "/postgres", parts.query, ""))
    return admin, parts.netloc


def pg_execute(admin_url: str, statement: str) -> None:
    try:
        import psycopg  # noqa: PLC0415 (optional: only the postgresql backend needs it)
    except ImportError:
        psql = shutil.which("psql")
        if psql is None:
            raise HarnessError("neither psycopg nor psql is available for PostgreSQL") from None
        subprocess.run(
            [psql, admin_url, "-v", "ON_ERROR_STOP=1", "-qc", statement],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement.encode())


@contextlib.contextmanager
def pg_database(base_url: str) -> Iterator[str]:
    """Create a fresh database, yield its SQLAlchemy URL, always drop it."""
    admin, netloc = pg_admin_conninfo(base_url)
    name = f"bastionpay_bench_{os.getpid()}_{secrets.token_hex(4)}"  # [a-z0-9_] only
    driver = urlsplit(base_url).scheme
    driver = driver if "+" in driver else "postgresql+psycopg"
    pg_execute(admin, f'CREATE DATABASE "{name}"')
    log(f"created PostgreSQL database {name}")
    try:
        yield f"{driver}://{netloc}/{name}"
    finally:
        try:
            pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"dropped PostgreSQL database {name}")
        except Exception as exc:  # noqa: BLE001 (psycopg errors; cleanup must not mask the run)
            log(f"WARNING: could not drop database {name}: {exc}")


# --------------------------------------------------------------------------------------------
# One backend run
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    backends: list[str]
    duration: int
    load_duration: int
    warmup: int
    concurrency: int
    load_fraction: float
    out: Path
    use_wrk: bool
    pg_url: str
    keep: bool
    py_client: str
    rate_limit_store: str = "memory"
    overload: bool = True


@dataclass
class BackendRun:
    backend: str
    saturation_generator: str
    noop: PhaseResult | None = None
    payments: PhaseResult | None = None
    open_loop: PhaseResult | None = None
    # Load shedding under overload: payments and lists offered together beyond capacity.
    overload_payments: PhaseResult | None = None
    overload_lists: PhaseResult | None = None
    ratio: float | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    loadavg_before: list[float] = field(default_factory=list)
    loadavg_after: list[float] = field(default_factory=list)


def requests_for(server: Server) -> tuple[RequestSpec, RequestSpec]:
    base = server.info["api_url"].rstrip("/")
    noop = RequestSpec("noop", base + NOOP_PATH, "GET", {}, None, "ok")
    pay = RequestSpec(
        "payments",
        base + PAY_PATH,
        "POST",
        {
            "Authorization": f"Bearer {server.info['secret_key']}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        PAY_BODY,
        "succeeded",
    )
    return noop, pay


def saturate(
    opts: Options, server: Server, req: RequestSpec, duration: int, workdir: Path
) -> PhaseResult:
    cpu0 = group_cpu_s(server.proc.pid)
    if opts.use_wrk:
        result = run_wrk(req, opts.concurrency, duration, workdir)
    else:
        spec = {
            "mode": "closed", "request": asdict(req), "concurrency": opts.concurrency,
            "duration": duration, "timeout": REQUEST_TIMEOUT_S, "ca_file": server.ca_file,
            "client": opts.py_client,
        }  # fmt: skip
        result = run_python(spec, duration)
    result.set_server_cpu(group_cpu_s(server.proc.pid) - cpu0)
    server.check_alive()
    return result


def latency_at_load(opts: Options, server: Server, pay: RequestSpec, rate: float) -> PhaseResult:
    noop_url = server.info["api_url"].rstrip("/") + NOOP_PATH
    spec = {
        "mode": "open", "request": asdict(pay), "rate": rate, "duration": opts.load_duration,
        "timeout": REQUEST_TIMEOUT_S, "ca_file": server.ca_file, "prime_url": noop_url,
        "client": opts.py_client,
        "prime": min(opts.concurrency, MAX_OPEN_LOOP_CONNECTIONS),
        "max_connections": MAX_OPEN_LOOP_CONNECTIONS,
    }  # fmt: skip
    cpu0 = group_cpu_s(server.proc.pid)
    result = run_python(spec, opts.load_duration)
    result.set_server_cpu(group_cpu_s(server.proc.pid) - cpu0)
    server.check_alive()
    return result


def describe(label: str, r: PhaseResult) -> str:
    errs = {k: v for k, v in r.errors.items() if v}
    return (
        f"{label}: {r.rate_per_s:.1f}/s ok, p50 {fmt_ms(r.p50_ms)} p95 {fmt_ms(r.p95_ms)} "
        f"p99 {fmt_ms(r.p99_ms)} ms, {r.succeeded}/{r.requests} ok, errors {errs or 0}, "
        f"server cpu {r.server_cpu_s}s ({r.server_cpu_ms_per_ok} ms/ok), "
        f"generator cpu {r.generator_cpu_s}s"
    )


def measure(opts: Options, server: Server, run: BackendRun, workdir: Path) -> None:
    noop, pay = requests_for(server)
    sanity_check(server, pay)
    c, d, gen = opts.concurrency, opts.duration, run.saturation_generator
    if opts.warmup > 0:
        log(f"{run.backend}: warm-up {opts.warmup}s (no-op then payments)")
        saturate(opts, server, noop, max(1, opts.warmup // 2), workdir)
        saturate(opts, server, pay, max(1, opts.warmup - opts.warmup // 2), workdir)
    log(f"{run.backend}: no-op saturation, GET {NOOP_PATH}, {gen} c={c} {d}s")
    run.noop = saturate(opts, server, noop, d, workdir)
    log(describe(f"{run.backend}: no-op", run.noop))
    time.sleep(1.0)
    log(f"{run.backend}: payment saturation, POST {PAY_PATH}, {gen} c={c} {d}s")
    run.payments = saturate(opts, server, pay, d, workdir)
    log(describe(f"{run.backend}: payments", run.payments))
    if run.noop.rate_per_s > 0:
        run.ratio = round(run.payments.rate_per_s / run.noop.rate_per_s, 4)
    if run.payments.rate_per_s <= 0:
        raise HarnessError("no successful payment during saturation; skipping latency-at-load")
    rate = opts.load_fraction * run.payments.rate_per_s
    time.sleep(1.0)
    log(
        f"{run.backend}: latency at load, open loop {rate:.1f}/s "
        f"({opts.load_fraction:.0%} of saturation) for {opts.load_duration}s"
    )
    run.open_loop = latency_at_load(opts, server, pay, rate)
    log(describe(f"{run.backend}: open loop", run.open_loop))
    if opts.overload:
        time.sleep(1.0)
        overload(opts, server, run, pay, run.payments.rate_per_s)


def overload(opts: Options, server: Server, run: BackendRun, pay: RequestSpec, sat: float) -> None:
    """Payments and lists at once beyond capacity: lists should be shed (503), payments not."""
    lists = RequestSpec(
        "lists",
        server.info["api_url"].rstrip("/") + LIST_PATH,
        "GET",
        {"Authorization": pay.headers["Authorization"]},
        None,
        "list",
    )
    # Payments at the same rate as the latency phase above (the same-run baseline), lists on top.
    pay_rate, list_rate = opts.load_fraction * sat, OVERLOAD_LIST_FACTOR * sat
    log(
        f"{run.backend}: overload, open loop payments {pay_rate:.1f}/s + lists "
        f"{list_rate:.1f}/s for {opts.load_duration}s"
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        pays = pool.submit(latency_at_load, opts, server, pay, pay_rate)
        listed = pool.submit(latency_at_load, opts, server, lists, list_rate)
        run.overload_payments, run.overload_lists = pays.result(), listed.result()
    log(describe(f"{run.backend}: overload payments", run.overload_payments))
    log(describe(f"{run.backend}: overload lists", run.overload_lists))


def diagnose(run: BackendRun, opts: Options) -> None:
    """Warnings that say a number may measure the harness or the network stack, not the app."""
    cpus = len(os.sched_getaffinity(0))
    for label, r in (("no-op", run.noop), ("payments", run.payments), ("open loop", run.open_loop)):
        if r is None:
            continue
        if r.error_total:
            run.warnings.append(f"{label}: {r.error_total} failed requests {r.errors}")
        busy = (r.server_cpu_s or 0.0) / r.duration_s if r.duration_s else 0.0
        if r.mode == "closed" and busy < 0.6:
            run.warnings.append(
                f"{label}: the server averaged only {busy:.2f} CPU at saturation, so it waits "
                "more than it computes (locks, fsync, DB round trips, a serialized section)"
            )
        if r.mode == "closed" and 36.0 <= (r.p50_ms or 0.0) <= 50.0 and busy < 0.5 * cpus:
            run.warnings.append(
                f"{label}: p50 {r.p50_ms} ms while the server used only {busy:.2f} CPU: the "
                "~40 ms looks like Nagle + delayed ACK (is TCP_NODELAY set on accepted sockets? "
                "asyncio sets it only for sockets created with proto=IPPROTO_TCP)"
            )
    ol = run.open_loop
    if ol is not None and ol.target_rate_per_s:
        lag, p99 = ol.send_lag_p99_ms or 0.0, ol.p99_ms or 0.0
        if lag > 5.0 and lag > 0.1 * p99:
            run.warnings.append(
                f"open loop: the generator sent late (p99 lag {ol.send_lag_p99_ms} ms; starved "
                "of CPU, or opening TLS connections as requests piled up). Latency still counts "
                "from the scheduled time, so the delay is included, not hidden"
            )
        if ol.rate_per_s < 0.95 * ol.target_rate_per_s:
            run.warnings.append(
                f"open loop: achieved {ol.rate_per_s}/s < 95% of target {ol.target_rate_per_s}/s"
            )
    for w in run.warnings:
        log(f"{run.backend}: WARNING {w}")


def evaluate(run: BackendRun, load_fraction: float) -> None:
    if run.ratio is not None:
        run.targets.append({
            "name": f"payments/s >= {RATIO_TARGET:.0%} of no-op/s",
            "measured": f"{run.ratio:.1%}",
            "pass": run.ratio >= RATIO_TARGET,
        })  # fmt: skip
    if run.open_loop is not None and run.open_loop.p99_ms is not None:
        run.targets.append({
            "name": f"p99 <= {P99_TARGET_MS:.0f} ms at {load_fraction:.0%} of saturation",
            "measured": f"{run.open_loop.p99_ms:.1f} ms",
            "pass": run.open_loop.p99_ms <= P99_TARGET_MS,
        })  # fmt: skip


def run_backend(opts: Options, backend: str, workdir: Path) -> BackendRun:
    run = BackendRun(backend, "wrk" if opts.use_wrk else f"python-closed-loop ({opts.py_client})")
    run.loadavg_before = [round(x, 2) for x in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix=f"bastionpay-bench-{backend}-"))
    data_dir = root / "data"
    data_dir.mkdir()
    # Cleanups run last-in first-out: ignore Ctrl-C, stop server, drop database, remove files.
    with contextlib.ExitStack() as stack:
        if not opts.keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(signal.signal, signal.SIGINT, signal.SIG_IGN)
        try:
            db_url = None
            if backend == "postgresql":
                db_url = stack.enter_context(pg_database(opts.pg_url))
            log(f"{backend}: starting server (data dir {data_dir}, log {root / 'server.log'})")
            server = launch_server(data_dir, root / "server.log", db_url, opts.rate_limit_store)
            stack.callback(stop_server, server, backend)
            stack.callback(signal.signal, signal.SIGINT, signal.SIG_IGN)
            wait_run_json(server, data_dir)
            wait_ready(server)
            allow_bench_payments(server)
            log(f"{backend}: server ready at {server.info['api_url']} (pid {server.proc.pid})")
            measure(opts, server, run, workdir)
        except (HarnessError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            log(f"{backend}: ERROR {run.error}")
    run.loadavg_after = [round(x, 2) for x in os.getloadavg()]
    diagnose(run, opts)
    evaluate(run, opts.load_fraction)
    return run


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def fmt_cpu(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def machine_info(use_wrk: bool, wrk_note: str, py_client: str) -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    wrk_version = None
    if use_wrk:
        proc = subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, check=False, timeout=10
        )
        lines = (proc.stdout or proc.stderr).splitlines()
        wrk_version = lines[0].strip() if lines else None
    git = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=False, timeout=10,
        ).stdout.strip() or None  # fmt: skip
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "nproc_available": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "git": git,
        "saturation_generator": "wrk" if use_wrk else f"python-closed-loop ({py_client})",
        "wrk_version": wrk_version,
        "wrk_note": wrk_note,
        "latency_generator": f"python-open-loop ({py_client})",
        "python_client": PY_CLIENTS[py_client],
    }


def markdown(machine: dict[str, Any], opts: Options, runs: list[BackendRun]) -> str:
    lines = [
        f"Measured {machine['date']} on {machine['nproc']} CPU ({machine['cpu_model']}), "
        f"Python {machine['python']}, git {machine['git']}; saturation: "
        f"{machine['saturation_generator']}, c={opts.concurrency}, {opts.duration}s per phase; "
        f"latency at load: open loop, {opts.load_duration}s; edge on (rate limits in "
        f"{opts.rate_limit_store}, shedding, filtering).",
        "",
        "| Backend | Phase | Generator | Rate (ok/s) | p50 ms | p95 ms | p99 ms | Errors "
        "| Server CPU ms/ok |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        phases = [
            (f"no-op `GET {NOOP_PATH}` saturation", run.noop),
            ("payments saturation", run.payments),
        ]
        if run.open_loop is not None:
            label = (
                f"payments open loop @ {opts.load_fraction:.0%} "
                f"(target {run.open_loop.target_rate_per_s:.1f}/s)"
            )
            phases.append((label, run.open_loop))
        if run.overload_payments is not None and run.overload_lists is not None:
            for name, shed in (
                ("overload: payments", run.overload_payments),
                ("overload: lists (shed → 503)", run.overload_lists),
            ):
                phases.append((f"{name} (offered {shed.target_rate_per_s or 0:.0f}/s)", shed))
        for label, r in phases:
            if r is None:
                continue
            lines.append(
                f"| {run.backend} | {label} | {r.generator} | {r.rate_per_s:.1f} | "
                f"{fmt_ms(r.p50_ms)} | {fmt_ms(r.p95_ms)} | {fmt_ms(r.p99_ms)} | {r.error_total} "
                f"| {fmt_cpu(r.server_cpu_ms_per_ok)} |"
            )
        if run.ratio is not None:
            lines.append(f"| {run.backend} | payments ÷ no-op | | {run.ratio:.1%} | | | | | |")
        if run.error:
            first = run.error.splitlines()[0][:80]
            lines.append(f"| {run.backend} | ERROR | | {first} | | | | | |")
    lines += ["", "| Backend | Target | Measured | Result |", "| --- | --- | --- | --- |"]
    for run in runs:
        for t in run.targets:
            verdict = "PASS" if t["pass"] else "**FAIL**"
            lines.append(f"| {run.backend} | {t['name']} | {t['measured']} | {verdict} |")
        if run.error:
            lines.append(f"| {run.backend} | (run did not complete) | - | **FAIL** |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="BastionPay throughput/latency benchmark")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--duration", type=int, default=20, help="seconds per saturation phase")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop connections")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    p.add_argument("--warmup", type=int, default=4, help="seconds of warm-up load (0: none)")
    p.add_argument("--load-duration", type=int, default=None,
                   help="seconds of the open-loop phase (default: --duration)")  # fmt: skip
    p.add_argument("--load-fraction", type=float, default=0.6,
                   help="open-loop rate as a fraction of payment saturation")  # fmt: skip
    p.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                   help="saturation load generator (auto: wrk, installed if missing)")  # fmt: skip
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--pg-url", default=os.environ.get("BASTIONPAY_BENCH_PG_URL", DEFAULT_PG_URL),
                   help="admin URL of a PostgreSQL server (a fresh DB is made on it)")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep temp data dirs and server logs")
    p.add_argument("--py-client", choices=sorted(PY_CLIENTS), default="raw",
                   help="HTTP client of the Python generators (default: raw)")  # fmt: skip
    p.add_argument("--rate-limit-store", choices=["memory", "redis"], default="memory",
                   help="rate-limit store (redis: BASTIONPAY_BENCH_REDIS_URL)")  # fmt: skip
    p.add_argument("--no-overload", action="store_true", help="skip the load-shedding phase")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 3600 or not 1 <= args.concurrency <= 1024:
        p.error("--duration must be 1..3600 and --concurrency 1..1024")
    if args.load_duration is not None and not 1 <= args.load_duration <= 3600:
        p.error("--load-duration must be 1..3600")
    if not 0 < args.load_fraction <= 1 or not 0 <= args.warmup <= 600:
        p.error("--load-fraction must be in (0, 1] and --warmup 0..600")
    return args


def choose_generator(args: argparse.Namespace) -> tuple[bool, str]:
    if args.generator == "python":
        return False, "python generator requested"
    ok, note = ensure_wrk(allow_install=not args.no_install)
    if ok:
        return True, note
    if args.generator == "wrk":
        raise HarnessError(f"--generator wrk: {note}")
    log(
        f"NOTE: {note}. Falling back to the Python asyncio closed-loop generator "
        f"(--py-client {args.py_client}). It costs more CPU per request than wrk and shares the "
        "machine's CPUs with the server, so the no-op rate is understated and the payments/no-op "
        "ratio is optimistic: compare only with runs made with the same generator."
    )
    return False, note


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if argv[:1] == [WORKER_ARG]:
        return worker_main()
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    use_wrk, wrk_note = choose_generator(args)
    opts = Options(
        backends=["sqlite", "postgresql"] if args.backend == "both" else [args.backend],
        duration=args.duration,
        load_duration=args.load_duration or args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        load_fraction=args.load_fraction,
        out=args.out,
        use_wrk=use_wrk,
        pg_url=args.pg_url,
        keep=args.keep,
        py_client=args.py_client,
        rate_limit_store=args.rate_limit_store,
        overload=not args.no_overload,
    )
    machine = machine_info(use_wrk, wrk_note, opts.py_client)
    log(f"machine: {machine['nproc']} CPU, Python {machine['python']}, {machine['platform']}")
    runs: list[BackendRun] = []
    with tempfile.TemporaryDirectory(prefix="bastionpay-bench-") as tmp:
        for backend in opts.backends:
            try:
                runs.append(run_backend(opts, backend, Path(tmp)))
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
    return report(machine, opts, runs)


def report(machine: dict[str, Any], opts: Options, runs: list[BackendRun]) -> int:
    md = markdown(machine, opts, runs)
    doc = {
        "schema": 1,
        "machine": machine,
        "config": {
            "duration_s": opts.duration,
            "rate_limit_store": opts.rate_limit_store,
            "load_duration_s": opts.load_duration,
            "warmup_s": opts.warmup,
            "concurrency": opts.concurrency,
            "load_fraction": opts.load_fraction,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "targets": {"ratio_min": RATIO_TARGET, "p99_max_ms": P99_TARGET_MS},
        },
        "runs": [asdict(r) for r in runs],
        "markdown": md,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(doc, indent=2) + "\n")
    print("\n" + md + "\n", flush=True)
    for run in runs:
        for t in run.targets:
            verdict = "PASS" if t["pass"] else "FAIL"
            print(f"{verdict}  {run.backend}: {t['name']} (measured {t['measured']})")
        for w in run.warnings:
            print(f"WARN  {run.backend}: {w}")
        if run.error:
            print(f"ERROR {run.backend}: {run.error.splitlines()[0]}")
    log(f"results written to {opts.out}")
    if any(r.error for r in runs):
        return 2
    return 0 if all(t["pass"] for r in runs for t in r.targets) else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("\ninterrupted; server stopped and temporary databases dropped", file=sys.stderr)
        sys.exit(130)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
