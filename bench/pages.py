"""`python -m bench.pages`: how long the console's function pages take to render on the
server for a big project (the budget: each page ≤ 100 ms with 200 functions × 3 environments
× 50 versions, and a query count that does not grow with the rows).

Builds the project in a throwaway data dir (SQLite, embedded default; DATABASE_URL and
REDIS_URL are ignored), signs in with Django's test Client, and renders each page
``--renders`` times after a warm-up: prints p50/p99 (ms) and the query count per page, and
writes bench-results/pages.json (also the CPU time of the rendering thread, steadier than wall
time on a shared machine). A missed target is printed, not an exit status: as bench.run.

``populate()`` is also what tests/pages/test_function_queries.py builds its projects with.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

TARGET_MS = 100.0
ENVIRONMENTS = ("dev", "staging", "prod")


def populate(*, project: Any, actor: Any, functions: int, versions: int) -> list[Any]:
    """``functions`` functions in ``project``, each with ``versions`` versions (one shared
    artifact), bound in dev, staging and prod (prod split 90/10 between the last two
    versions), with a traffic change per binding and audit events. Bulk inserts: seconds for
    200 × 50. Returns the functions."""
    from django.utils import timezone

    from apps.audit.models import AuditEvent
    from apps.functions.artifacts import artifact_store
    from apps.functions.knobs import CONFIG_FIELDS
    from apps.functions.models import Binding, Function, TrafficChange, Version
    from apps.tenancy.models import Environment

    artifact = artifact_store(
        files={"main.py": b"def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi'}\n"}
    )
    made = Function.objects.bulk_create(
        [
            Function(
                project=project,
                name=f"fn-{i:04d}",
                runtime="python3.11",
                handler="main.handler",
                description=f"function number {i}",
                created_by=actor,
            )
            for i in range(functions)
        ]
    )
    made = list(Function.objects.filter(project=project, name__startswith="fn-").order_by("name"))
    config = {field: getattr(made[0], field) for field in CONFIG_FIELDS if field != "description"}
    now = timezone.now()
    Version.objects.bulk_create(
        [
            Version(
                function=f,
                number=n,
                artifact=artifact,
                config=config,
                source="git" if n % 2 else "upload",
                source_info={"branch": "main", "commit": f"{n:040x}", "run": n} if n % 2 else {},
                message=f"change {n}",
                author=actor,
            )
            for f in made
            for n in range(1, versions + 1)
        ],
        batch_size=2000,
    )
    environments = {e.name: e for e in Environment.objects.filter(project=project, name__in=ENVIRONMENTS)}
    bindings = []
    for f in made:
        for name, env in environments.items():
            if name == "prod" and versions > 1:
                traffic = [{"version": versions - 1, "weight": 90}, {"version": versions, "weight": 10}]
            else:
                traffic = [{"version": versions, "weight": 100}]
            binding = Binding(function=f, environment=env, traffic=traffic, backend="local", auth_mode="public")
            binding.status = Binding.Status.READY
            bindings.append(binding)
    Binding.objects.bulk_create(bindings, batch_size=2000)
    bindings = list(Binding.objects.filter(function__project=project))
    TrafficChange.objects.bulk_create(
        [
            TrafficChange(binding=b, actor=actor, reason="deploy", from_traffic=[], to_traffic=b.traffic)
            for b in bindings
        ],
        batch_size=2000,
    )
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                org_id=project.org_id,
                actor=actor,
                actor_repr=actor.get_username(),
                action="version.create",
                target_type="function",
                target_id=str(f.pk),
                target_repr=str(f),
                changes={"number": versions},
                created_at=now - timedelta(seconds=i),
            )
            for i, f in enumerate(made)
        ],
        batch_size=2000,
    )
    return made


def _measure(client: Any, path: str, renders: int) -> dict[str, Any]:
    from django.db import connection

    for _ in range(3):  # warm-up: template loading, caches
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    # Counted by a wrapper: the test Client's request_started resets connection.queries.
    queries: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        client.get(path)
    times, cpu = [], []
    for _ in range(renders):
        start, start_cpu = time.perf_counter(), time.thread_time()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        assert response.status_code == 200
    from bench.stats import median, percentile

    return {
        "path": path,
        "p50_ms": round(median(times), 1),
        "p99_ms": round(percentile(times, 99), 1),
        # CPU time of the rendering thread: what the page costs, less what a busy machine adds.
        "cpu_p50_ms": round(median(cpu), 1),
        "queries": len(queries),
        "bytes": len(response.content),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--out", default="bench-results/pages.json")
    args = parser.parse_args(argv)

    data_dir = tempfile.mkdtemp(prefix="stratus-bench-pages-")
    for name in ("DATABASE_URL", "REDIS_URL", "STRATUS_ENGINE", "STRATUS_PRODUCTION"):
        os.environ.pop(name, None)
    os.environ["STRATUS_DATA_DIR"] = data_dir
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    # The request log (one JSON line per render) would bury the table.
    logging.getLogger("stratus.request").setLevel(logging.WARNING)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from apps.tenancy import org_services, project_services
    from apps.tenancy.roles import Role

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0, interactive=False)
    users = get_user_model().objects
    alice = users.create_user(username="alice", password="bench-pw-123")  # noqa: S106 - a throwaway db
    bob = users.create_user(username="bob", password="bench-pw-123")  # noqa: S106
    org = org_services.org_create(actor=alice, slug="bench", name="Bench")
    org_services.membership_ensure(user=bob, org=org, role=Role.DEVELOPER)
    project = project_services.project_create(actor=alice, org=org, slug="big", name="Big")
    project_services.project_grant_set(actor=alice, project=project, role=Role.DEVELOPER, user=bob)
    start = time.perf_counter()
    functions = populate(project=project, actor=alice, functions=args.functions, versions=args.versions)
    built_s = time.perf_counter() - start
    first = functions[0]

    client = Client()
    client.force_login(bob)  # a developer: per-project rights, not an org admin's shortcut
    pages = {
        "project overview": f"/projects/{project.pk}/",
        "functions": f"/projects/{project.pk}/functions/",
        "function overview": f"/functions/{first.pk}/",
        "versions": f"/functions/{first.pk}/versions/",
        "version files": f"/functions/{first.pk}/versions/{args.versions}/",
        "diff": f"/functions/{first.pk}/versions/diff?from=1&to={args.versions}",
        "settings": f"/functions/{first.pk}/settings/",
    }
    results = {name: _measure(client, path, args.renders) for name, path in pages.items()}
    print(
        f"Function pages: {args.functions} functions x {len(ENVIRONMENTS)} environments x {args.versions} versions "
        f"(built in {built_s:.1f} s), {args.renders} renders each, Django test Client, SQLite"
    )
    print(f"{'page':<20} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'queries':>8} {'KB':>6}")
    missed = []
    for name, r in results.items():
        flag = "" if r["p50_ms"] <= TARGET_MS else f"  p50 > {TARGET_MS:.0f} ms"
        if flag:
            missed.append(name)
        print(
            f"{name:<20} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['cpu_p50_ms']:>8.1f} {r['queries']:>8} "
            f"{r['bytes'] / 1024:>6.0f}{flag}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "functions": args.functions,
                "environments": len(ENVIRONMENTS),
                "versions": args.versions,
                "renders": args.renders,
                "target_ms": TARGET_MS,
                "pages": results,
                "missed": missed,
            },
            indent=2,
        )
    )
    print(f"wrote {out}" + (f"; over {TARGET_MS:.0f} ms: {', '.join(missed)}" if missed else ""))
    return 0  # as bench.run: a missed target is reported, not a failure


if __name__ == "__main__":
    sys.exit(main())
