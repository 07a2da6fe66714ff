import pytest


@pytest.mark.django_db
def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_channel_layer_and_broker(client, settings):
    from apps.core import worker

    started_here = settings.STRATUS_EMBEDDED_WORKER and not worker.is_running()
    if started_here:
        worker.start()
    try:
        response = client.get("/readyz")
    finally:
        # Its periodic work (release sweeps, stale-run reaping) must not run beside later tests.
        if started_here:
            worker.stop()
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "channel_layer", "broker"}
    assert all(v.startswith("ok") for v in body["checks"].values())


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broken_part(client, settings):
    from console.celery import app

    # Read the broker before overriding settings: the first read of app.conf loads it from
    # them, and would otherwise "restore" the broken URL for every later test.
    old, old_transport = app.conf.broker_url, app.conf.broker_transport
    settings.STRATUS_EMBEDDED_WORKER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app.conf.broker_transport = None  # the embedded default names its in-memory transport
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url, app.conf.broker_transport = old, old_transport
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "not ready"
    assert body["checks"]["broker"].startswith("failed:")
    assert body["checks"]["database"].startswith("ok")


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["127.0.0.1:8000", "10.42.0.17:8000", "[fd00::17]:8000"])
def test_probes_answer_any_host_over_plain_http_in_production(client, settings, host):
    """A kubelet or load balancer probes the process by its address over HTTP, without the
    public Host or X-Forwarded-Proto; every other path still needs both."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["console.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    response = client.get("/healthz", HTTP_HOST=host)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    response = client.get("/readyz", HTTP_HOST=host)
    assert response.status_code in (200, 503) and "checks" in response.json(), response.content

    # Elsewhere: ALLOWED_HOSTS and the HTTPS redirect as before.
    assert client.get("/login/", HTTP_HOST=host).status_code == 400
    assert client.get("/healthz/x", HTTP_HOST=host).status_code == 400
    redirect = client.get("/login/", HTTP_HOST="console.example.com")
    assert redirect.status_code == 301 and redirect["Location"].startswith("https://console.example.com/")
    served = client.get("/login/", HTTP_HOST="console.example.com", HTTP_X_FORWARDED_PROTO="https")
    assert served.status_code == 200
