#!/usr/bin/env python3
"""Render the BastionPay edge (nginx + ModSecurity v3 + OWASP CRS) into one prefix directory.

Standard library only: this runs on the edge host, which needs no BastionPay installation.

    python3 deploy/nginx/render.py --listen 127.0.0.1:8443 --upstream 127.0.0.1:9443 \\
        --cert edge.pem --key edge.key --upstream-ca ca.pem --prefix /srv/bastionpay-edge
    nginx -p /srv/bastionpay-edge -c /srv/bastionpay-edge/nginx.conf -g 'daemon off;'

Everything nginx writes (pid file, error/access logs, the ModSecurity audit log, temp directories)
is inside the prefix, so the result runs as an unprivileged foreground process (tests, the
benchmark) or under systemd (deploy/nginx/README.md). Certificates and the CRS rules are
referenced by absolute path, not copied. The templates and ModSecurity files this renders from
live next to this script; the repository's copies are what gets tested (SECURITY-REQUIREMENTS T3,
PCI DSS 6.4.2), not whatever /etc on the host happens to contain.

Every value is validated before it is written into a configuration file: a path or name with
characters that mean something to nginx or ModSecurity (spaces, quotes, ';', braces, newlines) is
refused instead of escaped, so the renderer cannot be used to inject directives.
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODSEC_SRC = HERE / "modsecurity"

DEFAULT_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
DEFAULT_CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
# The api's BASTIONPAY_MAX_BODY_BYTES default; the edge must not accept what the api refuses.
DEFAULT_MAX_BODY_BYTES = 262144
DEFAULT_MAX_CONNS_PER_IP = 128
# Slow-client bound (slowloris): headers within, and no pause in a body longer than, this.
DEFAULT_CLIENT_TIMEOUT_S = 10
# CRS release line the shipped crs-setup.conf is written for (its tx.crs_setup_version=334).
CRS_SERIES = "3.3."

_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+@=,:~-]*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_SERVER_NAME = re.compile(r"^(?:_|\*?\.?[A-Za-z0-9.-]{1,253})$")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Files rendered from templates (placeholders substituted) and files copied as they are.
TEMPLATES = {
    "nginx.conf": HERE / "nginx.conf.in",
    "modsecurity/main.conf": MODSEC_SRC / "main.conf.in",
    "modsecurity/modsecurity.conf": MODSEC_SRC / "modsecurity.conf.in",
}
COPIES = {
    "modsecurity/crs-setup.conf": MODSEC_SRC / "crs-setup.conf",
    "modsecurity/bastionpay-before-crs.conf": MODSEC_SRC / "bastionpay-before-crs.conf",
    "modsecurity/bastionpay-after-crs.conf": MODSEC_SRC / "bastionpay-after-crs.conf",
    "modsecurity/unicode.mapping": MODSEC_SRC / "unicode.mapping",
}
DIRECTORIES = (
    "logs",
    "tmp/client_body",
    "tmp/proxy",
    "tmp/fastcgi",
    "tmp/uwsgi",
    "tmp/scgi",
    "modsecurity/tmp",
    "modsecurity/data",
)


class RenderError(Exception):
    """A value or an input file is unusable; the message says which and why."""


@dataclass(frozen=True)
class Endpoint:
    host: str  # as written in nginx: IPv6 in brackets
    port: int

    @property
    def nginx(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bare_host(self) -> str:
        return self.host.strip("[]")


def parse_endpoint(value: str, what: str) -> Endpoint:
    """HOST:PORT with an IPv4 address, a [bracketed] IPv6 address or a DNS name."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d{1,5})", value)
    if match is None:
        raise RenderError(f"{what} must be HOST:PORT (IPv6 as [ADDR]:PORT), got {value!r}")
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        raise RenderError(f"{what}: port {port} is out of range")
    bare = host.strip("[]")
    try:
        addr = ipaddress.ip_address(bare)
    except ValueError:
        if host.startswith("[") or not _HOSTNAME.fullmatch(host):
            raise RenderError(f"{what}: {host!r} is neither an IP address nor a DNS name") from None
    else:
        if (addr.version == 6) != host.startswith("["):
            raise RenderError(f"{what}: write IPv6 addresses in brackets, e.g. [::1]:8443")
    return Endpoint(host, port)


def safe_path(value: Path, what: str, *, must_exist: bool = True) -> Path:
    # abspath, not resolve(): a symlink such as Let's Encrypt's live/ certificate link must stay a
    # link in the configuration, or a renewal would not be picked up.
    path = Path(os.path.abspath(value))  # noqa: PTH100
    if not _SAFE_PATH.fullmatch(str(path)):
        raise RenderError(
            f"{what}: {str(path)!r} contains characters that are not allowed in a configuration "
            "path (allowed: letters, digits and ._/+@=,:~-)"
        )
    if must_exist and not path.exists():
        raise RenderError(f"{what}: {path} does not exist")
    return path


