"""Where a repository URL leads, and whether this server may go there.

The worker's git fetches a project's repository URL, so the URL is a request this server
makes on a tenant's behalf. A URL leading to loopback, link-local (the cloud metadata
service), private, shared (CGNAT), multicast or unspecified addresses (the ranges tenant code
is kept from, ``apps.core.isolation.egress.blocked``), or to an address of this server itself,
would reach the host's and its network's services: a request forgery. Those are refused, and
so are local paths (``file://``, ``/abs/path``: a clone would read the server's own files),
unless the operator allows them with ``STRATUS_REPOSITORY_ALLOW_LOCAL`` (a git server on the
private network; the tests).

Checked twice:

- when the URL is saved (``repository_services.validate_url``: 400 naming the rule). A name
  that does not resolve then is accepted: there is nothing to check yet;
- before every fetch (``mirror.mirror_fetch``), after resolving the name again, since a DNS
  answer may change in between (DNS rebinding: public when connected, 127.0.0.1 when
  fetched). A name that does not resolve then is refused.

The fetch then goes to the addresses just checked, not to a second answer git would get by
resolving the name itself: ``http(s)://`` through libcurl's resolve list
(``http.curloptResolve=<host>:<port>:<addresses>``, git 2.37 and later) with redirects off
(``http.followRedirects=false``: a redirect would lead to a host nobody checked), ``ssh://``
and ``user@host:path`` through ``ssh -o HostName=<address>`` (``HostKeyAlias`` keeps the
known host key under the name). Only ``git://`` (git's own daemon protocol) has no such
option: git resolves the name again, a window of milliseconds after the check in which a
rebinding DNS server could answer differently. An HTTP(S) proxy in the worker's environment
(``https_proxy``) resolves names itself; the check here still refuses names that resolve to
local addresses on this server, but the proxy's answer is its own.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from dataclasses import dataclass
from socket import getaddrinfo  # this module's own name for it: tests put a fake resolver here
from urllib.parse import urlsplit

from django.conf import settings

from apps.core.errors import DomainError
from apps.core.isolation.egress import blocked

# git@github.com:org/repo.git (git's "scp-like" syntax: ssh to the host).
SCP_RE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\s]+)$")
NETWORK_SCHEMES = ("https", "http", "ssh", "git")
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")

RULE = (
    "repository URLs may not lead to loopback, link-local, private, shared (CGNAT), multicast or "
    "unspecified addresses, nor to an address of this server (STRATUS_REPOSITORY_ALLOW_LOCAL allows them)"
)
LOCAL_RULE = (
    "local repository paths (file:// or /path) are not allowed on this server: a clone from a path "
    "reads the server's own files (STRATUS_REPOSITORY_ALLOW_LOCAL allows them)"
)


class AddressNotAllowed(DomainError):
    """The URL leads somewhere this server does not fetch from; the message names the rule."""

    code = "address_not_allowed"


@dataclass(frozen=True)
class Remote:
    scheme: str  # https | http | ssh | git | file
    host: str  # "" for a local path
    port: int | None  # the port git will connect to (the scheme's default when none is given)


@dataclass(frozen=True)
class Plan:
    """What a fetch of the URL may do: the remote, and the addresses git is to connect to
    (checked, unless the operator allows local ones); empty when git resolves the name itself
    (a local path, an address literal, or ``git://``)."""

    remote: Remote
    addresses: tuple[str, ...]

    def git_config(self) -> list[tuple[str, str]]:
        """``git -c`` settings for the fetch (given as GIT_CONFIG_KEY_n/VALUE_n)."""
        config = [("http.followRedirects", "false")]
        if self.addresses and self.remote.scheme in ("https", "http"):
            listed = ",".join(f"[{a}]" if ":" in a else a for a in self.addresses)
            config.append(("http.curloptResolve", f"{self.remote.host}:{self.remote.port}:{listed}"))
        return config

    def ssh_options(self) -> str:
        """Options for the ssh command git runs: connect to the checked address, keep the
        known host key under the name."""
        if not self.addresses or self.remote.scheme != "ssh":
            return ""
        return f"-o HostName={shlex.quote(self.addresses[0])} -o HostKeyAlias={shlex.quote(self.remote.host)}"


def parse(url: str) -> Remote | None:
    """The remote a URL names, or None when it is none of the forms fetched here."""
    url = url.strip()
    scp = SCP_RE.match(url)
    if scp:
        return Remote("ssh", scp.group("host").lower(), DEFAULT_PORTS["ssh"])
    parts = urlsplit(url)
    if parts.scheme in NETWORK_SCHEMES:
        if not parts.hostname:
            return None
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return None
        return Remote(parts.scheme, parts.hostname, port)
    if parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
        return Remote("file", "", None)
    return None


def resolve(host: str, port: int | None) -> list[str]:
    """The addresses ``host`` resolves to now, in the resolver's order; [] when it does not."""
    try:
        infos = getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        return []
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def own_address(address: str) -> bool:
    """Whether ``address`` is one of this server's own (binding to it succeeds only then). A
    host that lets processes bind to any address (``ip_nonlocal_bind``) cannot be asked this
    way: there the ranges alone decide."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sysctl = f"/proc/sys/net/ipv{ip.version}/ip_nonlocal_bind"
    try:
        with open(sysctl) as fh:
            if fh.read().strip() not in ("", "0"):
                return False
    except OSError:
        pass
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((str(ip), 0))
        except OSError:
            return False
    return True


def refused_kind(address: str) -> str:
    """Why a repository URL may not lead to ``address`` ("a loopback address", "an address of
    this server", ...); "" when it may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not blocked(str(ip)):
        return "an address of this server" if own_address(str(ip)) else ""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    return "a reserved address"


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check(url: str, *, at_fetch: bool) -> Plan:
    """The plan for fetching ``url``, or AddressNotAllowed naming the rule. ``at_fetch``: right
    before git runs, where a name that does not resolve is refused too (git would resolve it
    itself, unchecked)."""
    allow = bool(settings.STRATUS_REPOSITORY_ALLOW_LOCAL)
    remote = parse(url)
    if remote is None:
        message = "Use an https://, ssh:// or git@host:path URL."
        raise AddressNotAllowed(message, fields={"url": [message]})
    if remote.scheme == "file":
        if not allow:
            raise AddressNotAllowed(_sentence(LOCAL_RULE), fields={"url": [_sentence(LOCAL_RULE)]})
        return Plan(remote, ())
    literal = _literal(remote.host)
    addresses = [literal] if literal else resolve(remote.host, remote.port)
    if not addresses:
        if at_fetch and not allow:
            raise DomainError(
                f"The repository host '{remote.host}' does not resolve: nothing to check, so nothing is fetched.",
                code="fetch_failed",
            )
        return Plan(remote, ())
    if not allow:
        for address in addresses:
            kind = refused_kind(address)
            if kind:
                where = f"'{remote.host}' is" if literal else f"'{remote.host}' resolves to {address},"
                message = f"The repository host {where} {kind}: {RULE}."
                raise AddressNotAllowed(message, fields={"url": [message]})
    return Plan(remote, () if literal or remote.scheme == "git" else tuple(addresses))


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."
