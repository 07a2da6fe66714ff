"""The Knative runtime image's entrypoint, run as the container would, without a cluster.

A Knative cluster cannot run here: the Kubernetes API is the fake in tests/functions/fake_kube.py
(it stands in for the cluster only: it stores what the backend writes). Everything else is real:
a binding deployed on the `knative` backend renders its Service and Secrets into the fake; the
container's command, PYTHONPATH and working directory come from runtime/Dockerfile; its env from the
rendered Service (secretKeyRefs resolved from the Secrets the backend wrote); its port from the
container's containerPort (here a free one: Knative sets PORT to it); the artifact URL is the
console's signed URL, downloaded from a served console. The entrypoint runs as a subprocess and
is called over HTTP; a few answers are compared with the local engine's for the same function.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.functions import deploy_services, services, version_services
from apps.functions.backends import knative_manifests as km
from apps.functions.backends import registry
from apps.functions.models import Binding, Function
from apps.tenancy.models import Environment
from tests.engine.conftest import engine, sandbox_dir, served, wait_routed  # noqa: F401 - fixtures
from tests.functions.fake_kube import FakeKube, running_fake_kube

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
DOCKERFILE = RUNTIME / "Dockerfile"
NS = "stratus-test"
IMAGE = "registry.example.com/stratus/runtime:1"

EVENT_SOURCE = """
import time

def handler(event, context):
    print("called", event["httpMethod"], event["path"])
    print("second line")
    if event["path"] == "/boom":
        raise ValueError("it broke")
    if event["path"] == "/slow":
        time.sleep(10)
    return {
        "path": event["path"],
        "method": event["httpMethod"],
        "query": event["queryStringParameters"],
        "body": event["body"],
        "base64": event["isBase64Encoded"],
        "proxy": event["pathParameters"],
        "header": event["headers"].get("X-Thing"),
        "stage": event["requestContext"]["stage"],
        "stratus": event["requestContext"]["stratus"],
        "left": context.get_remaining_time_in_millis() > 0,
    }
"""

WSGI_SOURCE = """
def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    print("wsgi", environ["REQUEST_METHOD"], environ["PATH_INFO"])
    out = ("%s %s ?%s [%s] %s" % (
        environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"],
        environ.get("HTTP_X_THING"), body.decode())).encode()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-App", "flaskless")])
    return [out]
"""


# --- the Dockerfile, read statically (no registry for base images here: it cannot be built) ---


def dockerfile() -> dict[str, Any]:
    """COPY sources -> destinations, ENV values, EXPOSE ports, the ENTRYPOINT argv, WORKDIR."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out: dict[str, Any] = {"copy": {}, "env": {}, "expose": [], "entrypoint": None, "workdir": None}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op == "COPY":
            src, dst = shlex.split(rest)
            out["copy"][src] = dst
        elif op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                out["env"][key] = value
        elif op == "EXPOSE":
            out["expose"] += [int(p) for p in rest.split()]
        elif op == "ENTRYPOINT":
            out["entrypoint"] = json.loads(rest)
        elif op == "WORKDIR":
            out["workdir"] = rest.strip()
    return out


def load_serve_http(monkeypatch: Any) -> Any:
    import importlib

    monkeypatch.syspath_prepend(str(RUNTIME))  # the image's PYTHONPATH
    return importlib.import_module("stratus_bootstrap.serve_http")