def upstream_tls_name(upstream: Endpoint, explicit: str | None) -> str:
    """The name nginx verifies the api's certificate against (proxy_ssl_name).

    nginx checks the name with X509_check_host, i.e. against DNS names in the certificate only,
    never IP addresses. A loopback upstream defaults to "localhost" (the development certificate
    carries it); any other IP address needs --upstream-name.
    """
    if explicit is not None:
        if not _HOSTNAME.fullmatch(explicit):
            raise RenderError(f"--upstream-name: {explicit!r} is not a DNS name")
        return explicit
    try:
        addr = ipaddress.ip_address(upstream.bare_host)
    except ValueError:
        return upstream.host
    if addr.is_loopback:
        return "localhost"
    raise RenderError(
        "--upstream is an IP address: give --upstream-name, the DNS name in the api's certificate "
        "(nginx verifies upstream certificates by DNS name only)"
    )


def worker_user(spec: str | None) -> tuple[str, str] | None:
    """The `user` directive's (user, group), or None when nginx does not run as root.

    As root, nginx's workers switch to this account: it defaults to "nobody", the least
    privileged account there is. The workers need no file access of their own: certificates,
    rules and log files are opened by the master, request bodies and responses never spill to
    temp files (see nginx.conf.in). Not as root, nginx ignores the directive (with a warning), so
    it is not rendered.
    """
    if os.geteuid() != 0:
        return None
    name, _, group = (spec or "nobody").partition(":")
    if not _ACCOUNT.fullmatch(name) or (group and not _ACCOUNT.fullmatch(group)):
        raise RenderError(f"--user: {spec!r} is not USER or USER:GROUP")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RenderError(f"--user: no such user {name!r}") from None
    if not group:
        try:
            group = grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            raise RenderError(f"--user: the primary group of {name!r} has no name") from None
    return name, group


def check_crs(rules_dir: Path) -> None:
    init = rules_dir / "REQUEST-901-INITIALIZATION.conf"
    if not init.is_file():
        raise RenderError(f"--crs-rules-dir: {init} not found (is modsecurity-crs installed?)")
    found = re.search(r"ver:'OWASP_CRS/([0-9.]+)'", init.read_text(errors="replace"))
    if found is None or not found.group(1).startswith(CRS_SERIES):
        version = found.group(1) if found else "unknown"
        raise RenderError(
            f"--crs-rules-dir: CRS {version} found, but crs-setup.conf and the exclusions are "
            f"written for CRS {CRS_SERIES}x; review them before using another release"
        )


