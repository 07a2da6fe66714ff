"""Egress rules: which addresses tenant code may reach.

Function instances and pipeline steps may open connections to the public internet, and to
nothing of the host's or its network's: loopback, link-local (cloud metadata), private,
shared (CGNAT) and the other special ranges below are blocked, and so is every address of
the host itself. An environment can allow some of those back (``Environment.egress_allow``:
a database of its own on the private network, a test port on loopback), except what the
platform protects (``protected_endpoints``: the console's own port, its database, Redis):
no tenant rule reaches those.

An entry is an address or a network, with an optional port or port range:

    10.0.3.7            every port of one address
    10.0.3.7:5432       one port
    192.168.1.0/24      a network
    10.0.0.0/8:8000-8099
    [fd00::5]:443       IPv6 in brackets when a port follows
    fd00::/8

``parse_egress_rules`` checks entries (errors name the entry and the rule);
``apps/core/isolation/firewall.py`` turns them into nftables set elements.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RULES = 64

# Blocked for tenant code unless an environment allows them back. Public addresses stay
# reachable (functions call APIs on the internet).
BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (CGNAT, tailnets)
        "127.0.0.0/8",  # loopback: the console, PostgreSQL, Redis, the engine
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped (the IPv4 rules apply to what they map)
        "64:ff9b::/96",  # NAT64 (reaches IPv4 through a translator)
        "fc00::/7",  # unique local (and AWS's metadata fd00:ec2::254)
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)

_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


@dataclass(frozen=True)
class EgressRule:
    network: IPNetwork
    ports: tuple[int, int] | None  # inclusive range; None: every port

    def __str__(self) -> str:
        net = self.network
        addr = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        if self.ports is None:
            return addr
        port = str(self.ports[0]) if self.ports[0] == self.ports[1] else f"{self.ports[0]}-{self.ports[1]}"
        return f"[{addr}]:{port}" if net.version == 6 else f"{addr}:{port}"

    def covers(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None) -> bool:
        if address.version != self.network.version or address not in self.network:
            return False
        if port is None or self.ports is None:
            return True
        return self.ports[0] <= port <= self.ports[1]


@dataclass(frozen=True)
class Protected:
    """Something of the platform's that no tenant rule opens: a network (None: every address
    of this host) and ports (None: every port)."""

    network: IPNetwork | None
    ports: tuple[int, int] | None
    what: str

    def __str__(self) -> str:
        where = "any address of this host" if self.network is None else str(EgressRule(self.network, None))
        if self.ports is None:
            return where
        port = str(self.ports[0]) if self.ports[0] == self.ports[1] else f"{self.ports[0]}-{self.ports[1]}"
        return f"{where} port {port}"

    def contains(self, rule: EgressRule) -> bool:
        """Whether everything ``rule`` opens is protected (such a rule could never work)."""
        if self.network is None or rule.network.version != self.network.version:
            return False
        if not rule.network.subnet_of(self.network):  # type: ignore[arg-type]
            return False
        if self.ports is None:
            return True
        return rule.ports is not None and self.ports[0] <= rule.ports[0] and rule.ports[1] <= self.ports[1]


def parse_egress_rule(entry: object) -> EgressRule:
    """One entry; ValueError with a message naming the rule it broke."""
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError("must be an address or network as a string, e.g. '10.0.3.7:5432'")
    text = entry.strip()
    host, port_text = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"'{text}': an IPv6 address in brackets needs the closing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"'{text}': after ']' only ':port' may follow")
            port_text = rest[1:]
    elif text.count(":") == 1:  # IPv4 (or network) with a port; bare IPv6 has several colons
        host, port_text = text.split(":")
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(
            f"'{text}': not an IP address or network (host names are not accepted: they can change what they point to)"
        ) from None
    if network.prefixlen == 0:
        raise ValueError(f"'{text}': a rule cannot open every address")
    ports = None
    if port_text is not None:
        match = _PORT.match(port_text)
        if not match:
            raise ValueError(f"'{text}': the port must be a number or a range like 8000-8099")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"'{text}': ports are 1-65535, low to high")
        ports = (low, high)
    return EgressRule(network, ports)


def parse_egress_rules(entries: object, protected: tuple[Protected, ...] = ()) -> list[EgressRule]:
    """A whole allow-list; ValueError naming every bad entry. A rule that opens only what the
    platform protects is refused (it could never work); a wider rule is accepted, and the
    firewall still drops the protected endpoints inside it."""
    if not isinstance(entries, list):
        raise ValueError("must be a list of addresses or networks")
    if len(entries) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} entries")
    rules, problems = [], []
    for entry in entries:
        try:
            rule = parse_egress_rule(entry)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        refused = next((p for p in protected if p.contains(rule)), None)
        if refused is not None:
            problems.append(f"'{entry}': {refused} is {refused.what}, which functions and steps may never reach")
            continue
        rules.append(rule)
    if problems:
        raise ValueError("; ".join(problems))
    return rules


def blocked(address: str) -> bool:
    """Whether tenant code is kept from ``address`` unless an environment allows it."""
    ip = ipaddress.ip_address(address)
    ranges: tuple[IPNetwork, ...] = BLOCKED_V4 if ip.version == 4 else BLOCKED_V6
    return any(ip in net for net in ranges)


def _single(address: str, port: int | None, what: str) -> Protected:
    ip = ipaddress.ip_address(address.split("%")[0])
    network = ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")
    return Protected(network, None if port is None else (port, port), what)


def _host_protected(host: str, port: int, what: str) -> list[Protected]:
    import socket

    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [_single(str(info[4][0]), port, what) for info in infos]


def _url_protected(url: str | None, default_port: int, what: str) -> list[Protected]:
    if not url:
        return []
    parts = urlsplit(url)
    if not parts.hostname:
        return []  # a Unix socket: no network path to it, and /run is hidden from tenant code
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return _host_protected(parts.hostname, port, what)


def protected_endpoints() -> tuple[Protected, ...]:
    """What no tenant rule opens: the console's port on every address of this host, its
    database, broker and channel layer, the cloud metadata addresses, and what the operator
    lists in STRATUS_EGRESS_DENY (same syntax as the rules)."""
    from django.conf import settings

    found: list[Protected] = [
        _single("169.254.169.254", None, "the cloud metadata service"),
        _single("fd00:ec2::254", None, "the cloud metadata service"),
    ]
    public = urlsplit(settings.PUBLIC_URL)
    ports = {public.port or (443 if public.scheme == "https" else 80)}
    ports.update(int(p) for p in getattr(settings, "STRATUS_LISTEN_PORTS", []))
    for port in sorted(ports):
        found.append(Protected(None, (port, port), "the console"))
        found += [_single(a, port, "the console") for a in ("127.0.0.1", "::1")]
    db = settings.DATABASES["default"]
    engine, host = str(db.get("ENGINE", "")), str(db.get("HOST") or "")
    if host and not host.startswith("/") and engine.endswith(("postgresql", "mysql")):
        default = 5432 if engine.endswith("postgresql") else 3306
        found += _host_protected(host, int(db.get("PORT") or default), "the console's database")
    found += _url_protected(getattr(settings, "REDIS_URL", None), 6379, "the console's Redis")
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if broker and not broker.startswith("memory"):
        found += _url_protected(broker, 6379 if broker.startswith("redis") else 5672, "the task broker")
    for entry in getattr(settings, "STRATUS_EGRESS_DENY", []):
        rule = parse_egress_rule(entry)
        found.append(Protected(rule.network, rule.ports, "denied by STRATUS_EGRESS_DENY"))
    return tuple(dict.fromkeys(found))
