"""`python -m bench.ide`: the WebIDE's figures (issue 15), each next to a baseline measured in
the same run on the same server (shared machines are noisy: the ratio is the steadier number).

Starts a real console (`manage.py serve`, embedded default, demo seed: bench/console.py) in a
throwaway data dir, makes a Python function with a ~2 KB hello handler in its draft, then:

1. save round trip: ``--saves`` PUTs of ``draft/files/main.py`` (a Bearer token, one
   keep-alive connection), each with the previous answer's ETag as If-Match; interleaved with
   the baselines ``GET /healthz`` and ``GET /api/v1/functions/{id}/``;
2. draft run: ``--runs`` ``POST draft/invoke {"environment": "dev", ...}`` after one warm-up
   (the draft's saved files in a sandboxed instance of the local engine), interleaved the same
   way;
3. editor ready, in Debian's Chromium (Playwright): from navigation start (``performance.now()``
   in the page, recorded by a MutationObserver) until ``[data-testid=ide][data-ready=true]``
   holds Monaco's ``.view-lines`` (the file is open: a keystroke would land, which is checked
   once by typing). Cold: the first load in a new browser context (signed in, nothing cached);
   warm: the next ``--warm`` loads in that context. The baseline: the function's Overview page
   (load event), cold and warm, in contexts of its own. The requests that reach the server on
   a warm load are counted from the console's request log (what the browser did not take from
   its cache: WhiteNoise serves vendor/monaco/<version>/ as immutable).

Prints a table and writes bench-results/ide.json. A missed target is printed, not an exit
status (as bench.run and bench.pages); non-zero only when something failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench.console import ROOT, Console
from bench.procs import Processes
from bench.stats import median, percentile

DEMO_USER, DEMO_PASSWORD = "alice", "alice-demo-pass"  # seed_demo's login for alice
# A hello handler padded to ~2 KB, as a small real file would be.
HANDLER = '''"""A small HTTP handler: greets whoever the event names."""

import json


def handler(event, context):
    name = (event or {}).get("name", "world")
    return {"statusCode": 200, "body": json.dumps({"hello": name})}
'''
PADDING = "".join(f"# line {i:02d}: the rest of a small real module, kept to about two kilobytes.\n" for i in range(24))
TARGETS_MS = {"save_p50": 100.0, "run_p50": 100.0, "ready_cold_p50": 1500.0, "ready_warm_p50": 300.0}
# In the page: the moment the editor takes keystrokes, from navigation start.
READY_PROBE = """
(() => {
  // The code editor's, not the run panel's event editor (also Monaco, also in the section).
  const selector = "[data-testid=ide][data-ready=true] [data-testid=editor] .view-lines";
  const check = () => {
    if (window.__ideReady === undefined && document.querySelector(selector)) {
      window.__ideReady = performance.now();
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-ready"] });
})();
"""
TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return {ttfb: nav.responseStart, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          ready: window.__ideReady === undefined ? null : window.__ideReady};
}"""


def content(n: int) -> str:
    return HANDLER + PADDING + f"# save {n}\n"


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50": round(median(samples), 2),
        "p90": round(percentile(samples, 90), 2),
        "p99": round(percentile(samples, 99), 2),
        "max": round(max(samples), 2),
    }


def timed(client: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = client.request(method, url, **kwargs)
    response.read()
    return (time.perf_counter() - start) * 1000, response


def check(response: httpx.Response, *codes: int) -> httpx.Response:
    if response.status_code not in codes:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:1000]}"
        )
    return response


