"""Where functions are served: the origin of tenant code (STRATUS_FUNCTIONS_URL).

Two shapes:

- **One host for all functions**, paths apart: ``https://fn.example.net`` gives
  ``https://fn.example.net/fn/<org>/<project>/<env>/<function>/``. Simple (one DNS name, one
  certificate) and enough to keep functions away from the console's cookies, which is what the
  embedded default does (``http://localhost:<PORT>`` beside a console on 127.0.0.1). Functions
  of different organizations share that origin, though: one's page can read cookies and
  storage another's set there.
- **A host per function and environment**, placeholders as whole labels:
  ``https://{function}.{env}.{project}.{org}.fn.example.net`` gives
  ``https://hello.prod.shop.acme.fn.example.net/``. Every function is an origin of its own, so
  neither the console nor any other function shares its cookies or storage (put the parent
  domain on the Public Suffix List, as Lambda's lambda-url.*.on.aws is, so no function can set
  a cookie for all of them). Needs wildcard DNS and certificates for the names.

``functions_origin()`` reads the setting once per value; the gateway and ``binding_url`` ask it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

PLACEHOLDERS = ("org", "project", "env", "function")
_LABEL = rb"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"


@dataclass(frozen=True)
class FunctionsOrigin:
    url: str  # the setting, without a trailing slash
    per_function: bool  # a host per function (placeholders) rather than /fn/ paths
    host: bytes  # the functions host as the Host header spells it (per function: the fixed part)
    pattern: re.Pattern[bytes] | None  # per function: matches a function's host, with the names

    def url_for(self, *, org: str, project: str, env: str, function: str) -> str:
        if self.per_function:
            return self.url.format(org=org, project=project, env=env, function=function) + "/"
        return f"{self.url}/fn/{org}/{project}/{env}/{function}/"

    def route_of(self, host: bytes) -> tuple[str, str, str, str] | None:
        """Per function: the (org, project, env, function) a request's host names, if any."""
        if self.pattern is None:
            return None
        match = self.pattern.fullmatch(host)
        if match is None:
            return None
        names = {k: v.decode("ascii") for k, v in match.groupdict().items()}
        return names["org"], names["project"], names["env"], names["function"]

    def owns(self, host: bytes) -> bool:
        """Whether ``host`` is on the functions' side (the functions host, or under it)."""
        if not self.host:
            return False
        return host == self.host or (self.per_function and host.endswith(b"." + self.host))

    @property
    def check_url(self) -> str:
        """A plain URL on the functions' side, for the checks that compare it with the console."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{self.host.decode('ascii')}{port}"


def host_key(hostname: str) -> bytes:
    """A host name as the Host header spells it, without port or trailing dot."""
    hostname = hostname.lower().rstrip(".")
    if ":" in hostname:  # IPv6, bracketed in the Host header
        return f"[{hostname}]".encode("ascii")
    return hostname.encode("ascii") if hostname.isascii() else hostname.encode("idna")  # as browsers send it


def parse_functions_url(url: str) -> FunctionsOrigin:
    """ValueError naming the rule when ``url`` is not an origin (scheme and host, no path), or
    its placeholders are not each a whole label of the host, once each, all four."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"STRATUS_FUNCTIONS_URL has a bad port: {url!r}") from None
    hostname = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or not hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError(
            "STRATUS_FUNCTIONS_URL must be an origin, a scheme and a host name with no path "
            f"(for example https://fn.example.net or https://{{function}}.{{env}}.{{project}}.{{org}}.fn.example.net), "
            f"got {url!r}"
        )
    if "{" not in hostname:
        return FunctionsOrigin(url=url, per_function=False, host=host_key(hostname), pattern=None)
    labels = hostname.split(".")
    found = [label[1:-1] for label in labels if label.startswith("{")]

    def well_formed(label: str) -> bool:
        if "{" not in label and "}" not in label:
            return True
        return label.startswith("{") and label.endswith("}") and label[1:-1] in PLACEHOLDERS

    if sorted(found) != sorted(PLACEHOLDERS) or not all(well_formed(label) for label in labels):
        raise ValueError(
            "STRATUS_FUNCTIONS_URL: a host per function names each of {org}, {project}, {env} and {function} "
            "once, each as a whole label (https://{function}.{env}.{project}.{org}.fn.example.net), "
            f"got {url!r}"
        )
    fixed = [label for label in labels if not label.startswith("{")]
    first_fixed = next(i for i, label in enumerate(labels) if not label.startswith("{")) if fixed else len(labels)
    if any(label.startswith("{") for label in labels[first_fixed:]) or not fixed:
        raise ValueError(
            "STRATUS_FUNCTIONS_URL: the placeholders come first and a fixed domain of the functions' own follows "
            f"(https://{{function}}.{{env}}.{{project}}.{{org}}.fn.example.net), got {url!r}"
        )
    regex = rb"\.".join(
        b"(?P<%s>%s)" % (label[1:-1].encode(), _LABEL) if label.startswith("{") else re.escape(host_key(label))
        for label in labels
    )
    return FunctionsOrigin(
        url=url,
        per_function=True,
        host=host_key(".".join(labels[first_fixed:])),
        pattern=re.compile(regex),
    )


@lru_cache(maxsize=8)
def _parsed(url: str) -> FunctionsOrigin:
    return parse_functions_url(url)


def functions_origin() -> FunctionsOrigin:
    from django.conf import settings

    return _parsed(settings.STRATUS_FUNCTIONS_URL)
