"""Deploy checks (`manage.py check --deploy`) of the origin functions are served from
(STRATUS_FUNCTIONS_URL): it must share no cookies with the console and be unable to set any
for it. The gateway logs the same warnings when it starts. Registered from CoreConfig.ready().

ids: stratus.W001 functions on the console's host, stratus.W002 a domain and its subdomain
or a shared parent domain, stratus.W003 a loopback functions origin beside a public console.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parent_domain(host: str) -> str | None:
    """The registrable domain, approximately (no Public Suffix List here): the last two labels,
    or three under a two-letter country code with a short second level (example.co.uk)."""
    labels = host.split(".")
    if len(labels) < 2:
        return None
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def origin_problems(*, console_url: str, functions_url: str, production: bool) -> list[tuple[str, str]]:
    """What is wrong with serving functions from ``functions_url`` beside a console at
    ``console_url``, as (check id, message): a host whose cookies the console shares, or which
    can set cookies the console receives. Empty when the origins are apart."""
    console = (urlsplit(console_url).hostname or "").rstrip(".")
    functions = (urlsplit(functions_url).hostname or "").rstrip(".")
    how = "Serve functions from a host name of their own (README, Production, Origins)."
    problems: list[tuple[str, str]] = []
    if not console or not functions:
        return problems
    parent = _parent_domain(functions)
    if functions == console:
        problems.append(
            (
                "stratus.W001",
                f"STRATUS_FUNCTIONS_URL ({functions_url}) is on the console's host ({console}): a signed-in visitor "
                "would send functions the console's cookies. The gateway then serves /fn/ only sandboxed and without "
                f"cookies, which breaks functions that use cookies. {how}",
            )
        )
    elif _is_ip(console) or _is_ip(functions):
        pass  # an IP address has no subdomains, and no cookie can name it as a Domain
    elif functions.endswith("." + console) or console.endswith("." + functions):
        problems.append(
            (
                "stratus.W002",
                f"STRATUS_FUNCTIONS_URL ({functions}) and the console ({console}) are a domain and its subdomain: "
                "cookies set for the parent domain reach both, so functions can set cookies the console receives "
                f"(or receive the console's). {how}",
            )
        )
    elif parent is not None and parent == _parent_domain(console):
        problems.append(
            (
                "stratus.W002",
                f"STRATUS_FUNCTIONS_URL ({functions}) and the console ({console}) share the domain {parent}: unless "
                f"it is on the Public Suffix List, a function can set cookies for {parent} that the console "
                "receives. Serve functions from a registrable domain of their own, such as "
                "fn.example-usercontent.net (README, Production, Origins).",
            )
        )
    if production and functions in _LOOPBACK_NAMES and console not in _LOOPBACK_NAMES:
        problems.append(
            (
                "stratus.W003",
                f"STRATUS_FUNCTIONS_URL is {functions_url}, a loopback address other machines cannot reach, while "
                f"the console is at {console_url}: set it to the functions' public origin (https://fn.example.net).",
            )
        )
    return problems


@register(Tags.security, deploy=True)
def check_function_origin(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from apps.core.origins import functions_origin

    problems = origin_problems(
        console_url=settings.PUBLIC_URL,
        functions_url=functions_origin().check_url,
        production=settings.PRODUCTION,
    )
    return [CheckWarning(message, id=check_id) for check_id, message in problems]
