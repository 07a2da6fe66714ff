"""The bootstrap's main loop: read configuration, import the handler once, serve requests."""

from __future__ import annotations

import asyncio
import base64
import importlib
import inspect
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from stratus_bootstrap.context import Context, FunctionInfo
from stratus_bootstrap.httpapp import HttpRequest, Lifespan, is_asgi, serve_asgi, serve_wsgi
from stratus_bootstrap.logs import LogCapture
from stratus_bootstrap.protocol import Channel, encode_frame

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# AWS_REGION / AWS_DEFAULT_REGION / TENCENTCLOUD_REGION when the engine names none
# (STRATUS_REGION, from the console's STRATUS_FUNCTION_REGION setting): SAM local's default.
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Config:
    control_fd: str
    handler: str
    kind: str
    task_root: str
    function: FunctionInfo


def read_config(environ: os._Environ[str] | dict[str, str]) -> Config:
    """Read the STRATUS_* variables, then remove every one of them from ``environ``."""
    values = {k: v for k, v in environ.items() if k.startswith("STRATUS_")}
    for key in values:
        del environ[key]

    def number(key: str, default: float) -> float:
        try:
            return float(values.get(key, "") or default)
        except ValueError:
            return default

    name = values.get("STRATUS_FUNCTION_NAME", "") or "function"
    version = values.get("STRATUS_FUNCTION_VERSION", "") or "$LATEST"
    instance_id = uuid.uuid4().hex
    function = FunctionInfo(
        name=name,
        version=version,
        memory_mb=int(number("STRATUS_MEMORY_MB", 128)),
        timeout_s=number("STRATUS_TIMEOUT_S", 3),
        instance_id=instance_id,
        namespace=values.get("STRATUS_PROJECT", "") or "default",
        log_group_name=f"/stratus/functions/{name}",
        log_stream_name=f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{instance_id}",
    )
    kind = values.get("STRATUS_KIND", "") or "event"
    handler = values.get("STRATUS_HANDLER", "") or ("app.app" if kind == "http" else "index.handler")
    task_root = values.get("STRATUS_TASK_ROOT", "") or "/var/task"
    environ.update(
        platform_environment(
            function,
            handler=handler,
            task_root=task_root,
            runtime=values.get("STRATUS_RUNTIME", "") or f"python{sys.version_info[0]}.{sys.version_info[1]}",
            runtime_dir=os.path.dirname(_PACKAGE_DIR),
        )
    )
    # What a function may set for itself (Lambda lets TZ be changed; a region of its own):
    # the platform's value only where the function's variables have none.
    region = environ.get("AWS_REGION", "") or values.get("STRATUS_REGION", "") or DEFAULT_REGION
    for key, value in (
        ("AWS_REGION", region),
        ("AWS_DEFAULT_REGION", region),
        ("TENCENTCLOUD_REGION", values.get("STRATUS_REGION", "") or DEFAULT_REGION),
        ("TZ", ":UTC"),  # Lambda's value
        ("LANG", "C.UTF-8"),  # Lambda says en_US.UTF-8: the same encoding, without locale data to install
    ):
        environ.setdefault(key, value)
    time.tzset()  # the zygote imported time before TZ was known
    return Config(
        control_fd=values.get("STRATUS_CONTROL_FD", ""),
        handler=handler,
        kind=kind,
        task_root=task_root,
        function=function,
    )