class IdeBench:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.function_id = 0
        self.etag = ""

    def setup(self) -> None:
        project = self.console.project("shop")
        fn = self.console.create_function(project["id"], "ide-bench", runtime="python3.11", handler="main.handler")
        self.function_id = int(fn["id"])
        assert self.console.api is not None
        response = check(
            self.console.api.put(f"/functions/{self.function_id}/draft/files/main.py", json={"content": content(0)}),
            201,
        )
        self.etag = response.headers["ETag"]

    # --- the API figures: interleaved with the baselines, one keep-alive connection each ---------

    def api_figures(self) -> dict[str, list[float]]:
        token = {"Authorization": f"Bearer {self.console.token}"}
        base = self.console.base_url
        fid = self.function_id
        out: dict[str, list[float]] = {"healthz": [], "api_get": [], "save": [], "run": [], "run_server": []}
        with httpx.Client(base_url=base, headers=token, timeout=60) as client:
            for _ in range(20):  # warm-up: connections, caches, the first queries
                check(client.get("/healthz"), 200)
                check(client.get(f"/api/v1/functions/{fid}/"), 200)
            for n in range(1, self.args.saves + 1):
                ms, _ = timed(client, "GET", "/healthz")
                out["healthz"].append(ms)
                ms, _ = timed(client, "GET", f"/api/v1/functions/{fid}/")
                out["api_get"].append(ms)
                ms, response = timed(
                    client,
                    "PUT",
                    f"/api/v1/functions/{fid}/draft/files/main.py",
                    json={"content": content(n)},
                    headers={"If-Match": self.etag},
                )
                self.etag = check(response, 200).headers["ETag"]
                out["save"].append(ms)
            body = {"environment": "dev", "event": {"name": "bench"}}
            url = f"/api/v1/functions/{fid}/draft/invoke"
            warm = check(client.post(url, json=body), 200).json()  # the instance's cold start
            if warm["status"] != "ok" or warm["result"]["statusCode"] != 200:
                raise RuntimeError(f"the draft run failed: {warm}")
            for _ in range(self.args.runs):
                ms, _ = timed(client, "GET", "/healthz")
                out["healthz"].append(ms)
                ms, _ = timed(client, "GET", f"/api/v1/functions/{fid}/")
                out["api_get"].append(ms)
                ms, response = timed(client, "POST", url, json=body)
                answer = check(response, 200).json()
                if answer["status"] != "ok" or answer["cold_start"]:
                    raise RuntimeError(f"a draft run was not a warm ok run: {answer}")
                out["run"].append(ms)
                out["run_server"].append(float(answer["duration_ms"]))
        return out

    # --- the editor, in Chromium -----------------------------------------------------------------

    def server_requests(self, since: int) -> tuple[int, list[str]]:
        """The requests the console logged after byte ``since`` of its log: (end, paths)."""
        log = self.console.data_dir / "serve.log"
        with log.open("rb") as f:
            f.seek(since)
            data = f.read()
        paths = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("logger") == "stratus.request" and "path" in record:
                paths.append(str(record["path"]))
        return since + len(data), paths

    def log_end(self) -> int:
        return (self.console.data_dir / "serve.log").stat().st_size

    def load(self, page: Any, url: str, ide: bool) -> dict[str, Any]:
        """One navigation; its timings (ms from navigation start) and the requests the server saw."""
        time.sleep(0.3)  # let the previous page's late requests and log lines land first
        mark = self.log_end()
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            raise RuntimeError(f"{url}: {response.status if response else 'no answer'}")
        if ide:
            page.wait_for_function("() => window.__ideReady !== undefined", timeout=30_000)
        timing = dict(page.evaluate(TIMING))
        time.sleep(0.3)  # the log line of the last request
        _, paths = self.server_requests(mark)
        timing["server_requests"] = paths
        return timing

    def browser_figures(self, chromium: str) -> dict[str, Any]:
        from playwright.sync_api import sync_playwright

        base = self.console.base_url
        code_url = f"{base}/functions/{self.function_id}/code/"
        overview_url = f"{base}/functions/{self.function_id}/"
        loads: dict[str, list[dict[str, Any]]] = {
            "code_cold": [],
            "code_warm": [],
            "overview_cold": [],
            "overview_warm": [],
        }
        typed = False
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            # Signed in once; each measured context starts with only the session cookie.
            login = browser.new_context()
            page = login.new_page()
            page.goto(base + "/login/")
            page.fill("input[name=username]", DEMO_USER)
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            state = login.storage_state()
            login.close()
            for _ in range(self.args.cold):
                for name, url, ide in (("code", code_url, True), ("overview", overview_url, False)):
                    context = browser.new_context(storage_state=state, viewport={"width": 1280, "height": 900})
                    context.add_init_script(READY_PROBE)
                    page = context.new_page()
                    loads[f"{name}_cold"].append(self.load(page, url, ide))
                    for _ in range(self.args.warm):
                        loads[f"{name}_warm"].append(self.load(page, url, ide))
                    if ide and not typed:
                        typed = self.keystroke_lands(page)
                    context.close()
            browser.close()
        return {"loads": loads, "keystroke_lands": typed}

    @staticmethod
    def keystroke_lands(page: Any) -> bool:
        """A character typed into the editor reaches the open file's model."""
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.press("Control+Home")
        page.keyboard.type("#")
        return bool(page.evaluate("() => window.stratusIde.editor.getValue().startsWith('#')"))


