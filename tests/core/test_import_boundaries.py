"""The layers of apps/, checked on every import (docs/ARCHITECTURE.md, "Control plane → engine"):

- the control plane (functions, pipelines, releases, tenancy) never imports the engine: it
  speaks to execution through the backend interface and announcements the engine subscribes to
  (apps/functions/routes.py, apps/tenancy/announcements.py);
- apps/core is the ground floor and imports no other app;
- no import circle between modules of different apps runs through the engine.

Every import counts: module level, inside functions, under ``if TYPE_CHECKING``, ``import x``
and ``from x import y``, relative ones resolved. The checker is tried on small trees first, one
per rule, so a checker that stopped seeing an import would fail here too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTROL_PLANE = ("functions", "pipelines", "releases", "tenancy")

RULE_ENGINE = "control plane -> engine only through the backend interface and announcements"
RULE_CORE = "apps.core is the ground floor and imports no other app"
RULE_CIRCLE = "no import circle between modules of different apps through the engine"


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, e.g. apps.functions.deploy_services
    target: str  # imported module (the most specific one that exists under apps/)
    file: str  # path relative to the root
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "apps" else None


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, *([name] if name else [])])


def _known(name: str, modules: set[str]) -> str:
    """The most specific module of ``name`` that exists (``apps.engine.host.routes_changed`` ->
    ``apps.engine.host``); ``name`` itself when nothing under apps/ matches (a library)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def import_edges(root: Path) -> list[Edge]:
    """Every import of every module under ``root``/apps, as edges between module names."""
    paths = sorted((root / "apps").rglob("*.py"))
    modules = {module_name(root, path) for path in paths}
    edges = []
    for path in paths:
        source = module_name(root, path)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = str(path.relative_to(root))
        for node in ast.walk(tree):  # every node: function bodies and conditionals too
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (
                    _resolve_relative(source, is_package, node.level, node.module)
                    if node.level
                    else (node.module or "")
                )
                # ``from apps import engine`` imports the module apps.engine; ``from
                # apps.engine.host import routes_changed`` imports apps.engine.host.
                targets = [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"] or [base]
            for target in targets:
                edges.append(Edge(source, _known(target, modules), rel, node.lineno))
    return edges


def _circles_through_engine(edges: list[Edge]) -> list[list[Edge]]:
    """One circle per strongly connected set of modules that holds an engine module and a
    module of another app (Tarjan), as the edges that close it."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        if app_of(edge.target) is not None and edge.source != edge.target:
            graph.setdefault(edge.source, []).append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        # Iterative Tarjan: apps/ is deep enough to make recursion a risk.
        work = [(node, iter(graph.get(node, [])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            advanced = False
            for edge in children:
                child = edge.target
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, []))))
                    advanced = True
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == current:
                        break
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    circles = []
    for component in components:
        apps = {app_of(m) for m in component}
        if len(component) < 2 or "engine" not in apps or len(apps) < 2:
            continue
        start = sorted(m for m in component if app_of(m) == "engine")[0]
        circles.append(_path_back(start, component, graph))
    return circles


def _path_back(start: str, component: set[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """The shortest circle from ``start`` back to itself inside ``component`` (breadth first)."""
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph.get(node, []):
                if edge.target not in component or edge.target in came:
                    continue
                came[edge.target] = edge
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                following.append(edge.target)
        frontier = following
    raise AssertionError(f"{start} is in a circle but no path leads back to it")


def violations(root: Path) -> list[str]:
    """Every broken rule, one line each: file:line, the rule, the import."""
    edges = import_edges(root)
    found = []
    for edge in sorted(edges, key=lambda e: (e.file, e.line)):
        source_app, target_app = app_of(edge.source), app_of(edge.target)
        if target_app is None or source_app == target_app:
            continue
        if source_app in CONTROL_PLANE and target_app == "engine":
            found.append(f"{edge.where}: {RULE_ENGINE}: {edge.source} imports {edge.target}")
        if source_app == "core":
            found.append(f"{edge.where}: {RULE_CORE}: {edge.source} imports {edge.target}")
    for circle in _circles_through_engine(edges):
        steps = "; ".join(f"{e.where} {e.source} imports {e.target}" for e in circle)
        found.append(f"{circle[0].where}: {RULE_CIRCLE}: {steps}")
    return found


def test_apps_keep_their_layers() -> None:
    found = violations(ROOT)
    assert found == [], "imports that break the layers of apps/:\n" + "\n".join(found)


# --- the checker itself, on small trees ------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name in ("apps/__init__.py", "apps/core/__init__.py", "apps/engine/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path("."):
                (tmp_path / parent / "__init__.py").touch()
        path.write_text(text)
    return tmp_path


ENGINE_HOST = {"apps/engine/host.py": "def routes_changed(ids=()):\n    pass\n"}


@pytest.mark.parametrize(
    ("text", "line", "target"),
    [
        ("from apps.engine.host import routes_changed\n", 2, "apps.engine.host"),
        ("import apps.engine.host\n", 2, "apps.engine.host"),
        ("from apps import engine\n", 2, "apps.engine"),
        ("from apps.engine import host\n", 2, "apps.engine.host"),
        ("def deploy():\n    if True:\n        from apps.engine.host import routes_changed\n", 4, "apps.engine.host"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import apps.engine.host\n", 4, "apps.engine.host"),
        ("from ...engine.host import routes_changed\n", 2, "apps.engine.host"),  # apps/<app>/sub -> apps
    ],
)
@pytest.mark.parametrize("app", CONTROL_PLANE)
def test_the_checker_sees_every_kind_of_import_of_the_engine_from_the_control_plane(
    tmp_path: Path, app: str, text: str, line: int, target: str
) -> None:
    root = _tree(tmp_path, {**ENGINE_HOST, f"apps/{app}/sub/deploy.py": "\n" + text})

    found = violations(root)

    assert found == [f"apps/{app}/sub/deploy.py:{line}: {RULE_ENGINE}: apps.{app}.sub.deploy imports {target}"]


def test_the_checker_lets_the_engine_import_the_control_plane_and_others_use_announcements(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            **ENGINE_HOST,
            "apps/functions/routes.py": "from apps.core.announcements import Announcement\n",
            "apps/core/announcements.py": "class Announcement:\n    pass\n",
            "apps/engine/apps.py": "from apps.functions.routes import routes_changed\n",
            "apps/monitoring/sink.py": "from apps.engine.host import routes_changed\n",
        },
    )

    assert violations(root) == []


@pytest.mark.parametrize(
    ("text", "line"),
    [("from apps.tenancy import selectors\n", 1), ("def home():\n    import apps.tenancy.selectors\n", 2)],
)
def test_the_checker_refuses_core_importing_another_app(tmp_path: Path, text: str, line: int) -> None:
    root = _tree(tmp_path, {"apps/core/pages.py": text, "apps/tenancy/selectors.py": ""})

    found = violations(root)

    assert found == [f"apps/core/pages.py:{line}: {RULE_CORE}: apps.core.pages imports apps.tenancy.selectors"]


def test_the_checker_finds_a_circle_through_the_engine_and_names_each_import(tmp_path: Path) -> None:
    # engine.host -> engine.remote -> monitoring.rollups -> engine.host: no control-plane rule
    # applies (monitoring may import the engine), the circle is what is wrong.
    root = _tree(
        tmp_path,
        {
            "apps/engine/host.py": "def go():\n    from apps.engine.remote import Remote\n",
            "apps/engine/remote.py": "from apps.monitoring.rollups import merged\n",
            "apps/monitoring/rollups.py": "\n\nfrom apps.engine.host import go\n",
        },
    )

    found = violations(root)

    assert found == [
        f"apps/engine/host.py:2: {RULE_CIRCLE}: "
        "apps/engine/host.py:2 apps.engine.host imports apps.engine.remote; "
        "apps/engine/remote.py:1 apps.engine.remote imports apps.monitoring.rollups; "
        "apps/monitoring/rollups.py:3 apps.monitoring.rollups imports apps.engine.host"
    ]


def test_the_checker_leaves_circles_that_do_not_reach_the_engine(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "apps/functions/deploy.py": "def go():\n    from apps.releases.selectors import active\n",
            "apps/releases/selectors.py": "from apps.functions.deploy import go\n",
        },
    )

    assert violations(root) == []
