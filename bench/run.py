"""`make bench`: how fast the function gateway is, next to a bare ASGI app on the same server.

Starts a real console (`manage.py serve`, embedded default: SQLite, in-process worker, embedded
engine) in a throwaway data dir and the baseline (bench/bare_app.py) as its own uvicorn process,
then, for each of ``--rounds`` rounds:

1. warm latency: sequential GETs on one keep-alive connection (after a warm-up), through the
   gateway to a hello-world Python event function, and to the bare app;
2. throughput at concurrency 16, by a separate load-generator process (wrk, else bench/loadgen);
3. deploy-to-ready: publish new code and deploy it through the REST API, polling the function
   URL until `x-stratus-version` is the new number (unpack, code copy and first instance
   included), for Python and Node; then the same for the function under load: redeploys of the
   c=16 function while the load generator keeps 16 connections busy on it, against redeploys of
   it idle in the same round (the ratio; the old version drains under traffic while the new one
   starts);
4. cold start: change a function variable and publish the same code (same artifact on disk,
   new version, so a new pool and a new instance: checked with `x-stratus-cold-start: 1`);
   the first response of the new version is the sample; its init_duration (process start to
   handler loaded) comes from the invocation record;
5. switches: deploy between two running versions and time how long after the API call
   returns the gateway serves the new state (switch-visible latency), then rollbacks
   (POST /functions/{id}/rollback) and their time to serving the previous version;
6. webhook to live: commit and `git push` to a bare repository, deliver a GitHub-signed push
   webhook, and time until the gateway answers with what the run built (and the intake's
   own answer time);
7. confinement: spawn-to-ready of a Python instance through the Spawner, fully confined and,
   interleaved, with the privilege drop only (bench/spawn.py, its own process): what the
   cgroup, namespaces and private mounts add to a cold start.

Each figure is the median over rounds of the per-round value; ratios are to the baseline
measured in the same round (shared machines are noisy). Prints a table and writes
bench-results/bench.json. Exits 0 when a target is missed; non-zero only when something failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import latency, throughput
from bench.console import ROOT, Console
from bench.procs import Processes, free_port, wait_listening
from bench.stats import median, percentile
from bench.webhook import WebhookBench

HELLO_PY = 'def handler(event, context):\n    return {"statusCode": 200, "body": "hello"}\n'
HELLO_NODE = 'exports.handler = async (event, context) => ({ statusCode: 200, body: "hello" });\n'
CONCURRENCY = 16
# Scaling for c=16 on 2 cores, chosen with `--sweep` (wrk -c16, 4 s each, one run on the 2-core
# bench machine): 1 x 16 -> 1840 req/s, 2 x 8 -> 1506, 4 x 4 -> 1074, 16 x 1 -> 1056, 1 x 1 -> 811.
# The console process is the bottleneck (one core, GIL-bound), not the handler: one instance
# taking 16 pipelined requests on its control socket adds no process competing for the two
# cores, while each extra instance does. A slow handler would want more instances.
SCALING = {"max_instances": 1, "instance_concurrency": 16}
SWEEP = [(1, 16), (2, 8), (4, 4), (16, 1)]


@dataclass
class Round:
    bare_latency: list[float] = field(default_factory=list)
    gateway_latency: list[float] = field(default_factory=list)
    bare_load: dict[str, Any] = field(default_factory=dict)
    gateway_load: dict[str, Any] = field(default_factory=dict)
    deploys: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    loaded_deploys: dict[str, Any] = field(default_factory=dict)
    colds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    switches: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, float]] = field(default_factory=list)
    spawn: dict[str, Any] = field(default_factory=dict)


@dataclass
class Deployed:
    id: int
    path: str
    runtime: str


class Bench:
    def __init__(self, args: argparse.Namespace, procs: Processes, data_dir: Path) -> None:
        self.args = args
        self.procs = procs
        self.console = Console(procs, data_dir)
        self.data_dir = data_dir
        self.bare_port = 0
        self.wrk: str | None = None
        self.project_id = 0
        self.hooks: WebhookBench | None = None

    # --- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        self.wrk = None if self.args.no_wrk else throughput.find_wrk()
        self.bare_port = free_port()
        bare = self.procs.start(
            [sys.executable, "-m", "bench.bare_app", "--port", str(self.bare_port)],
            env=dict(os.environ),
            log=self.data_dir / "bare.log",
            cwd=ROOT,
        )
        wait_listening(self.bare_port, bare)
        self.console.start()
        self.project_id = int(self.console.project("shop")["id"])

    def function(self, name: str, runtime: str, files: dict[str, str], **config: Any) -> Deployed:
        handler = "main.handler" if runtime.startswith("python") else "index.handler"
        row = self.console.create_function(
            self.project_id, name, runtime=runtime, handler=handler, kind="event", **config
        )
        fn = Deployed(int(row["id"]), f"/fn/{row['org']}/shop/dev/{name}/", runtime)
        self.deploy_and_wait(fn, files)
        return fn

    def deploy_and_wait(self, fn: Deployed, files: dict[str, str], timeout: float = 30.0) -> dict[str, Any]:
        """Publish + deploy, then poll the URL until the new version answers. Returns the
        timings and the first response of the new version (the cold start)."""
        client = latency.KeepAlive(self.console.port)
        try:
            begin = time.perf_counter()
            number = self.console.publish(fn.id, files)
            published = time.perf_counter()
            self.console.deploy(fn.id, number)
            deployed = time.perf_counter()
            polls = 0
            while True:
                request_id = f"bench-{uuid.uuid4()}"
                response = client.get(fn.path, headers={"x-request-id": request_id})
                polls += 1
                if response.headers.get("x-stratus-version") == str(number) and response.status != 404:
                    ready = time.perf_counter()
                    break
                if time.perf_counter() - begin > timeout:
                    raise RuntimeError(f"{fn.path} v{number} not served after {timeout} s ({response.status})")
                time.sleep(0.002)
            if response.status != 200 or response.body != b"hello":
                raise RuntimeError(f"{fn.path} v{number} -> {response.status} {response.body[:300]!r}")
            return {
                "version": number,
                "publish_ms": (published - begin) * 1000,
                "deploy_call_ms": (deployed - published) * 1000,
                "ready_ms": (ready - begin) * 1000,
                "polls": polls,
                "first_ms": response.ms,
                "cold": response.headers.get("x-stratus-cold-start") == "1",
                "request_id": request_id,
            }
        finally:
            client.close()

    # --- measurements -----------------------------------------------------------------------

    def warm_latency(self, port: int, path: str) -> list[float]:
        return latency.sample(port, path, warmup=self.args.warmup, samples=self.args.samples, expect=b"hello")

    def load(self, port: int, path: str) -> dict[str, Any]:
        # A short unmeasured run first: connections open, the pool scales to its size.
        throughput.measure(self.wrk, port, path, connections=CONCURRENCY, duration_s=1)
        return throughput.measure(self.wrk, port, path, connections=CONCURRENCY, duration_s=self.args.duration)

    def cold_starts(self, fn: Deployed, source: str, count: int) -> list[dict[str, Any]]:
        """New instances of code that is already on disk: each round changes a function
        variable and republishes the same files (same artifact, new version, new pool), so the
        first response of each version times a cold start alone (fork, runtime, import)."""
        filename = "main.py" if fn.runtime.startswith("python") else "index.js"
        samples = []
        for _ in range(count):
            self.console.call("PATCH", f"/functions/{fn.id}/", json={"env": {"COLD": uuid.uuid4().hex}})
            samples.append(self.deploy_and_wait(fn, {filename: source}))
        return samples

    def wait_serving(self, client: Any, fn: Deployed, number: int, timeout: float = 10.0) -> float:
        """Poll the function URL until it answers with version ``number``; the moment it did."""
        deadline = time.perf_counter() + timeout
        while True:
            response = client.get(fn.path)
            if response.headers.get("x-stratus-version") == str(number):
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{fn.path} did not serve v{number} within {timeout} s")

    def switches(self, fn: Deployed, count: int) -> list[dict[str, Any]]:
        """Traffic changes between two versions already running (deploy v1 <-> v2), then
        rollbacks: how long after the API call returns the gateway serves the new state
        (switch-visible latency), and a rollback's whole time, call included."""
        client = latency.KeepAlive(self.console.port)
        samples: list[dict[str, Any]] = []
        try:
            for i in range(count):
                target = 1 + (i % 2)
                begin = time.perf_counter()
                self.console.deploy(fn.id, target)
                returned = time.perf_counter()
                served = self.wait_serving(client, fn, target)
                samples.append(
                    {"kind": "switch", "visible_ms": (served - returned) * 1000, "total_ms": (served - begin) * 1000}
                )
            for _ in range(count):
                self.console.deploy(fn.id, 2)
                self.wait_serving(client, fn, 2)
                begin = time.perf_counter()
                self.console.call("POST", f"/functions/{fn.id}/rollback", json={"environment": "dev"})
                returned = time.perf_counter()
                served = self.wait_serving(client, fn, 1)
                samples.append(
                    {"kind": "rollback", "visible_ms": (served - returned) * 1000, "total_ms": (served - begin) * 1000}
                )
        finally:
            client.close()
        return samples

    def redeploys(self, fn: Deployed, source: str, count: int) -> list[dict[str, Any]]:
        filename = "main.py" if fn.runtime.startswith("python") else "index.js"
        comment = "#" if fn.runtime.startswith("python") else "//"
        # A unique comment makes every version a new artifact (new code, new pool).
        return [self.deploy_and_wait(fn, {filename: f"{comment} {uuid.uuid4()}\n{source}"}) for _ in range(count)]

    def deploys_under_load(self, fn: Deployed, count: int) -> dict[str, Any]:
        """Redeploys of ``fn`` idle, then while the c=16 load runs on it (wrk, or bench.loadgen):
        each a new version with new code, i.e. a new pool cold-starting while the old drains."""
        idle = self.redeploys(fn, HELLO_PY, count)
        load = throughput.start(self.wrk, self.console.port, fn.path, connections=CONCURRENCY)
        try:
            time.sleep(1.0)  # connections open, the pool at its size
            loaded = self.redeploys(fn, HELLO_PY, count)
        finally:
            measured = throughput.stop(load, self.wrk)
        return {"idle": idle, "loaded": loaded, "load": measured}

    def run_round(self, index: int, hello: Deployed, cold: dict[str, Deployed], switch: Deployed) -> Round:
        result = Round()
        # Alternate which side goes first, so a drift in machine load does not favour one.
        order = ["bare", "gateway"] if index % 2 == 0 else ["gateway", "bare"]
        targets = {"bare": (self.bare_port, "/"), "gateway": (self.console.port, hello.path)}
        for side in order:
            samples = self.warm_latency(*targets[side])
            setattr(result, f"{side}_latency", samples)
        for side in order:
            setattr(result, f"{side}_load", self.load(*targets[side]))
        result.deploys = {
            "python": self.redeploys(cold["python"], HELLO_PY, self.args.deploys),
            "node": self.redeploys(cold["node"], HELLO_NODE, self.args.node_deploys),
        }
        result.loaded_deploys = self.deploys_under_load(hello, self.args.load_deploys)
        result.colds = {
            "python": self.cold_starts(cold["python"], HELLO_PY, self.args.deploys),
            "node": self.cold_starts(cold["node"], HELLO_NODE, self.args.node_deploys),
        }
        result.switches = self.switches(switch, self.args.switches)
        if self.hooks is not None:
            result.webhooks = [self.hooks.sample() for _ in range(self.args.pushes)]
        result.spawn = spawn_confinement(self.args.deploys * 2)
        return result

    def sweep(self) -> list[dict[str, Any]]:
        out = []
        for max_instances, concurrency in SWEEP:
            fn = self.function(
                f"sweep-{max_instances}x{concurrency}",
                "python3.11",
                {"main.py": HELLO_PY},
                max_instances=max_instances,
                instance_concurrency=concurrency,
            )
            measured = self.load(self.console.port, fn.path)
            out.append({"max_instances": max_instances, "instance_concurrency": concurrency, **measured})
            print(f"  sweep {max_instances:>2} x {concurrency:<2}: {measured['rps']:8.0f} req/s", flush=True)
        return out

    def init_durations(self, fn: Deployed, samples: list[dict[str, Any]]) -> None:
        for sample in samples:
            record = self.console.invocation(fn.id, sample["request_id"])
            sample["init_duration_ms"] = record.get("init_duration_ms") if record else None
            sample["record_cold_start"] = record.get("cold_start") if record else None