# --- figures ------------------------------------------------------------------------------------


def row(
    samples: list[float],
    *,
    baseline: list[float] | None = None,
    target: float | None = None,
    pcts: tuple[int, ...] = (90, 99),
) -> dict[str, Any]:
    s = summary(samples)
    out: dict[str, Any] = {"p50": s["p50"], "n": s["n"]}
    for pct in pcts:
        out[f"p{pct}"] = s[f"p{pct}"]
    out["baseline_p50"] = round(median(baseline), 2) if baseline else None
    out["ratio"] = round(s["p50"] / median(baseline), 2) if baseline else None
    out["target_ms"] = target
    out["met"] = None if target is None else s["p50"] <= target
    return out


def figures(api: dict[str, list[float]], browser: dict[str, Any]) -> dict[str, Any]:
    loads = browser["loads"]

    def series(name: str, key: str) -> list[float]:
        return [float(x[key]) for x in loads[name]]

    out = {
        "healthz": row(api["healthz"]),
        "api_get_function": row(api["api_get"], baseline=api["healthz"]),
        "save_round_trip": row(api["save"], baseline=api["api_get"], target=TARGETS_MS["save_p50"]),
        "draft_run": row(api["run"], baseline=api["api_get"], target=TARGETS_MS["run_p50"]),
        "draft_run_in_instance": row(api["run_server"]),
        "overview_load_cold": row(series("overview_cold", "load"), pcts=(90,)),
        "overview_load_warm": row(series("overview_warm", "load"), pcts=(90,)),
        "editor_ready_cold": row(
            series("code_cold", "ready"),
            baseline=series("overview_cold", "load"),
            target=TARGETS_MS["ready_cold_p50"],
            pcts=(90,),
        ),
        "editor_ready_warm": row(
            series("code_warm", "ready"),
            baseline=series("overview_warm", "load"),
            target=TARGETS_MS["ready_warm_p50"],
            pcts=(90,),
        ),
    }
    return out


BASELINES = {
    "api_get_function": "GET /healthz",
    "save_round_trip": "GET function",
    "draft_run": "GET function",
    "editor_ready_cold": "overview cold",
    "editor_ready_warm": "overview warm",
}
LABELS = {
    "healthz": "GET /healthz",
    "api_get_function": "GET /api/v1/functions/{id}/",
    "save_round_trip": "save (PUT If-Match)",
    "draft_run": "draft run (POST invoke)",
    "draft_run_in_instance": "  of which in the handler",
    "overview_load_cold": "overview page cold (load)",
    "overview_load_warm": "overview page warm (load)",
    "editor_ready_cold": "editor ready, cold",
    "editor_ready_warm": "editor ready, warm",
}