def test_dockerfile_contains_the_runtime_and_serves_what_the_manifest_expects(monkeypatch):
    image = dockerfile()
    pythonpath = image["env"]["PYTHONPATH"]
    # Both the fetcher and the bootstrap are in the image, where PYTHONPATH finds them.
    assert image["copy"] == {
        "fetch_artifact.py": f"{pythonpath}/fetch_artifact.py",
        "stratus_bootstrap": f"{pythonpath}/stratus_bootstrap",
        "node": f"{pythonpath}/node",  # node20 functions' bootstrap, where serve_http looks for it
    }
    serve_http = load_serve_http(monkeypatch)
    assert serve_http.NODE_BOOTSTRAP == RUNTIME / "node" / "bootstrap.js"
    for src in image["copy"]:
        assert (RUNTIME / src).exists(), src
    # The entrypoint is the HTTP server (exec form: it gets SIGTERM), a module that exists.
    assert image["entrypoint"] == ["python", "-m", "stratus_bootstrap.serve_http"]
    assert (RUNTIME / "stratus_bootstrap" / "serve_http.py").is_file()
    # It listens where the manifest says, answers the probe the manifest sets, unpacks to WORKDIR.
    assert image["expose"] == [km.CONTAINER_PORT]
    assert image["env"]["PORT"] == str(km.CONTAINER_PORT)
    assert image["env"]["STRATUS_TASK_DIR"] == image["workdir"] == "/var/task"
    assert serve_http.HEALTH_PATH == km.HEALTH_PATH
    assert serve_http.DEFAULT_PORT == km.CONTAINER_PORT
    # Every STRATUS_* variable the manifest sets is read by the runtime.
    version = km.KnativeVersion(
        number=1,
        artifact_sha256="0" * 64,
        artifact_url="http://console/artifacts/x.zip",
        spec=km.KnativeFunctionSpec(
            org="o",
            project="p",
            environment="e",
            function="f",
            runtime="python3.11",
            handler="main.handler",
            kind="event",
            memory_mb=128,
            timeout_s=3,
            min_instances=0,
            max_instances=1,
            instance_concurrency=1,
        ),
    )
    manifest = km.render_service(
        versions=[version], traffic=km.KnativeTraffic(entries=((1, 100),)), image=IMAGE, namespace=NS
    )
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http1", "containerPort": km.CONTAINER_PORT}]
    assert container["readinessProbe"]["httpGet"]["path"] == km.HEALTH_PATH
    sources = "".join(
        p.read_text() for p in [RUNTIME / "fetch_artifact.py", *(RUNTIME / "stratus_bootstrap").glob("*.py")]
    )
    for item in container["env"]:
        if item["name"].startswith("STRATUS_"):
            assert f'"{item["name"]}"' in sources, f"{item['name']} is set by the manifest but read by nothing"


# --- the container, run as a subprocess -------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with running_fake_kube() as fake:
        yield fake


@pytest.fixture
def console(served, fake, tmp_path, settings) -> Any:  # noqa: F811 - the engine's fixture
    """A served console (which also runs the local engine) whose `staging` is on knative (the fake API)."""
    settings.PUBLIC_URL = served.base_url
    settings.STRATUS_KNATIVE_KUBECONFIG = str(fake.write_kubeconfig(tmp_path / "kubeconfig"))
    settings.STRATUS_KNATIVE_NAMESPACE = NS
    settings.STRATUS_KNATIVE_IMAGE = IMAGE
    registry._build.cache_clear()
    yield served
    registry._build.cache_clear()


def make_function(world: Any, name: str, files: dict[str, str], runtime: str = "python3.11", **config: Any) -> Function:
    function = services.function_create(actor=world.alice, project=world.web, name=name, runtime=runtime, **config)
    version_services.version_create(
        actor=world.alice, function=function, files={k: v.encode() for k, v in files.items()}, source="files"
    )
    return function


def deploy(world: Any, function: Function, environment: str) -> Binding:
    env = Environment.objects.get(project=world.web, name=environment)
    if environment == "staging":
        Environment.objects.filter(pk=env.pk).update(execution_backend="knative")
        env.refresh_from_db()
    version = function.versions.order_by("-number").first()
    binding = deploy_services.deploy(
        actor=world.alice, function=function, environment=env, version=version, auth_mode="public"
    )
    applied = deploy_services.binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    assert applied is not None
    assert applied.backend == ("knative" if environment == "staging" else "local")
    return applied


def container_env(fake: FakeKube, binding: Binding) -> tuple[dict[str, str], dict[str, Any]]:
    """The env Kubernetes would give the container: the rendered Service's, secretKeyRefs resolved
    from the Secrets the backend wrote; and the container spec."""
    from apps.functions.backends.knative import KnativeBackend

    name = KnativeBackend(namespace=NS, image=IMAGE).service_name(deploy_services.binding_target(binding))
    service = fake.get("services", NS, name)
    assert service is not None
    (container,) = service["spec"]["template"]["spec"]["containers"]
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            secret = fake.get("secrets", NS, ref["name"])
            assert secret is not None, ref
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env, container


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Container:
    def __init__(self, process: subprocess.Popen[str], port: int, output: list[str]) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.output = output
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output if line.startswith("{")]