def spawn_confinement(count: int) -> dict[str, Any]:
    """bench/spawn.py in a process of its own (it starts an engine's Spawner)."""
    out = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.spawn", "--count", str(max(count, 10))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.spawn failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- figures ------------------------------------------------------------------------------------


def figure(
    value: float,
    unit: str,
    *,
    target: str | None = None,
    met: bool | None = None,
    baseline: float | None = None,
    ratio: float | None = None,
) -> dict[str, Any]:
    return {"value": value, "unit": unit, "target": target, "baseline": baseline, "ratio": ratio, "met": met}


def latency_summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50": percentile(samples, 50),
        "p90": percentile(samples, 90),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "mean": sum(samples) / len(samples),
    }


def figures(rounds: list[Round]) -> tuple[dict[str, Any], dict[str, Any]]:
    per_round: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            per_round.setdefault(name, []).append(value)

    for r in rounds:
        bare, gw = latency_summary(r.bare_latency), latency_summary(r.gateway_latency)
        for name in ("p50", "p99"):
            add(f"bare_{name}", bare[name])
            add(f"gw_{name}", gw[name])
            add(f"ratio_{name}", gw[name] / bare[name])
        add("overhead_p50", gw["p50"] - bare["p50"])
        add("bare_rps", r.bare_load["rps"])
        add("gw_rps", r.gateway_load["rps"])
        add("ratio_rps", r.gateway_load["rps"] / r.bare_load["rps"])
        for runtime, samples in r.deploys.items():
            # Cold starts: new instances of code already on disk (a deploy of new code also
            # unpacks and copies it first, which deploy-to-ready covers).
            cold = [s["first_ms"] for s in r.colds.get(runtime, []) if s["cold"]]
            ready = [s["ready_ms"] for s in samples]
            inits = [s["init_duration_ms"] for s in r.colds.get(runtime, []) if s.get("init_duration_ms") is not None]
            for pct in (50, 99):
                add(f"deploy_{runtime}_p{pct}", percentile(ready, pct))
                add(f"cold_{runtime}_p{pct}", percentile(cold, pct) if cold else None)
                add(f"init_{runtime}_p{pct}", percentile(inits, pct) if inits else None)
        if r.loaded_deploys:
            idle = percentile([s["ready_ms"] for s in r.loaded_deploys["idle"]], 50)
            loaded = percentile([s["ready_ms"] for s in r.loaded_deploys["loaded"]], 50)
            add("deploy_idle_p50", idle)
            add("deploy_loaded_p50", loaded)
            add("ratio_deploy_loaded", loaded / idle)

    for r in rounds:
        live = [w["live_ms"] for w in r.webhooks]
        intake = [w["intake_ms"] for w in r.webhooks]
        for pct in (50, 99):
            add(f"webhook_live_p{pct}", percentile(live, pct) if live else None)
            add(f"webhook_intake_p{pct}", percentile(intake, pct) if intake else None)
        if r.spawn:
            add("spawn_confined_p50", r.spawn["confined_p50_ms"])
            add("spawn_unconfined_p50", r.spawn["unconfined_p50_ms"])
            add("spawn_ratio_p50", r.spawn["ratio_p50"])
        for kind, name in (("switch", "switch_visible"), ("rollback", "rollback")):
            visible = [x["visible_ms"] for x in r.switches if x["kind"] == kind]
            total = [x["total_ms"] for x in r.switches if x["kind"] == kind]
            for pct in (50, 99):
                add(f"{name}_p{pct}", percentile(visible, pct) if visible else None)
                add(f"{name}_total_p{pct}", percentile(total, pct) if total else None)

    m = {name: median(values) for name, values in per_round.items()}
    out: dict[str, Any] = {
        "warm_p50_ms": figure(m["gw_p50"], "ms", baseline=m["bare_p50"], ratio=m["ratio_p50"]),
        "warm_p99_ms": figure(m["gw_p99"], "ms", baseline=m["bare_p99"], ratio=m["ratio_p99"]),
        "warm_p50_overhead_ms": figure(
            m["overhead_p50"], "ms", target="gateway p50 - bare p50 <= 1 ms", met=m["overhead_p50"] <= 1.0
        ),
        "throughput_c16_rps": figure(
            m["gw_rps"],
            "req/s",
            baseline=m["bare_rps"],
            ratio=m["ratio_rps"],
            target="ratio to bare >= 0.5",
            met=m["ratio_rps"] >= 0.5,
        ),
    }
    for runtime in ("python", "node"):
        for pct in (50, 99):
            key = f"cold_{runtime}_p{pct}"
            if key in m:
                target = met = None
                if runtime == "python" and pct == 50:
                    target, met = "<= 20 ms", m[key] <= 20.0
                out[f"cold_start_{runtime}_p{pct}_ms"] = figure(m[key], "ms", target=target, met=met)
            if f"init_{runtime}_p{pct}" in m:
                out[f"init_duration_{runtime}_p{pct}_ms"] = figure(m[f"init_{runtime}_p{pct}"], "ms")
    if "spawn_confined_p50" in m:
        out["spawn_confined_python_p50_ms"] = figure(
            m["spawn_confined_p50"], "ms", baseline=m["spawn_unconfined_p50"], ratio=m["spawn_ratio_p50"]
        )
    for runtime in ("python", "node"):
        for pct in (50, 99):
            key = f"deploy_{runtime}_p{pct}"
            target = met = None
            if runtime == "python" and pct == 50:
                target, met = "<= 300 ms", m[key] <= 300.0
            out[f"deploy_to_ready_{runtime}_p{pct}_ms"] = figure(m[key], "ms", target=target, met=met)
    if "deploy_loaded_p50" in m:
        out["deploy_to_ready_under_load_p50_ms"] = figure(
            m["deploy_loaded_p50"],
            "ms",
            baseline=m["deploy_idle_p50"],
            ratio=m["ratio_deploy_loaded"],
            target="ratio to idle <= 5 (c=16 load)",
            met=m["ratio_deploy_loaded"] <= 5.0,
        )
    for pct in (50, 99):
        if f"webhook_live_p{pct}" in m:
            target = "<= 3000 ms" if pct == 50 else None
            met = m[f"webhook_live_p{pct}"] <= 3000.0 if pct == 50 else None
            out[f"webhook_to_live_p{pct}_ms"] = figure(m[f"webhook_live_p{pct}"], "ms", target=target, met=met)
            out[f"webhook_intake_p{pct}_ms"] = figure(m[f"webhook_intake_p{pct}"], "ms")
    for name, target in (("switch_visible", "<= 100 ms after the API call returns"), ("rollback", None)):
        for pct in (50, 99):
            key = f"{name}_p{pct}"
            if key in m:
                met = m[key] <= 100.0 if target and pct == 50 else None
                out[f"{name}_p{pct}_ms"] = figure(m[key], "ms", target=target if pct == 50 else None, met=met)
            if f"{name}_total_p{pct}" in m:
                out[f"{name}_total_p{pct}_ms"] = figure(m[f"{name}_total_p{pct}"], "ms")
    return out, per_round