def substitute(template: str, values: dict[str, str], source: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise RenderError(f"{source}: unknown placeholder @{key}@")
        return values[key]

    return _PLACEHOLDER.sub(replace, template)


def build_values(args: argparse.Namespace) -> dict[str, str]:
    # What the caller passed is checked first, what is installed on the host last.
    listen = parse_endpoint(args.listen, "--listen")
    upstream = parse_endpoint(args.upstream, "--upstream")
    upstream_name = upstream_tls_name(upstream, args.upstream_name)
    prefix = safe_path(args.prefix, "--prefix", must_exist=False)
    cert = safe_path(args.cert, "--cert")
    key = safe_path(args.key, "--key")
    upstream_ca = safe_path(args.upstream_ca, "--upstream-ca")
    if not _SERVER_NAME.fullmatch(args.server_name):
        raise RenderError(f"--server-name: {args.server_name!r} is not a host name or '_'")
    if args.workers != "auto" and not (args.workers.isdigit() and 1 <= int(args.workers) <= 64):
        raise RenderError("--workers must be 'auto' or 1..64")
    if not 1024 <= args.max_body_bytes <= 64 * 1024 * 1024:
        raise RenderError("--max-body-bytes must be between 1 KiB and 64 MiB")
    if not 0 <= args.max_conns_per_ip <= 100_000:
        raise RenderError("--max-conns-per-ip must be 0 (off) .. 100000")
    if not 1 <= args.client_timeout <= 300:
        raise RenderError("--client-timeout must be 1..300 seconds")
    user = worker_user(args.user)
    module = safe_path(args.modsecurity_module, "--modsecurity-module")
    crs_rules = safe_path(args.crs_rules_dir, "--crs-rules-dir")
    check_crs(crs_rules)
    conns = args.max_conns_per_ip
    return {
        "PREFIX": str(prefix),
        "LISTEN": listen.nginx,
        "SERVER_NAME": args.server_name,
        "UPSTREAM": upstream.nginx,
        "UPSTREAM_NAME": upstream_name,
        "CERT": str(cert),
        "KEY": str(key),
        "UPSTREAM_CA": str(upstream_ca),
        "MODSECURITY_MODULE": str(module),
        "CRS_RULES_DIR": str(crs_rules),
        "WORKERS": args.workers,
        "MAX_BODY_BYTES": str(args.max_body_bytes),
        "CLIENT_TIMEOUT": str(args.client_timeout),
        "USER_LINE": (
            f"user {user[0]} {user[1]};  # nginx runs as root: workers drop to this account"
            if user
            else "# (no `user` directive: nginx does not run as root, workers keep its account)"
        ),
        # Many connections from one address that send nothing is slowloris; a per-address cap
        # bounds what one client can hold open (T4). Off (0) behind a load balancer that hides
        # client addresses, where every connection would share one address.
        "LIMIT_CONN_ZONE": (
            "    limit_conn_zone $binary_remote_addr zone=bastionpay_per_ip:10m;\n"
            "    limit_conn_status 429;"
            if conns
            else "    # per-address connection limit disabled (--max-conns-per-ip 0)"
        ),
        "LIMIT_CONN": (
            f"        limit_conn bastionpay_per_ip {conns};"
            if conns
            else "        # limit_conn disabled (--max-conns-per-ip 0)"
        ),
    }


def render(args: argparse.Namespace) -> Path:
    """Write nginx.conf and the ModSecurity files into the prefix; returns nginx.conf's path."""
    values = build_values(args)
    prefix = Path(values["PREFIX"])
    prefix.mkdir(parents=True, exist_ok=True, mode=0o750)
    for sub in DIRECTORIES:
        (prefix / sub).mkdir(parents=True, exist_ok=True, mode=0o750)
    for name, source in TEMPLATES.items():
        text = substitute(source.read_text(), values, source)
        write(prefix / name, text)
    for name, source in COPIES.items():
        target = prefix / name
        shutil.copyfile(source, target)
        target.chmod(0o640)
    return prefix / "nginx.conf"


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o640)
    tmp.replace(path)  # atomic: a reload never sees half a file


def check(nginx: str, prefix: Path) -> int:
    """`nginx -t` on the rendered files (also parses every ModSecurity rule)."""
    binary = shutil.which(nginx) or nginx
    proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [binary, "-t", "-q", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    sys.stderr.write(proc.stderr)
    return proc.returncode


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Render nginx + ModSecurity (OWASP CRS) for BastionPay into a prefix dir."
    )
    p.add_argument("--listen", required=True, help="HOST:PORT nginx listens on (TLS)")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the api (HTTPS)")
    p.add_argument("--cert", type=Path, required=True, help="edge certificate chain (PEM)")
    p.add_argument("--key", type=Path, required=True, help="edge private key (PEM)")
    p.add_argument(
        "--upstream-ca", type=Path, required=True, help="CA the api's certificate must chain to"
    )
    p.add_argument("--prefix", type=Path, required=True, help="directory to render into")
    p.add_argument(
        "--upstream-name",
        default=None,
        help="DNS name to verify in the api's certificate (default: the upstream host; "
        "'localhost' for a loopback address)",
    )
    p.add_argument("--server-name", default="_", help="nginx server_name (default: _)")
    p.add_argument("--workers", default="auto", help="worker_processes (default: auto)")
    p.add_argument(
        "--user",
        default=None,
        help="USER[:GROUP] the workers run as when nginx starts as root (default: nobody)",
    )
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument(
        "--max-conns-per-ip",
        type=int,
        default=DEFAULT_MAX_CONNS_PER_IP,
        help="concurrent connections per client address (0: no limit)",
    )
    p.add_argument(
        "--client-timeout",
        type=int,
        default=DEFAULT_CLIENT_TIMEOUT_S,
        help="seconds a client may take to send its headers, or pause while sending its body",
    )
    p.add_argument("--crs-rules-dir", type=Path, default=DEFAULT_CRS_RULES)
    p.add_argument("--modsecurity-module", type=Path, default=DEFAULT_MODULE)
    p.add_argument(
        "--check", action="store_true", help="run `nginx -t` on the result (exit status is its)"
    )
    p.add_argument("--nginx", default="nginx", help="nginx binary for --check")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        conf = render(args)
    except RenderError as exc:
        sys.stderr.write(f"render.py: {exc}\n")
        return 2
    prefix = conf.parent
    sys.stdout.write(f"rendered {conf}\nrun: nginx -p {prefix} -c {conf} -g 'daemon off;'\n")
    if args.check:
        return check(args.nginx, prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