def start_container(env: dict[str, str], container: dict[str, Any], task_dir: Path) -> Container:
    """Run the image's ENTRYPOINT with the image's ENV, the manifest's env and PORT from its containerPort."""
    image = dockerfile()
    (port_spec,) = container["ports"]
    assert port_spec["containerPort"] == km.CONTAINER_PORT
    port = free_port()  # Knative: PORT=<containerPort>; here a free one, the same variable
    full_env = {
        "PATH": os.environ["PATH"],
        **image["env"],
        "PYTHONPATH": str(RUNTIME),  # the image's /opt/stratus
        "STRATUS_TASK_DIR": str(task_dir),  # the image's /var/task
        **env,
        "PORT": str(port),
    }
    argv = list(image["entrypoint"])
    assert argv[0] == "python"
    import sys

    argv[0] = sys.executable
    process = subprocess.Popen(
        argv, env=full_env, cwd=task_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    box = Container(process, port, output)
    probe = container["readinessProbe"]["httpGet"]["path"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return box
        try:
            if box.client.get(probe).status_code == 200:
                return box
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the container did not get ready: {output}")


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for box in started:
        if box.process.poll() is None:
            box.process.terminate()
            try:
                box.process.wait(10)
            except subprocess.TimeoutExpired:
                box.process.kill()
        box.client.close()


def run(fake, binding, tmp_path, containers) -> Container:
    env, spec = container_env(fake, binding)
    box = start_container(env, spec, tmp_path / f"task-{binding.pk}")
    containers.append(box)
    assert box.process.poll() is None, box.output
    return box


def env_of(fake: FakeKube, binding: Binding) -> dict[str, str]:
    return container_env(fake, binding)[0]


def test_event_function_answers_as_the_local_engine(
    world,
    engine,  # noqa: F811 - the engine fixture, imported above
    console,
    fake,
    tmp_path,
    containers,
    settings,
    transactional_db,
):
    function = make_function(world, "greet", {"main.py": EVENT_SOURCE}, handler="main.handler", timeout_s=1)
    knative = deploy(world, function, "staging")
    deploy(world, function, "dev")
    wait_routed(engine, function)
    box = run(fake, knative, tmp_path, containers)
    local = console.client
    local_prefix = f"/fn/{world.web.org.slug}/{world.web.slug}/dev/greet"

    def both(method: str, path: str, request_id: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        headers = {"x-request-id": request_id, "x-thing": "yes", **kwargs.pop("headers", {})}
        on_knative = box.client.request(method, path, headers=headers, **kwargs)
        on_local = local.request(method, local_prefix + path, headers=headers, **kwargs)
        return on_knative, on_local

    # A result: the same event fields reach the handler, the same JSON comes back.
    k, loc = both("POST", "/a/b%20c?x=1&x=2&y=", "req-ok-1", content=b"hello")
    assert k.status_code == loc.status_code == 200, loc.text
    result = k.json()
    assert result["path"] == "/a/b c" and result["query"] == {"x": "2", "y": ""}
    assert result["body"] == "hello" and result["base64"] is False and result["header"] == "yes"
    assert result["stratus"] == {
        "org": world.web.org.slug,
        "project": world.web.slug,
        "environment": "staging",
        "function": "greet",
    }
    assert {**result, "stage": "dev", "stratus": None} == {**loc.json(), "stratus": None}
    assert k.headers["x-request-id"] == "req-ok-1"
    ok_invocation = k.headers["x-stratus-invocation-id"]
    assert ok_invocation != "req-ok-1" and ok_invocation != loc.headers["x-stratus-invocation-id"]
    assert k.headers["x-stratus-version"] == loc.headers["x-stratus-version"] == "1"
    assert k.headers["content-type"] == loc.headers["content-type"] == "application/json"

    # An exception: 502 function_error, the same envelope byte for byte.
    k, loc = both("GET", "/boom", "req-boom-1")
    assert k.status_code == loc.status_code == 502
    assert k.content == loc.content
    assert k.json()["error"]["code"] == "function_error"
    assert k.json()["error"]["message"] == "ValueError: it broke"

    # A timeout: 504, the same envelope; the instance is replaced and the next call is a cold start.
    k, loc = both("GET", "/slow", "req-slow-1")
    assert k.status_code == loc.status_code == 504
    assert k.content == loc.content
    assert k.json()["error"]["message"] == "Task timed out after 1.00 seconds"
    k, loc = both("GET", "/after", "req-after-1")
    assert k.status_code == loc.status_code == 200
    assert k.headers.get("x-stratus-cold-start") == "1"
    assert box.client.get(km.HEALTH_PATH).status_code == 200

    # A body over the limit (the console's STRATUS_GATEWAY_MAX_BODY_BYTES, through the manifest): 413.
    limit = int(env_of(fake, knative)["STRATUS_MAX_BODY_BYTES"])
    assert limit == settings.STRATUS_GATEWAY_MAX_BODY_BYTES
    k, loc = both("POST", "/big", "req-big-1", content=b"x" * (limit + 1))
    assert k.status_code == loc.status_code == 413
    assert k.content == loc.content
    assert k.json()["error"]["code"] == "request_too_large"

    # Logs: one JSON line per print, tagged with the request id; failures add the engine's summary.
    logs = box.logs()
    ok_lines = [(line["stream"], line["level"], line["message"]) for line in logs if line["trace_id"] == "req-ok-1"]
    assert ok_lines == [("stdout", "info", "called POST /a/b c"), ("stdout", "info", "second line")]
    # The lines carry the invocation's own id too (the caller's id is the trace, not the invocation).
    assert {line["request_id"] for line in logs if line["trace_id"] == "req-ok-1"} == {ok_invocation}
    boom = [line["message"] for line in logs if line["trace_id"] == "req-boom-1"]
    assert boom[-1] == "[ERROR] ValueError: it broke"
    assert any("unpacked to" in line["message"] for line in logs if line["stream"] == "runtime")

    # SIGTERM (Knative scaling down): it stops and exits 0.
    box.process.terminate()
    assert box.process.wait(10) == 0
    assert box.logs()[-1]["message"] == "stopped"


def test_wsgi_function_is_served_over_http(world, console, fake, tmp_path, containers, transactional_db):
    function = make_function(world, "web", {"app.py": WSGI_SOURCE}, handler="app.app", kind="http")
    box = run(fake, deploy(world, function, "staging"), tmp_path, containers)

    response = box.client.put("/items/7?full=1", content=b"payload", headers={"x-thing": "t", "x-request-id": "w-1"})

    assert response.status_code == 201
    assert response.text == "PUT /items/7 ?full=1 [t] payload"
    assert response.headers["x-app"] == "flaskless"
    assert response.headers["x-request-id"] == "w-1"
    assert [line["message"] for line in box.logs() if line["trace_id"] == "w-1"] == ["wsgi PUT /items/7"]


NODE_SOURCE = """
exports.handler = async (event, context) => {
  console.log("called", event.httpMethod, event.path);
  if (event.path === "/boom") throw new TypeError("it broke");
  if (event.path === "/slow") await new Promise((resolve) => setTimeout(resolve, 10000));
  return {
    path: event.path,
    query: event.queryStringParameters,
    body: event.body,
    header: event.headers["X-Thing"],
    heap: Math.round(require("v8").getHeapStatistics().heap_size_limit / 1048576),
    memory: context.memoryLimitInMB,
    left: context.getRemainingTimeInMillis() > 0,
  };
};
"""


def test_node_function_answers_as_the_local_engine(
    world,
    engine,  # noqa: F811 - the engine fixture, imported above
    console,
    fake,
    tmp_path,
    containers,
    transactional_db,
):
    """A node20 function on Knative: the image runs the local engine's Node bootstrap behind the
    same HTTP front, so its answers, errors, timeouts and logs match the local engine's."""
    function = make_function(
        world, "nodegreet", {"index.js": NODE_SOURCE}, runtime="node20", handler="index.handler", timeout_s=1
    )
    knative = deploy(world, function, "staging")
    deploy(world, function, "dev")
    wait_routed(engine, function)
    env = env_of(fake, knative)
    assert env["STRATUS_RUNTIME"] == "node20"
    box = run(fake, knative, tmp_path, containers)
    local_prefix = f"/fn/{world.web.org.slug}/{world.web.slug}/dev/nodegreet"

    def both(method: str, path: str, request_id: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        headers = {"x-request-id": request_id, "x-thing": "yes"}
        return (
            box.client.request(method, path, headers=headers, **kwargs),
            console.client.request(method, local_prefix + path, headers=headers, **kwargs),
        )

    k, loc = both("POST", "/a?x=1", "node-ok-1", content=b"hello")
    assert k.status_code == loc.status_code == 200, (k.text, loc.text)
    # V8 sizes its young generation from the memory it sees (the local sandbox's limits differ
    # from this host's), so only the old space, set by the flag, is compared: the heap's bound.
    assert {**k.json(), "heap": None} == {**loc.json(), "heap": None}
    result = k.json()
    assert result["path"] == "/a" and result["query"] == {"x": "1"} and result["body"] == "hello"
    assert result["header"] == "yes" and result["left"] is True
    # The memory limit reaches node as the local engine passes it (--max-old-space-size).
    assert str(result["memory"]) == env["STRATUS_MEMORY_MB"]
    assert result["heap"] <= int(env["STRATUS_MEMORY_MB"]) + 192 < 2048, result  # unflagged V8: ~2-4 GB

    k, loc = both("GET", "/boom", "node-boom-1")
    assert k.status_code == loc.status_code == 502
    assert k.content == loc.content
    assert k.json()["error"]["message"] == "TypeError: it broke"

    k, loc = both("GET", "/slow", "node-slow-1")
    assert k.status_code == loc.status_code == 504
    assert k.content == loc.content
    k, _ = both("GET", "/after", "node-after-1")
    assert k.status_code == 200 and k.headers.get("x-stratus-cold-start") == "1"

    ok_lines = [(line["stream"], line["message"]) for line in box.logs() if line["trace_id"] == "node-ok-1"]
    assert ok_lines == [("stdout", "called POST /a")]
    box.process.terminate()
    assert box.process.wait(10) == 0


def test_a_runtime_the_image_cannot_run_refuses_to_start(world, console, fake, tmp_path, containers, transactional_db):
    function = make_function(world, "nodeless", {"index.js": NODE_SOURCE}, runtime="node20", handler="index.handler")
    env, spec = container_env(fake, deploy(world, function, "staging"))
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env["PATH"] = str(empty_bin)  # an image built without Node
    box = start_container(env, spec, tmp_path / "task")
    containers.append(box)
    assert box.process.wait(20) == 1
    (line,) = [line for line in box.logs() if line["level"] == "error"]
    assert line["message"] == "runtime node20 needs node on PATH, and this image has none; not starting"
    assert not (tmp_path / "task" / "index.js").exists()  # refused before the fetch


def test_a_tampered_artifact_refuses_to_start(world, console, fake, tmp_path, containers, transactional_db):
    function = make_function(world, "greet", {"main.py": EVENT_SOURCE}, handler="main.handler")
    env, spec = container_env(fake, deploy(world, function, "staging"))
    real = httpx.get(env["STRATUS_ARTIFACT_URL"]).content  # the signed URL works
    assert real[:2] == b"PK"
    tampered = real[:40] + bytes([real[40] ^ 1]) + real[41:]  # one bit of the deflated main.py
    assert tampered != real

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(tampered)))
            self.end_headers()
            self.wfile.write(tampered)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env["STRATUS_ARTIFACT_URL"] = f"http://127.0.0.1:{server.server_address[1]}/artifact.zip"
        box = start_container(env, spec, tmp_path / "task")
        containers.append(box)
        assert box.process.wait(20) == 1
    finally:
        server.shutdown()
        server.server_close()
    (line,) = [line for line in box.logs() if line["level"] == "error"]
    assert line["message"].startswith(f"artifact sha256 mismatch: expected {env['STRATUS_ARTIFACT_SHA256']}")
    assert line["message"].endswith("refusing to unpack; not starting")
    assert not (tmp_path / "task" / "main.py").exists()
    with pytest.raises(httpx.TransportError):
        box.client.get(km.HEALTH_PATH)


ECHO_SOURCE = """
def handler(event, context):
    if event.get("rawPath") == "/cookies" or event.get("path") == "/cookies":
        return {"statusCode": 200, "cookies": ["a=1", "b=2"], "multiValueHeaders": {"X-Many": ["x", "y"]}, "body": ""}
    if event.get("rawPath") == "/text":
        return "as is"
    return {"event": event, "same_id": context.aws_request_id == (event.get("requestContext") or {}).get("requestId")}
"""

# What differs between the two paths by design: ids and clocks, the environment (staging on
# Knative, dev locally) and the host and port each server listens on.
VOLATILE = {
    "requestId",
    "extendedRequestId",
    "requestTime",
    "requestTimeEpoch",
    "time",
    "timeEpoch",
    "stage",
    "stageVariables",
    "stratus",
    "domainName",
    "domainPrefix",
    "Host",
    "host",
    "X-Forwarded-Port",
    "x-forwarded-port",
}


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("event_format", "routes", "path"),
    [
        ("apigw-v1", [], "/a/b%20c?x=1&x=2&y="),
        ("apigw-v1", ["/items/{id}", "/files/{rest+}", "/cookies"], "/files/x/y%2Fz?q=1"),
        ("apigw-v2", ["/items/{id}", "/cookies"], "/items/7?a=1&a=2"),
        ("scf", ["/items/{id}", "/cookies"], "/items/7?foo=bar"),
    ],
)
def test_event_formats_and_routes_answer_as_the_local_gateway(
    world,
    engine,  # noqa: F811 - the engine fixture, imported above
    console,
    fake,
    tmp_path,
    containers,
    transactional_db,
    event_format,
    routes,
    path,
):
    """The same event reaches the handler on Knative as through the local gateway (one module
    shapes both), the same answers come back, and a path no route matches is the same 404."""
    function = make_function(
        world, "shapes", {"main.py": ECHO_SOURCE}, handler="main.handler", event_format=event_format, routes=routes
    )
    knative = deploy(world, function, "staging")
    deploy(world, function, "dev")
    wait_routed(engine, function)
    env = env_of(fake, knative)
    assert env.get("STRATUS_EVENT_FORMAT", "apigw-v1") == event_format
    assert json.loads(env.get("STRATUS_ROUTES", "[]")) == routes
    box = run(fake, knative, tmp_path, containers)
    local_prefix = f"/fn/{world.web.org.slug}/{world.web.slug}/dev/shapes"
    headers = [
        ("x-request-id", "shape-1"),
        ("X-Multi", "one"),
        ("X-Multi", "two"),
        ("Cookie", "c1=v1; c2=v2"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("Content-Type", "application/octet-stream"),
    ]

    # Locally on the functions' own host (the console's gives a function no cookies).
    functions_host = console.base_url.replace("127.0.0.1", "localhost")

    def both(method: str, target: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        return (
            box.client.request(method, target, headers=headers, **kwargs),
            httpx.request(method, functions_host + local_prefix + target, headers=headers, **kwargs),
        )

    k, loc = both("POST", path, content=b"\x00\xffbinary")
    assert k.status_code == loc.status_code == 200, (k.text, loc.text)
    on_knative, on_local = without_volatile(k.json()), without_volatile(loc.json())
    assert json.dumps(on_knative, indent=1, sort_keys=True) == json.dumps(on_local, indent=1, sort_keys=True)
    event = k.json()["event"]
    assert k.json()["same_id"] is True
    assert k.headers["x-request-id"] == "shape-1" != k.headers["x-stratus-invocation-id"]
    assert event["isBase64Encoded"] is True
    ctx = event["requestContext"]
    source_ip = ctx.get("identity", {}).get("sourceIp") or ctx.get("sourceIp") or ctx["http"]["sourceIp"]
    assert source_ip == "203.0.113.9"  # the client, as the trusted local proxy (queue-proxy / uvicorn's) named it
    if routes:
        k, loc = both("GET", "/nowhere")
        assert k.status_code == loc.status_code == 404
        assert k.content == loc.content
    k, loc = both("GET", "/cookies")
    assert k.status_code == loc.status_code == 200
    assert k.headers.get_list("x-many") == loc.headers.get_list("x-many") == ["x", "y"]
    if event_format == "apigw-v2":
        assert k.headers.get_list("set-cookie") == loc.headers.get_list("set-cookie") == ["a=1", "b=2"]
    else:
        assert k.headers.get_list("set-cookie") == loc.headers.get_list("set-cookie") == []