def table(results: dict[str, Any]) -> str:
    head = f"{'figure':<32} {'value':>10} {'unit':<6} {'baseline':>10} {'ratio':>7}  {'target':<32} met"
    lines = [head, "-" * len(head)]
    for name, f in results["figures"].items():

        def num(x: float | None, spec: str) -> str:
            return "-" if x is None else format(x, spec)

        met = "-" if f["met"] is None else ("yes" if f["met"] else "NO")
        value_spec = ".0f" if f["unit"] == "req/s" else ".3f"
        lines.append(
            f"{name:<32} {num(f['value'], value_spec):>10} {f['unit']:<6} {num(f['baseline'], value_spec):>10} "
            f"{num(f['ratio'], '.2f'):>7}  {f['target'] or '-':<32} {met}"
        )
    return "\n".join(lines)


def machine(wrk: str | None) -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    if wrk is not None:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
        tool = (out.stdout or out.stderr).split("Copyright")[0].strip() or "wrk"
    else:
        tool = "bench.loadgen (asyncio, 16 keep-alive connections)"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)  # noqa: S603, S607
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "uvicorn": version("uvicorn"),
        "httptools": version("httptools"),
        "uvloop": version("uvloop"),
        "node": node.stdout.strip() or None,
        "platform": platform.platform(),
        "tool": tool,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=3000, help="warm latency samples per side and round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per side and round")
    parser.add_argument("--deploys", type=int, default=7, help="Python redeploys per round")
    parser.add_argument("--switches", type=int, default=10, help="traffic switches (and rollbacks) per round")
    parser.add_argument("--pushes", type=int, default=3, help="git pushes delivered by webhook per round")
    parser.add_argument("--node-deploys", type=int, default=7, help="Node redeploys per round")
    parser.add_argument(
        "--load-deploys", type=int, default=5, help="redeploys of the c=16 function per round, idle and under load"
    )
    parser.add_argument("--sweep", action="store_true", help="also measure max_instances x concurrency candidates")
    parser.add_argument("--no-wrk", action="store_true", help="use bench/loadgen.py even when wrk is installed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench.json")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway data dir (logs)")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    procs = Processes()
    data_dir = Path(tempfile.mkdtemp(prefix="stratus-bench-", dir="/tmp"))
    bench = Bench(args, procs, data_dir)
    try:
        print(f"bench: data dir {data_dir}", flush=True)
        bench.start()
        hello = bench.function("hello", "python3.11", {"main.py": HELLO_PY}, **SCALING)
        cold = {
            "python": bench.function("cold-py", "python3.11", {"main.py": HELLO_PY}),
            "node": bench.function("cold-node", "node20", {"index.js": HELLO_NODE}),
        }
        # Two versions to switch between (v1 deployed by function(), v2 published beside it).
        switch = bench.function("switch", "python3.11", {"main.py": HELLO_PY})
        bench.hooks = WebhookBench(bench.console, bench.project_id, data_dir)
        bench.hooks.setup()
        bench.console.publish(switch.id, {"main.py": "# v2\n" + HELLO_PY})
        sweep = bench.sweep() if args.sweep else None
        rounds: list[Round] = []
        for index in range(args.rounds):
            print(f"bench: round {index + 1}/{args.rounds}", flush=True)
            rounds.append(bench.run_round(index, hello, cold, switch))
        for r in rounds:
            for runtime, samples in r.colds.items():
                bench.init_durations(cold[runtime], samples)
        figs, per_round = figures(rounds)
        results = {
            "machine": machine(bench.wrk),
            "runs": args.rounds,
            "figures": figs,
            "raw": {
                "scaling": SCALING,
                "concurrency": CONCURRENCY,
                "settings": {k: str(v) for k, v in vars(args).items()},
                "per_round": per_round,
                "rounds": [
                    {
                        "bare_latency_ms": latency_summary(r.bare_latency),
                        "gateway_latency_ms": latency_summary(r.gateway_latency),
                        "bare_load": r.bare_load,
                        "gateway_load": r.gateway_load,
                        "deploys": r.deploys,
                        "deploys_under_load": r.loaded_deploys,
                        "cold_starts": r.colds,
                        "switches": r.switches,
                        "webhooks": r.webhooks,
                        "spawn_confinement": r.spawn,
                    }
                    for r in rounds
                ],
                "scaling_sweep": sweep,
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print()
        print(table(results))
        print(f"\nmachine: {json.dumps(results['machine'])}")
        print(f"wrote {args.out}")
        return 0
    except Exception:
        traceback.print_exc()
        print(f"bench: failed; console log in {data_dir}/serve.log", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        procs.stop_all()
        bench.console.close()  # and SIGKILLs function instances the console left behind
        if not args.keep:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
