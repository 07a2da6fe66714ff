"""The egress firewall for tenant code: nftables rules matched on the socket owner's uid.

Every function identity and pipeline step runs as a uid of its own at or above
``STRATUS_SANDBOX_UID_BASE`` (apps/engine/sandbox/, apps/pipelines/runner/steps.py). One table,
``inet stratus``, holds one output chain that looks only at new connections of those uids
(``meta skuid``), so the console, its database clients and everything else on the host are
untouched, and the cost is one comparison per new connection:

1. DNS to the resolvers in /etc/resolv.conf (port 53) is allowed: functions resolve names.
2. What the platform protects (``egress.protected_endpoints``: the console's port on every
   address of the host, its database, Redis, the metadata service) is refused, whatever an
   environment allows (each confining process's ``platform-<pid>`` chain).
3. What an environment's ``egress_allow`` opens is accepted: the ``identities`` verdict map
   jumps from a uid to its own chain (``id-<uid>``) of accept rules (a chain, not a set, so
   entries may overlap).
4. Loopback, link-local, private and the other special ranges (``egress.BLOCKED_V4/V6``), and
   every address of the host itself (``fib daddr type local``), are refused.
5. Everything else (the public internet) is accepted.

A refused connection fails at once with EHOSTUNREACH ("No route to host"; EACCES over IPv6):
an ICMP administratively-prohibited answer, where a silent drop would leave TCP retrying the
SYN for minutes. Unix sockets are not IP: tenant code cannot reach the host's by path because
/run is hidden from it and the engine's own sockets are owner-only.

Every change is one ``nft -f`` transaction (atomic; the identities map and the per-uid chains
survive a rebuild of the output chain), under a host-wide lock, so several processes (the
supervisor and pipeline workers) share the table; each changes only its own chains. Needs
root and the ``nft`` binary (Debian's ``nftables`` package); without them
``Firewall.available`` is False and ``problem`` says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from apps.core.isolation.egress import BLOCKED_V4, BLOCKED_V6, EgressRule, Protected, parse_egress_rule

logger = logging.getLogger(__name__)

TABLE = "stratus"
UID_MAX = 4294967294
LOCK_PATH = Path("/run/lock/stratus-nft.lock") if Path("/run/lock").is_dir() else Path("/var/lock/stratus-nft.lock")
REJECT = "reject with icmpx admin-prohibited"  # EHOSTUNREACH / EACCES at once, no SYN retries


def resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    found: list[str] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(fields[1].split("%")[0])))
            except ValueError:
                continue
    return found


class Firewall:
    def __init__(self, uid_base: int) -> None:
        self.uid_base = int(uid_base)
        self.nft = shutil.which("nft") or next(
            (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None
        )
        self.problem = ""
        self.ready = False
        self._applied: dict[int, tuple[str, ...]] = {}  # uid -> its rules, as applied
        self._lock = threading.Lock()
        if os.geteuid() != 0:
            self.problem = "the engine does not run as root"
        elif self.nft is None:
            self.problem = "nft is not installed (Debian: apt-get install nftables)"

    @property
    def available(self) -> bool:
        return self.ready

    def describe(self) -> str:
        return "nftables egress policy" if self.ready else f"not enforced ({self.problem})"

    # --- nft --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One nft transaction (and the look that precedes it) at a time across processes."""
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _nft(self, *args: str, script: str | None = None) -> str:
        assert self.nft is not None
        result = subprocess.run(  # noqa: S603 - fixed binary, script on stdin
            [self.nft, *args], input=script, capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"nft failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def _run(self, script: str) -> None:
        with self._locked():
            self._nft("-f", "-", script=script)

    def _platform_chains(self) -> list[str]:
        """The ``platform-<pid>`` chains in the table now."""
        try:
            listing = json.loads(self._nft("-j", "list", "chains", "inet"))
        except (RuntimeError, ValueError):
            return []
        return [
            item["chain"]["name"]
            for item in listing.get("nftables", [])
            if "chain" in item
            and item["chain"].get("table") == TABLE
            and str(item["chain"].get("name", "")).startswith("platform-")
        ]

    # --- the table --------------------------------------------------------------------------

    def install(self, protected: Iterable[Protected], dns: Iterable[str] | None = None) -> bool:
        """Build (or rebuild) the table; True when the policy is enforced.

        Each process that confines tenant code (the supervisor, pipeline workers) keeps the
        endpoints it protects in a chain of its own, ``platform-<pid>``, and the output chain
        jumps to every live process's chain: the union holds even where their settings
        differ (a web process listening on a port the others do not know). Chains of
        processes that are gone are removed."""
        if os.geteuid() != 0 or self.nft is None:
            return False
        dns = list(resolvers() if dns is None else dns)
        mine = f"platform-{os.getpid()}"
        deny_rules = sorted({_deny_rule(item) for item in protected})
        blocked4 = ", ".join(str(n) for n in BLOCKED_V4)
        blocked6 = ", ".join(str(n) for n in BLOCKED_V6)
        try:
            with self._locked():
                existing = self._platform_chains()
                dead = [c for c in existing if c != mine and not _alive(c.removeprefix("platform-"))]
                live = sorted({*(c for c in existing if c not in dead), mine})
                lines = [
                    f"add table inet {TABLE}",
                    f"add map inet {TABLE} identities {{ type uid : verdict; }}",
                    f"add chain inet {TABLE} {mine}",
                    f"flush chain inet {TABLE} {mine}",
                    *(f"add rule inet {TABLE} {mine} {rule}" for rule in deny_rules),
                    f"add chain inet {TABLE} output {{ type filter hook output priority filter; policy accept; }}",
                    f"flush chain inet {TABLE} output",
                    f"add rule inet {TABLE} output meta skuid != {self._lowest_tenant_uid()}-{UID_MAX} accept",
                    f"add rule inet {TABLE} output ct state established,related accept",
                    *(
                        f"add rule inet {TABLE} output meta l4proto {{ tcp, udp }} "
                        f"{'ip' if ipaddress.ip_address(a).version == 4 else 'ip6'} daddr {a} th dport 53 accept"
                        for a in dns
                    ),
                    *(f"add rule inet {TABLE} output jump {chain}" for chain in live),
                    f"add rule inet {TABLE} output meta skuid vmap @identities",
                    f"add rule inet {TABLE} output ip daddr {{ {blocked4} }} {REJECT}",
                    f"add rule inet {TABLE} output ip6 daddr {{ {blocked6} }} {REJECT}",
                    f"add rule inet {TABLE} output fib daddr type {{ local, broadcast, multicast, anycast }} {REJECT}",
                ]
                for chain in dead:
                    lines += [f"flush chain inet {TABLE} {chain}", f"delete chain inet {TABLE} {chain}"]
                self._nft("-f", "-", script="\n".join(lines) + "\n")
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            self.problem = str(exc)
            self.ready = False
            logger.warning("egress firewall not installed: %s", exc)
            return False
        self.ready = True
        self.problem = ""
        return True

    # --- per-uid allow-lists ----------------------------------------------------------------

    def _lowest_tenant_uid(self) -> int:
        """Our base, or a lower one another running installation on this host claimed: the table
        is shared, and the last process to write this rule must not exempt the others' tenants."""
        from apps.core.isolation.uid_ranges import DEFAULT_REGISTRY, lowest_claimed_uid

        try:
            from django.conf import settings

            registry = Path(getattr(settings, "STRATUS_UID_REGISTRY", DEFAULT_REGISTRY))
        except Exception:  # noqa: BLE001 - without Django settings: the default place
            registry = DEFAULT_REGISTRY
        try:
            lowest = lowest_claimed_uid(registry)
        except OSError as exc:
            logger.warning("uid claims unreadable in %s: %s", registry, exc)
            lowest = None
        return min(self.uid_base, lowest) if lowest is not None else self.uid_base

    def pending(self, uid: int, entries: Iterable[str]) -> bool:
        """Whether ``allow(uid, entries)`` has work to do (cheap: no nft call)."""
        return self.ready and self._applied.get(uid) != tuple(sorted(set(entries)))

    def allow(self, uid: int, entries: Iterable[str]) -> None:
        """Make ``uid``'s allowed addresses exactly ``entries`` (an environment's egress_allow,
        already validated), in one transaction. A no-op when they did not change; the first
        call for a uid also drops what an earlier process left in its chain."""
        if not self.ready:
            return
        wanted = tuple(sorted(set(entries)))
        with self._lock:
            if self._applied.get(uid) == wanted:
                return
            chain = f"id-{int(uid)}"
            script = f"add chain inet {TABLE} {chain}\nflush chain inet {TABLE} {chain}\n"
            for entry in wanted:
                script += f"add rule inet {TABLE} {chain} {_accept_rule(parse_egress_rule(entry))}\n"
            script += f"add element inet {TABLE} identities {{ {int(uid)} : jump {chain} }}\n"
            self._run(script)
            self._applied[uid] = wanted

    def forget(self, uid: int) -> None:
        """Remove ``uid``'s chain (a pipeline run is over): it reaches nothing private again."""
        if not self.ready:
            return
        with self._lock:
            chain = f"id-{int(uid)}"
            # "add" first, so that the deletes find what they delete even if nothing was there.
            self._run(
                f"add chain inet {TABLE} {chain}\n"
                f"add element inet {TABLE} identities {{ {int(uid)} : jump {chain} }}\n"
                f"delete element inet {TABLE} identities {{ {int(uid)} }}\n"
                f"flush chain inet {TABLE} {chain}\n"
                f"delete chain inet {TABLE} {chain}\n"
            )
            self._applied.pop(uid, None)


def _alive(pid: str) -> bool:
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def _deny_rule(item: Protected) -> str:
    if item.network is None:  # a port on every address of this host
        assert item.ports is not None
        return f"meta l4proto {{ tcp, udp }} fib daddr type local th dport {_ports(item.ports)} {REJECT}"
    family = "ip" if item.network.version == 4 else "ip6"
    net = item.network
    addr = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    if item.ports is None:
        return f"{family} daddr {addr} {REJECT}"
    return f"meta l4proto {{ tcp, udp }} {family} daddr {addr} th dport {_ports(item.ports)} {REJECT}"


def _ports(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def _accept_rule(rule: EgressRule) -> str:
    net = rule.network
    family = "ip" if net.version == 4 else "ip6"
    addr = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    if rule.ports is None:
        return f"{family} daddr {addr} accept"
    return f"meta l4proto {{ tcp, udp }} {family} daddr {addr} th dport {_ports(rule.ports)} accept"
