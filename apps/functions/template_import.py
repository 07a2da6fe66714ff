"""Reading an existing project's definition: an AWS SAM ``template.yaml`` or a Serverless Framework
``serverless.yml`` (provider ``aws`` or ``tencent``), into the functions Stratus would create.

Pure: no database. ``parse_template`` returns a ``TemplatePlan`` (one ``ImportedFunction`` per
function, with what could not be carried over listed by name); ``import_services`` applies it.

Safety: the text is bounded (``MAX_TEMPLATE_BYTES``), parsed with PyYAML's SafeLoader (no Python
objects), with at most ``MAX_ALIASES`` aliases (no "billion laughs"), and the only tags accepted
are CloudFormation's short-form intrinsics (``!Ref``, ``!Sub``, ...), read as the plain data of
their long form (``{"Ref": ...}``); any other tag is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from apps.core.errors import DomainError

MAX_TEMPLATE_BYTES = 512 * 1024
MAX_ALIASES = 100
MAX_FUNCTIONS = 200

# CloudFormation's short-form intrinsic functions: their long form is {"Fn::<Name>": value}.
_INTRINSICS = (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAtt",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Condition",
)

_RUNTIMES = {
    # Lambda's runtime identifiers
    "python3.8": "python3.11",
    "python3.9": "python3.11",
    "python3.10": "python3.11",
    "python3.11": "python3.11",
    "python3.12": "python3.11",
    "python3.13": "python3.11",
    "nodejs16.x": "node20",
    "nodejs18.x": "node20",
    "nodejs20.x": "node20",
    "nodejs22.x": "node20",
}
_SCF_RUNTIME = re.compile(r"^(python|nodejs)(\d+)(?:\.(\d+))?$", re.IGNORECASE)

# SAM properties that map onto a Stratus function; everything else is listed as unsupported.
_SAM_MAPPED = {"Handler", "Runtime", "MemorySize", "Timeout", "Environment", "Events", "CodeUri", "FunctionName"}
_SAM_IGNORED_QUIETLY = {"Description"}  # carried over as the description
_SERVERLESS_MAPPED = {"handler", "runtime", "memorySize", "timeout", "environment", "events", "name", "description"}


@dataclass
class ImportedFunction:
    name: str
    config: dict[str, Any]  # runtime, handler, kind, memory_mb, timeout_s, env, description
    routes: list[dict[str, str]] = field(default_factory=list)  # {"method", "path"}
    event_format: str | None = None  # "apigw-v1" | "apigw-v2" | "scf"
    code_uri: str | None = None  # where the code lives in the project (SAM CodeUri / package)
    unsupported: list[str] = field(default_factory=list)  # property or event names, as written
    not_yet_supported: list[str] = field(default_factory=list)  # e.g. "Schedule event NightlyJob: triggers"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config,
            "routes": self.routes,
            "event_format": self.event_format,
            "code_uri": self.code_uri,
            "unsupported": self.unsupported,
            "not_yet_supported": self.not_yet_supported,
        }


@dataclass
class TemplatePlan:
    kind: str  # "sam" | "serverless"
    functions: list[ImportedFunction]
    unsupported: list[str]  # template-level: other resources, provider keys, plugins

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "functions": [f.as_dict() for f in self.functions],
            "unsupported": self.unsupported,
        }


def _invalid(message: str, rule: str = "template") -> DomainError:
    return DomainError(message, code="invalid_template", fields={"template": [f"{rule}: {message}"]})


# --- safe YAML --------------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader + CloudFormation's short-form intrinsics as data, and an alias budget."""

    aliases_seen = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen += 1
            if self.aliases_seen > MAX_ALIASES:
                raise _invalid(f"more than {MAX_ALIASES} YAML aliases", "aliases")
        return super().compose_node(parent, index)


def _intrinsic(name: str) -> Any:
    key = "Ref" if name == "Ref" else ("Condition" if name == "Condition" else f"Fn::{name}")

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {key: value}

    return construct


for _name in ("Ref", *_INTRINSICS):
    _TemplateLoader.add_constructor(f"!{_name}", _intrinsic(_name))


def _refuse_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    raise _invalid(f"the YAML tag {node.tag} is not allowed (only CloudFormation's !Ref, !Sub, ...)", "tags")


_TemplateLoader.add_multi_constructor("!", _refuse_tag)
_TemplateLoader.add_multi_constructor("tag:", _refuse_tag)