def platform_environment(
    function: FunctionInfo, *, handler: str, task_root: str, runtime: str, runtime_dir: str
) -> dict[str, str]:
    """The variables Lambda's and SCF's runtimes define for every function, with Stratus's values.

    Lambda: LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, _HANDLER, AWS_EXECUTION_ENV,
    AWS_LAMBDA_FUNCTION_NAME/VERSION/MEMORY_SIZE, AWS_LAMBDA_LOG_GROUP_NAME/LOG_STREAM_NAME,
    AWS_LAMBDA_INITIALIZATION_TYPE. SCF: SCF_FUNCTIONNAME, SCF_FUNCTIONVERSION, SCF_NAMESPACE,
    SCF_RUNTIME, USER_CODE_ROOT, TENCENTCLOUD_RUNENV. These always win over a function's own
    variables of the same name (both platforms reserve them). No credentials: Stratus has none
    to hand out. runtime/node/bootstrap.js sets the same names the same way.
    """
    node = runtime.startswith("node")
    # Each platform's own spelling of the runtime: nodejs20.x / python3.11, Nodejs20 / Python3.11.
    lambda_runtime = runtime.replace("node", "nodejs", 1) + ".x" if node else runtime
    scf_runtime = runtime.replace("node", "Nodejs", 1) if node else runtime[:1].upper() + runtime[1:]
    return {
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": runtime_dir,
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{lambda_runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": function.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": function.log_stream_name,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "SCF_FUNCTIONNAME": function.name,
        "SCF_FUNCTIONVERSION": function.version,
        "SCF_NAMESPACE": function.namespace,
        "SCF_RUNTIME": scf_runtime,
        "USER_CODE_ROOT": task_root,
        "TENCENTCLOUD_RUNENV": "SCF",
    }


def error_payload(exc: BaseException) -> dict[str, Any]:
    """type, message and stack (a list of strings), without the bootstrap's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_PACKAGE_DIR)]
    stack = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    stack += traceback.format_exception_only(type(exc), exc)
    message = f"{exc.msg} ({exc.filename}, line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
    return {"type": type(exc).__name__, "message": message, "stack": stack}


class HandlerNotFound(Exception):
    pass


def load_handler(spec: str) -> Any:
    module_name, sep, attr = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
    if not sep or not module_name or not attr:
        raise HandlerNotFound(f"Bad handler {spec!r}: expected 'module.function'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerNotFound(f"Handler {attr!r} missing on module {module_name!r}") from None
    if not callable(obj):
        raise HandlerNotFound(f"Handler {spec!r} is not callable")
    return obj


class Bootstrap:
    def __init__(self, config: Config, channel: Channel, logs: LogCapture) -> None:
        self.config = config
        self.channel = channel
        self.logs = logs
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.handler: Any = None
        self.asgi = False
        self.lifespan: Lifespan | None = None

    def init(self) -> bool:
        root = self.config.task_root
        sys.path.insert(0, root)
        if os.path.isdir(root):
            os.chdir(root)
        start = time.perf_counter()
        try:
            self.handler = load_handler(self.config.handler)
            if self.config.kind == "http":
                self.asgi = is_asgi(self.handler)
                if self.asgi:
                    self.lifespan = Lifespan(self.handler, self.loop)
                    self.lifespan.startup()
        except Exception as exc:
            self.logs.sync()
            self.channel.write({"type": "init_error", "error": error_payload(exc)})
            return False
        init_ms = (time.perf_counter() - start) * 1000
        self.logs.sync()
        self.channel.write({"type": "ready", "init_ms": init_ms})
        return True

    def serve(self) -> int:
        while True:
            message = self.channel.read()
            if message is None or message.get("type") == "shutdown":
                self.shutdown()
                return 0
            kind = message.get("type")
            request_id = message.get("id")
            if kind not in ("invoke", "http"):
                self.channel.write(
                    {
                        "type": "error",
                        "id": request_id,
                        "error": {"type": "ProtocolError", "message": f"unknown message type {kind!r}", "stack": []},
                        "duration_ms": 0.0,
                    }
                )
                continue
            self.logs.request_id = str(request_id) if request_id is not None else None
            start = time.perf_counter()
            try:
                reply = self.handle_invoke(message) if kind == "invoke" else self.handle_http(message)
            except Exception as exc:
                reply = {"type": "error", "error": error_payload(exc)}
            reply["id"] = request_id
            reply["duration_ms"] = (time.perf_counter() - start) * 1000
            self.logs.sync()
            self.logs.request_id = None
            try:
                frame = encode_frame(reply)
            except (TypeError, ValueError) as exc:
                frame = encode_frame(
                    {
                        "type": "error",
                        "id": request_id,
                        "error": {"type": "ResultNotSerializable", "message": str(exc), "stack": []},
                        "duration_ms": reply["duration_ms"],
                    }
                )
            self.channel.write_raw(frame)

    def _deadline(self, message: dict[str, Any]) -> float:
        deadline = message.get("deadline_ms")
        if isinstance(deadline, int | float):
            return float(deadline)
        return time.time() * 1000 + self.config.function.timeout_s * 1000

    def handle_invoke(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.config.kind != "event":
            raise RuntimeError(f"an 'invoke' request reached a function of kind {self.config.kind!r}")
        context = Context(str(message.get("id")), self._deadline(message), self.config.function)
        result = self.handler(message.get("event"), context)
        if inspect.isawaitable(result):
            result = self.loop.run_until_complete(_await(result))
        return {"type": "result", "result": result}

    def handle_http(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.config.kind != "http":
            raise RuntimeError(f"an 'http' request reached a function of kind {self.config.kind!r}")
        request = HttpRequest(
            method=str(message.get("method", "GET")),
            path=str(message.get("path", "/")) or "/",
            query_string=str(message.get("query_string", "")),
            headers=[(str(k), str(v)) for k, v in message.get("headers", [])],
            body=base64.b64decode(message.get("body_b64", "") or ""),
            scheme=str(message.get("scheme", "http")),
            root_path=str(message.get("root_path", "")),
            raw_path=str(message.get("raw_path", "") or ""),
        )
        if self.asgi:
            state = self.lifespan.state if self.lifespan else {}
            response = self.loop.run_until_complete(serve_asgi(self.handler, request, state))
        else:
            response = serve_wsgi(self.handler, request)
        return {
            "type": "http_response",
            "status": response.status,
            "headers": response.headers,
            "body_b64": base64.b64encode(response.body).decode("ascii"),
        }

    def shutdown(self) -> None:
        if self.lifespan is not None:
            self.lifespan.shutdown()
        self.logs.sync()


async def _await(awaitable: Any) -> Any:
    return await awaitable


def main() -> int:
    config = read_config(os.environ)
    if not config.control_fd:
        sys.stderr.write("stratus_bootstrap: STRATUS_CONTROL_FD is not set\n")
        return 2
    try:
        channel = Channel.from_env_value(config.control_fd)
    except ValueError as exc:
        sys.stderr.write(f"stratus_bootstrap: {exc}\n")
        return 2
    return run(config, channel)


def run(config: Config, channel: Channel) -> int:
    """Serve one instance on ``channel`` with an explicit ``config``; returns the exit status.

    ``main()`` calls this after reading the environment; the zygote (``stratus_bootstrap.zygote``)
    calls it in a forked child whose environment it has already replaced.
    """
    for fd in {channel.read_fd, channel.write_fd}:
        os.set_inheritable(fd, False)
    logs = LogCapture(channel)
    logs.start()
    bootstrap = Bootstrap(config, channel, logs)
    try:
        if not bootstrap.init():
            return 1
        return bootstrap.serve()
    except (BrokenPipeError, ConnectionResetError):
        return 0
    except Exception:
        os.write(logs.original_stderr, ("stratus_bootstrap: fatal error\n" + traceback.format_exc()).encode())
        return 3
