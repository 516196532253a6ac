"""IP networks: allow-lists (I7) and the client address behind trusted proxies.

Behind nginx (deploy/nginx) every connection comes from the proxy, so rate limits per IP and
allow-lists need the address the proxy saw. `X-Forwarded-For` is believed only when the peer is a
configured trusted proxy, and then read from the right: the first address that is not itself a
trusted proxy is the client. Anything left of it was written by the client and proves nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDRs ("10.0.0.0/8", "2001:db8::/32" or one address); ValueError names a bad one."""
    parsed: list[Network] = []
    for raw in cidrs:
        text = raw.strip()
        if not text:
            continue
        try:
            parsed.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {text[:60]!r}") from None
    return tuple(parsed)


def parse_address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client reaching a dual-stack socket shows up as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def contains(networks: Sequence[Network], address: Address | None) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]
) -> str | None:
    """The client's address: the peer, or the nearest untrusted hop when the peer is a proxy."""
    peer_address = parse_address(peer)
    if peer_address is None:
        return peer
    if not forwarded_for or not contains(trusted_proxies, peer_address):
        return str(peer_address)
    hops = [hop.strip() for hop in forwarded_for.split(",")][-32:]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            # Garbage in the chain: stop believing it and attribute the request to the proxy.
            return str(peer_address)
        if not contains(trusted_proxies, address):
            return str(address)
    return str(peer_address)