def load_yaml(text: str | bytes) -> dict[str, Any]:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise _invalid(f"the template is {len(raw)} bytes; templates are limited to {MAX_TEMPLATE_BYTES} bytes", "size")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise _invalid("the template is not UTF-8 text", "encoding") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise _invalid(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", "yaml") from None
    if not isinstance(data, dict):
        raise _invalid("the template must be a YAML mapping", "shape")
    return data


# --- common -----------------------------------------------------------------------------------


def function_name(logical_id: str) -> str:
    """A Stratus function name (lowercase slug) from a template's name: HelloWorldFunction ->
    hello-world-function."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", logical_id)
    slug = re.sub(r"[^a-z0-9]+", "-", spaced.lower()).strip("-")
    return slug[:50].strip("-") or "function"


def _runtime(value: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        return None
    known = _RUNTIMES.get(value.lower())
    if known:
        return known
    scf = _SCF_RUNTIME.match(value)  # SCF: Python3.9, Nodejs16.13
    if scf:
        return "python3.11" if scf.group(1).lower() == "python" else "node20"
    problems.append(f"{where}: runtime {value} (Stratus runs python3.11 and node20)")
    return None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _env(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    env: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            env[str(key)] = str(item)
        elif isinstance(item, bool):
            env[str(key)] = "true" if item else "false"
        else:
            # !Ref, !Sub, ${ssm:...}: resolved by CloudFormation or the framework, not by Stratus.
            problems.append(f"{where}: environment variable {key} (a reference to resolve at deploy time)")
    return env


def _config(
    *, runtime: str | None, handler: Any, memory: Any, timeout: Any, env: dict[str, str], description: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {"kind": "event"}
    if runtime:
        config["runtime"] = runtime
    if isinstance(handler, str):
        config["handler"] = handler
    if _number(memory) is not None:
        config["memory_mb"] = int(memory)
    if _number(timeout) is not None:
        config["timeout_s"] = math.ceil(timeout)  # whole seconds, as both platforms count them
    if env:
        config["env"] = env
    if isinstance(description, str):
        config["description"] = description[:500]
    return config


# --- AWS SAM ----------------------------------------------------------------------------------


def parse_sam(data: dict[str, Any]) -> TemplatePlan:
    resources = data.get("Resources")
    if not isinstance(resources, dict):
        raise _invalid("a SAM template needs a Resources mapping", "sam")
    globals_ = ((data.get("Globals") or {}).get("Function") or {}) if isinstance(data.get("Globals"), dict) else {}
    unsupported: list[str] = []
    functions: list[ImportedFunction] = []
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        rtype = resource.get("Type")
        if rtype != "AWS::Serverless::Function":
            unsupported.append(f"Resources.{logical_id} ({rtype})")
            continue
        props = {**globals_, **(resource.get("Properties") or {})}
        where = f"Resources.{logical_id}"
        problems: list[str] = []
        for key in props:
            if key not in _SAM_MAPPED and key not in _SAM_IGNORED_QUIETLY:
                problems.append(f"{where}.Properties.{key}")
        for key in resource:
            if key not in ("Type", "Properties"):
                problems.append(f"{where}.{key}")
        environment = props.get("Environment")
        env_vars = environment.get("Variables") if isinstance(environment, dict) else None
        name_value = props.get("FunctionName")
        fn = ImportedFunction(
            name=function_name(name_value if isinstance(name_value, str) else str(logical_id)),
            config=_config(
                runtime=_runtime(props.get("Runtime"), where, problems),
                handler=props.get("Handler"),
                memory=props.get("MemorySize"),
                timeout=props.get("Timeout"),
                env=_env(env_vars, where, problems),
                description=props.get("Description"),
            ),
            code_uri=props.get("CodeUri") if isinstance(props.get("CodeUri"), str) else None,
        )
        for event_id, event in (props.get("Events") or {}).items():
            etype = event.get("Type") if isinstance(event, dict) else None
            eprops = (event.get("Properties") or {}) if isinstance(event, dict) else {}
            ewhere = f"{where}.Events.{event_id}"
            if etype in ("Api", "HttpApi"):
                fmt = "apigw-v1" if etype == "Api" else _http_api_format(eprops)
                _add_route(fn, fmt, eprops.get("Method"), eprops.get("Path"), ewhere, problems)
                for key in eprops:
                    if key not in ("Method", "Path", "PayloadFormatVersion"):
                        problems.append(f"{ewhere}.Properties.{key}")
            elif etype in ("Schedule", "ScheduleV2"):
                fn.not_yet_supported.append(f"{ewhere} ({etype}): triggers do not exist in Stratus yet")
            else:
                problems.append(f"{ewhere} ({etype})")
        fn.unsupported = problems
        functions.append(fn)
    for key in data:
        if key not in ("AWSTemplateFormatVersion", "Transform", "Description", "Globals", "Resources", "Outputs"):
            unsupported.append(key)
    return TemplatePlan(kind="sam", functions=_bounded(functions), unsupported=unsupported)


def _http_api_format(props: dict[str, Any]) -> str:
    # HttpApi events default to payload format 2.0 in SAM; "1.0" keeps the REST shape.
    return "apigw-v1" if str(props.get("PayloadFormatVersion", "2.0")) == "1.0" else "apigw-v2"


def _add_route(fn: ImportedFunction, fmt: str, method: Any, path: Any, where: str, problems: list[str]) -> None:
    if fn.event_format is not None and fn.event_format != fmt:
        # One event format per function: the first one wins, the clash is named.
        problems.append(f"{where}: a second event format ({fmt}; the function keeps {fn.event_format})")
    else:
        fn.event_format = fmt
    fn.routes.append(
        {
            "method": str(method).upper() if isinstance(method, str) else "ANY",
            "path": path if isinstance(path, str) else "/",
        }
    )


def _bounded(functions: list[ImportedFunction]) -> list[ImportedFunction]:
    if len(functions) > MAX_FUNCTIONS:
        raise _invalid(f"the template defines {len(functions)} functions; at most {MAX_FUNCTIONS}", "functions")
    return functions


# --- Serverless Framework -----------------------------------------------------------------------


def parse_serverless(data: dict[str, Any]) -> TemplatePlan:
    provider = data.get("provider") or {}
    if isinstance(provider, str):
        provider = {"name": provider}
    pname = provider.get("name")
    if pname not in ("aws", "tencent"):
        raise _invalid(f"provider {pname!r} is not supported (aws and tencent are)", "provider")
    unsupported: list[str] = []
    for key in provider:
        if key not in ("name", "runtime", "memorySize", "timeout", "environment", "region", "stage"):
            unsupported.append(f"provider.{key}")
    for key in data:
        if key not in ("service", "provider", "functions", "frameworkVersion", "package", "useDotenv", "app", "org"):
            unsupported.append(key)
    functions_data = data.get("functions") or {}
    if not isinstance(functions_data, dict):
        raise _invalid("functions must be a mapping of function names", "serverless")
    functions: list[ImportedFunction] = []
    for fn_id, spec in functions_data.items():
        spec = spec or {}
        where = f"functions.{fn_id}"
        problems = [f"{where}.{key}" for key in spec if key not in _SERVERLESS_MAPPED and key != "package"]
        env = {
            **_env(_provider_env(provider.get("environment"), pname), "provider", problems),
            **_env(_provider_env(spec.get("environment"), pname), where, problems),
        }
        fn = ImportedFunction(
            name=function_name(str(spec.get("name") or fn_id)),
            config=_config(
                runtime=_runtime(spec.get("runtime") or provider.get("runtime"), where, problems),
                handler=spec.get("handler"),
                memory=spec.get("memorySize", provider.get("memorySize")),
                timeout=spec.get("timeout", provider.get("timeout")),
                env=env,
                description=spec.get("description"),
            ),
        )
        for index, event in enumerate(spec.get("events") or []):
            if not isinstance(event, dict) or len(event) != 1:
                problems.append(f"{where}.events[{index}]")
                continue
            ((etype, eprops),) = event.items()
            ewhere = f"{where}.events[{index}].{etype}"
            _serverless_event(fn, pname, etype, eprops, ewhere, problems)
        fn.unsupported = problems
        functions.append(fn)
    return TemplatePlan(kind="serverless", functions=_bounded(functions), unsupported=unsupported)


def _provider_env(value: Any, provider: str) -> Any:
    # Tencent nests variables under environment.variables; AWS has them directly.
    if provider == "tencent" and isinstance(value, dict) and isinstance(value.get("variables"), dict):
        return value["variables"]
    return value


def _serverless_event(
    fn: ImportedFunction, provider: str, etype: str, props: Any, where: str, problems: list[str]
) -> None:
    if etype == "http" and provider == "aws":  # REST API
        if isinstance(props, str):  # "GET users/create"
            method, _, path = props.partition(" ")
            props = {"method": method, "path": path}
        _add_route(fn, "apigw-v1", props.get("method"), "/" + str(props.get("path", "")).lstrip("/"), where, problems)
        problems.extend(f"{where}.{key}" for key in props if key not in ("method", "path"))
    elif etype == "httpApi":  # HTTP API, payload 2.0
        if isinstance(props, str):
            method, _, path = props.partition(" ") if props != "*" else ("*", "", "/{proxy+}")
            props = {"method": method, "path": path}
        method = props.get("method")
        _add_route(fn, "apigw-v2", "ANY" if method == "*" else method, props.get("path"), where, problems)
        problems.extend(f"{where}.{key}" for key in props if key not in ("method", "path"))
    elif etype == "apigw" and provider == "tencent":
        parameters = (props or {}).get("parameters") or {}
        for endpoint in parameters.get("endpoints") or []:
            _add_route(fn, "scf", endpoint.get("method"), endpoint.get("path"), where, problems)
        problems.extend(f"{where}.{key}" for key in (props or {}) if key not in ("name", "parameters"))
    elif etype in ("schedule", "timer"):
        fn.not_yet_supported.append(f"{where}: triggers do not exist in Stratus yet")
    else:
        problems.append(where)


# --- entry point --------------------------------------------------------------------------------


def parse_template(text: str | bytes) -> TemplatePlan:
    """A SAM template (``Resources`` with ``AWS::Serverless::*``, or ``Transform:
    AWS::Serverless-...``) or a serverless.yml (``provider`` and ``functions``)."""
    data = load_yaml(text)
    transform = data.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    if "Resources" in data or any(isinstance(t, str) and t.startswith("AWS::Serverless") for t in transforms):
        return parse_sam(data)
    if "provider" in data and "functions" in data:
        return parse_serverless(data)
    raise _invalid(
        "neither an AWS SAM template (Resources) nor a Serverless Framework serverless.yml (provider, functions)",
        "kind",
    )
