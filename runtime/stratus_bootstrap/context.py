"""The invocation context: compatible with AWS Lambda (attributes) and Tencent SCF (a dict)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    version: str
    memory_mb: int
    timeout_s: float
    instance_id: str
    namespace: str = "default"  # SCF's namespace: the function's project
    log_group_name: str = ""
    log_stream_name: str = ""  # one per instance, as on Lambda (date of start, version, instance)


class Context(Mapping[str, Any]):
    """Per-invocation context.

    Lambda handlers read attributes (``context.aws_request_id``,
    ``context.get_remaining_time_in_millis()``); SCF handlers read it as a dict
    (``context["request_id"]``, ``context.get("function_name")``). Both work on the same object.
    """

    def __init__(self, request_id: str, deadline_ms: float, function: FunctionInfo) -> None:
        self._deadline_ms = float(deadline_ms)
        env = dict(os.environ)
        self.aws_request_id = request_id
        self.request_id = request_id
        self.function_name = function.name
        self.function_version = function.version
        self.memory_limit_in_mb = function.memory_mb
        self.time_limit_in_ms = int(function.timeout_s * 1000)
        self.invoked_function_arn = f"stratus:fn:{function.name}:{function.version}"
        self.log_group_name = function.log_group_name or f"/stratus/functions/{function.name}"
        self.log_stream_name = function.log_stream_name or (
            f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{function.version}]{function.instance_id}"
        )
        self.namespace = function.namespace
        self.environment = json.dumps(env)
        self.environ = ";".join(f"{k}={v}" for k, v in env.items())
        self.identity: Any = None
        self.client_context: Any = None
        self.callback_waits_for_empty_event_loop = False
        self._keys = (
            "request_id",
            "aws_request_id",
            "function_name",
            "function_version",
            "memory_limit_in_mb",
            "time_limit_in_ms",
            "invoked_function_arn",
            "log_group_name",
            "log_stream_name",
            "namespace",
            "environment",
            "environ",
            "callback_waits_for_empty_event_loop",
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"
