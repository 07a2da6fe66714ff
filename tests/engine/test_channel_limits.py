"""The supervisor's own limits on what an instance sends on its control channel.

The bootstraps split log lines at 16 KiB, but tenant code runs in the same process and can
write frames to the control fd itself. Each attack here does that (or logs through the
bootstrap past a per-request limit): the request answers a 502 envelope naming the limit, the
instance is killed, the invocation is recorded, and the console (the engine runs in this test
process) does not stay grown.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from apps.monitoring.models import Invocation
from apps.monitoring.sink import get_sink
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_routed

# Reaches the control channel as any handler can: the bootstrap's Channel object is in the
# process (the fd number is inherited too; STRATUS_CONTROL_FD is only removed from os.environ).
ATTACKER = """
import gc, json, os, struct, time
from stratus_bootstrap.protocol import Channel

MB = 1024 * 1024

def raw(data):
    fd = next(o for o in gc.get_objects() if isinstance(o, Channel)).write_fd
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

def frame(message):
    body = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body

def handler(event, context):
    attack = (event["queryStringParameters"] or {}).get("attack")
    rid = context.aws_request_id
    if attack == "log_frames":  # six 16 MB log frames, as the issue saw
        for _ in range(6):
            raw(frame({"type": "log", "id": rid, "stream": "stdout", "text": "x" * (16 * MB)}))
    elif attack == "length_prefix":  # a frame that claims 2 GB, then nothing
        raw(struct.pack(">I", 2 * 1024 * MB))
        time.sleep(10)
    elif attack == "lines":  # 100,000 small lines through the bootstrap's own capture
        for i in range(100_000):
            print(i)
    elif attack == "log_bytes":  # lines within the line limit, 1.5 MB of them
        for _ in range(100):
            raw(frame({"type": "log", "id": rid, "stream": "stdout", "text": "y" * 15_000}))
    elif attack == "response":  # a reply frame of 40 MB
        raw(frame({"type": "result", "id": rid, "result": "z" * (40 * MB), "duration_ms": 1.0}))
    elif attack == "deep":  # a frame nested 100,000 deep: json would recurse past its limit
        body = b"[" * 100_000 + b"]" * 100_000
        raw(struct.pack(">I", len(body)) + body)
    return {"pid": os.getpid()}
"""

ATTACKS = [
    ("log_frames", "Runtime.LogLineTooLong", "a log line is limited to 16,384 characters"),
    ("length_prefix", "Runtime.ResponseTooLarge", "a response frame is limited to 9,437,184 bytes"),
    ("lines", "Runtime.LogLimitExceeded", "more than 10,000 log lines in one request"),
    ("log_bytes", "Runtime.LogLimitExceeded", "more than 1,048,576 bytes of log lines in one request"),
    ("response", "Runtime.ResponseTooLarge", "a response frame is limited to 9,437,184 bytes"),
    ("deep", "Runtime.ProtocolError", "a frame that is not a JSON object"),
]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture
def attacker(world: Any, engine: Any, served: Any) -> Any:
    fn = make_function(world, "attacker", {"main.py": ATTACKER}, memory_mb=512, timeout_s=20, max_instances=1)
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    return fn


@pytest.mark.parametrize(("attack", "error_type", "names"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_an_instance_breaking_a_channel_limit_is_killed_and_the_request_answers_502(
    attacker, served, attack, error_type, names
):
    # Warm: the instance, the server and the sink have allocated what they keep anyway.
    for _ in range(3):
        pid = served.get(url(attacker)).json()["pid"]
    get_sink().flush()
    gc.collect()
    before = _rss_mb()

    response = served.get(url(attacker, path=f"?attack={attack}"))

    assert response.status_code == 502, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "function_crashed"
    assert names in error["message"], error["message"]
    assert error["message"].endswith("the instance was stopped.")
    wait_for(lambda: not _alive(pid))
    replacement = served.get(url(attacker))
    assert replacement.status_code == 200
    assert replacement.json()["pid"] != pid
    get_sink().flush()
    record = Invocation.objects.get(request_id=response.headers["x-request-id"])
    assert (record.status, record.error_type) == ("crashed", error_type)
    gc.collect()
    # Nothing of the attack is kept: its frames were refused unread or dropped with the
    # instance. (The margin covers the allocator's noise, not the attack's 16-96 MB.)
    assert _rss_mb() - before < 40, f"RSS grew from {before:.0f} MB to {_rss_mb():.0f} MB"