def table(figs: dict[str, Any]) -> str:
    head = (
        f"{'figure':<30} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}  "
        f"{'baseline':<14} {'p50 ms':>8} {'ratio':>6}  {'target':<10} met"
    )
    lines = [head, "-" * len(head)]

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    for name, f in figs.items():
        met = "-" if f["met"] is None else ("yes" if f["met"] else "NO")
        target = "-" if f["target_ms"] is None else f"p50<={f['target_ms']:.0f}"
        ratio = "-" if f["ratio"] is None else f"{f['ratio']:.2f}"
        lines.append(
            f"{LABELS[name]:<30} {f['n']:>4} {num(f['p50']):>8} {num(f.get('p90')):>8} {num(f.get('p99')):>8}  "
            f"{BASELINES.get(name, '-'):<14} {num(f['baseline_p50']):>8} {ratio:>6}  {target:<10} {met}"
        )
    return "\n".join(lines)


def warm_requests(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """What warm loads asked the server for: per load, and the paths seen (with counts)."""
    counts = [len(x["server_requests"]) for x in loads]
    paths: dict[str, int] = {}
    for x in loads:
        for p in x["server_requests"]:
            paths[p] = paths.get(p, 0) + 1
    return {"per_load_p50": median(counts) if counts else 0, "max": max(counts, default=0), "paths": paths}


def find_chromium() -> str:
    # As tests/pages/conftest.py and bench/screenshots.py: Debian's chromium, not Playwright's download.
    chromium = os.environ.get("STRATUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    return chromium


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ide", description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cold", type=int, default=5, help="new browser contexts (cold loads) per page")
    parser.add_argument("--warm", type=int, default=5, help="warm loads after each cold one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "ide.json")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway data dir (logs)")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    chromium = find_chromium()
    monaco = ROOT / "frontend" / "build" / "vendor" / "monaco"
    if not monaco.is_dir():
        raise SystemExit(f"{monaco} is missing: `make frontend` copies Monaco there")
    procs = Processes()
    data_dir = Path(tempfile.mkdtemp(prefix="stratus-bench-ide-", dir="/tmp"))
    console = Console(procs, data_dir)
    try:
        print(f"bench.ide: data dir {data_dir}", flush=True)
        started = time.perf_counter()
        console.start()
        bench = IdeBench(args, console)
        bench.setup()
        print(f"bench.ide: {args.saves} saves, {args.runs} draft runs", flush=True)
        api = bench.api_figures()
        print(f"bench.ide: {args.cold} cold + {args.cold * args.warm} warm loads per page (Chromium)", flush=True)
        browser = bench.browser_figures(chromium)
        figs = figures(api, browser)
        loads = browser["loads"]
        results = {
            "figures": figs,
            "keystroke_lands": browser["keystroke_lands"],
            "warm_server_requests": {
                "code": warm_requests(loads["code_warm"]),
                "overview": warm_requests(loads["overview_warm"]),
            },
            "cold_server_requests": {"code": warm_requests(loads["code_cold"])},
            "settings": {k: str(v) for k, v in vars(args).items()},
            "raw": {"api_ms": api, "loads": loads},
            "seconds": round(time.perf_counter() - started, 1),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print()
        print(table(figs))
        warm = results["warm_server_requests"]
        cold = results["cold_server_requests"]["code"]
        print(
            f"\nrequests reaching the server per load: code tab cold {cold['per_load_p50']:.0f}, "
            f"warm {warm['code']['per_load_p50']:.0f} ({', '.join(sorted(warm['code']['paths'])) or 'none'}); "
            f"overview warm {warm['overview']['per_load_p50']:.0f}"
        )
        print(f"a keystroke lands in the editor once ready: {'yes' if browser['keystroke_lands'] else 'NO'}")
        missed = [LABELS[name] for name, f in figs.items() if f["met"] is False]
        print(f"wrote {args.out} ({results['seconds']:.0f} s)" + (f"; missed: {', '.join(missed)}" if missed else ""))
        return 0  # as bench.run: a missed target is reported, not a failure
    except Exception:
        traceback.print_exc()
        print(f"bench.ide: failed; console log in {data_dir}/serve.log", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        procs.stop_all()
        console.close()  # and SIGKILLs function instances the console left behind
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
