"""What confining an instance costs its cold start: spawn-to-ready of a Python instance through
the real Spawner, fully confined (cgroup, mount and IPC namespaces, hidepid, private /tmp and
/dev/shm, no new privileges) and, interleaved in the same run, with only the privilege drop
(the baseline: what a cold start was before instances were confined). Meaningful as root; a
non-root run confines nothing and reports the two as equal.

    python -m bench.spawn --count 40     # prints one JSON object
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.engine.sandbox import InstanceSpec, SpawnedInstance, Spawner  # noqa: E402
from bench.stats import median, percentile  # noqa: E402


async def _ready(instance: SpawnedInstance) -> None:
    loop = asyncio.get_running_loop()
    buf = b""
    while len(buf) < 4:
        chunk = await loop.sock_recv(instance.sock, 4 - len(buf))
        if not chunk:
            raise RuntimeError("the instance closed its channel before it was ready")
        buf += chunk
    (length,) = struct.unpack(">I", buf)
    body = b""
    while len(body) < length:
        body += await loop.sock_recv(instance.sock, length - len(body))
    message = json.loads(body)
    if message.get("type") != "ready":
        raise RuntimeError(f"the instance did not start: {message}")


async def _one(spawner: Spawner, spec: InstanceSpec, confined: bool) -> float:
    saved = (spawner.isolation.namespace, spawner.isolation.tmpfs, spawner._cgroups)
    if not confined:
        spawner.isolation.namespace = spawner.isolation.tmpfs = False
        spawner._cgroups = None
    try:
        began = time.perf_counter()
        instance = await spawner.spawn(spec)
        await _ready(instance)
        elapsed = (time.perf_counter() - began) * 1000
    finally:
        spawner.isolation.namespace, spawner.isolation.tmpfs, spawner._cgroups = saved
    instance.kill()
    await instance.wait_exit()
    instance.sock.close()
    return elapsed


async def measure(count: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="stratus-bench-spawn-", dir="/var/tmp"))
    os.chmod(base, 0o711)  # noqa: S103 - the function uid traverses it to its code
    # Settings as production reads them (the firewall's protected endpoints), data kept apart.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ["STRATUS_DATA_DIR"] = str(base / "data")
    import django

    django.setup()
    try:
        code = base / "data" / "versions" / "hello"
        code.mkdir(parents=True)
        (code / "main.py").write_text("def handler(event, context):\n    return 'hello'\n")
        spawner = Spawner(sandbox_dir=base / "data" / "sandbox", data_dir=base / "data")
        await spawner.start()
        spec = InstanceSpec(
            runtime="python3.11",
            kind="event",
            handler="main.handler",
            code_dir=code,
            function_id=1,
            function_name="hello",
            function_version="1",
            memory_mb=128,
            timeout_s=5,
            env={},
            identity=1,
        )
        samples: dict[str, list[float]] = {"confined": [], "unconfined": []}
        try:
            for _ in range(3):  # warm-up: code copy, zygote pages
                await _one(spawner, spec, True)
            for _ in range(count):  # interleaved, so drift on a shared machine hits both alike
                samples["unconfined"].append(await _one(spawner, spec, False))
                samples["confined"].append(await _one(spawner, spec, True))
        finally:
            await spawner.close()
        return {
            "count": count,
            "isolation": spawner.isolation.report(),
            **{f"{k}_p{p}_ms": percentile(v, p) for k, v in samples.items() for p in (50, 99)},
            "ratio_p50": median(samples["confined"]) / median(samples["unconfined"]),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    print(json.dumps(asyncio.run(measure(args.count))))


if __name__ == "__main__":
    main()
