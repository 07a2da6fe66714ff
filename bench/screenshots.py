"""`make screenshots`: the console's main pages as PNGs in docs/screenshots/, taken from a real
console (`manage.py serve`, embedded default, demo seed) in a throwaway data dir, in Debian's
Chromium driven by Playwright. Some state is made first through the API, as a user would:
a function with three versions, deployed to dev and prod, and a release in progress in prod.

    .venv/bin/python -m bench.screenshots [--out docs/screenshots] [--narrow]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.console import ROOT, Console
from bench.procs import Processes

HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hello from v%d'}\n"
# (file name, path template, what to wait for) — path templates take project, function and org.
PAGES = [
    ("home", "/", "main"),
    ("project-overview", "/projects/{project}/", "main"),
    ("function-overview", "/functions/{function}/", "main"),
    ("function-environments", "/functions/{function}/environments/", "main"),
    ("function-releases", "/functions/{function}/releases/", "main"),
    ("function-versions", "/functions/{function}/versions/", "main"),
    ("version-diff", "/functions/{function}/versions/diff?from=1&to=3", "main"),
    ("function-timeline", "/functions/{function}/timeline/", "main"),
    ("project-environments", "/projects/{project}/environments/", "main"),
    ("org-members", "/orgs/{org}/members/", "main"),
    ("account-tokens", "/account/tokens/", "main"),
    ("pipeline", "/projects/{project}/pipeline/", "main"),
]


def make_state(console: Console) -> dict[str, Any]:
    project = console.project("shop")
    fn = console.create_function(project["id"], "checkout", runtime="python3.11", handler="main.handler")
    for n in (1, 2, 3):
        files = {"main.py": HANDLER % n, "README.md": f"checkout, version {n}\n"}
        console.call("POST", f"/functions/{fn['id']}/versions/", json={"files": files, "message": f"Change {n}"})
    for env, version in (("dev", 3), ("staging", 2), ("prod", 2)):
        console.call("POST", f"/functions/{fn['id']}/deploy", json={"environment": env, "version": version})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = console.call("GET", f"/functions/{fn['id']}/bindings/")["results"]
        if all(r["status"] == "ready" for r in rows):
            break
        time.sleep(0.2)
    console.call(
        "POST",
        f"/functions/{fn['id']}/releases/",
        json={"environment": "prod", "version": 3, "plan": {"steps": [10, 50, 100], "advance": "manual"}},
    )
    return {"project": project["id"], "function": fn["id"], "org": project["org"]}


def shoot(base: str, ids: dict[str, Any], out: Path, widths: list[int]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("STRATUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for width in widths:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(base + "/login/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "alice-demo-pass")
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            for name, template, ready in PAGES:
                response = page.goto(base + template.format(**ids))
                if response is None or response.status != 200:
                    print(f"  skipped {name}: {response.status if response else 'no answer'}", file=sys.stderr)
                    continue
                page.wait_for_selector(ready)
                suffix = "" if width == widths[0] else f"-{width}"
                path = out / f"{name}{suffix}.png"
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
                print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--narrow", action="store_true", help="also at 390 px wide (files named <page>-390.png)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    data_dir = Path(tempfile.mkdtemp(prefix="stratus-shots-"))
    console = Console(procs, data_dir)
    try:
        console.start()
        ids = make_state(console)
        shoot(console.base_url, ids, out, [1280, 390] if args.narrow else [1280])
    finally:
        console.close()
        procs.stop_all()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
