import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_validates_without_warnings_and_lists_the_api(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["info"]["title"] == "Stratus API"
    assert "/api/v1/projects/" in schema["paths"]
    assert "/api/v1/projects/{project_id}/environments/{env}/secrets/{name}" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal access token (stt_...) created at /api/v1/tokens/.",
    }
    # lists are paginated in the schema as they are on the wire
    listing = schema["paths"]["/api/v1/projects/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listing["schema"]["$ref"] == "#/components/schemas/PaginatedProjectList"


@pytest.mark.django_db
def test_swagger_ui_and_schema_are_served(client):
    assert client.get("/api/v1/docs/").status_code == 200
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"openapi: 3" in response.content


# --- the schema tells the truth (issue 12) -------------------------------------------------------

WRITES = ("post", "put", "patch", "delete")


@pytest.fixture
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_documents_its_error_answers_in_the_envelope(schema):
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    missing = []
    operations = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            operations += 1
            expected = {"400", "401", "403", "404"}
            if method in WRITES:
                expected |= {"409", "413"}
            if "requestBody" in operation:
                expected.add("415")
            for status in sorted(expected):
                answer = operation["responses"].get(status)
                if answer is None or answer["content"]["application/json"]["schema"] != envelope:
                    missing.append(f"{method.upper()} {path} {status}")
    assert operations >= 100
    assert missing == []
    error = schema["components"]["schemas"]["ErrorEnvelope"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "fields"]
    assert set(error["properties"]["error"]["properties"]) == {"code", "message", "fields"}


def test_view_specific_answers_are_kept_beside_the_common_ones(schema):
    invoke = schema["paths"]["/api/v1/functions/{function_id}/invoke"]["post"]["responses"]
    assert invoke["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InvocationResult"}
    accept = schema["paths"]["/api/v1/invitations/accept"]["post"]["responses"]
    assert accept["410"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert "201" in accept and "200" not in accept


def test_limit_and_offset_are_documented_as_bounded_integers(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/projects/"]["get"]["parameters"]}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert parameters["offset"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-3", "limit"),
        ("limit=1.5", "limit"),
        ("limit=%207", "limit"),
        ("offset=x", "offset"),
        ("offset=-1", "offset"),
        ("offset=" + "9" * 5000, "offset"),
        ("offset=2147483648", "offset"),
        ("limit=5&offset=true", "offset"),
    ],
)
def test_a_bad_limit_or_offset_answers_400_naming_it(world, client_for, query, parameter):
    response = client_for(world.alice, scopes=["read"]).get(f"/api/v1/projects/?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [parameter]
    assert error["message"].startswith(f"{parameter}: Must be a whole number from ")


@pytest.mark.django_db
def test_limit_and_offset_within_bounds_page_the_list(world, client_for):
    client = client_for(world.alice, scopes=["read"])
    for slug in ("a", "b", "c"):
        client_for(world.alice).post("/api/v1/projects/", {"org": "alpha", "slug": slug, "name": slug}, format="json")
    page = client.get("/api/v1/projects/?limit=2&offset=1").json()
    assert (page["count"], len(page["results"])) == (4, 2)
    assert client.get("/api/v1/projects/?limit=500&offset=2147483647").json()["results"] == []
    capped = client.get("/api/v1/projects/?limit=" + "9" * 5000).json()  # over the maximum: capped, as before
    assert (capped["count"], len(capped["results"])) == (4, 4)


@pytest.mark.django_db
def test_an_audit_event_of_no_organization_says_org_null_as_the_schema_does(world, client_for, schema):
    assert schema["components"]["schemas"]["AuditEvent"]["properties"]["org"]["nullable"] is True
    client = client_for(world.dora, scopes=["read", "admin"])  # creating the token is dora's only event
    events = client.get("/api/v1/audit-events/").json()["results"]
    assert [(e["action"], e["org"]) for e in events] == [("token.create", None)]


def test_run_log_and_version_files_are_documented_as_answered(schema):
    paths = schema["paths"]
    log = paths["/api/v1/runs/{run_id}/log"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert log == {"$ref": "#/components/schemas/RunLogPage"}
    page = schema["components"]["schemas"]["RunLogPage"]
    assert set(page["properties"]) == {"run", "state", "lines", "next_after", "more"}
    assert page["properties"]["lines"] == {"type": "array", "items": {"$ref": "#/components/schemas/RunLogLine"}}
    files = paths["/api/v1/functions/{function_id}/versions/{number}/files/"]["get"]
    assert files["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/VersionFileEntry"},
    }
    assert [p["name"] for p in files["parameters"]] == ["function_id", "number"]  # not paginated


@pytest.mark.django_db
def test_the_api_root_is_an_index_of_links_without_a_token(client):
    response = client.get("/api/v1/")
    assert response.status_code == 200
    body = response.json()
    assert body["schema"] == "http://testserver/api/v1/schema/"
    assert body["docs"] == "http://testserver/api/v1/docs/"
    assert body["collections"]["projects"] == "http://testserver/api/v1/projects/"
    for url in (body["schema"], body["docs"], *body["collections"].values()):
        path = url.removeprefix("http://testserver")
        assert client.get(path).status_code in (200, 401), path  # each link exists


@pytest.mark.django_db
def test_swagger_ui_loads_its_assets_from_this_host(client):
    # No CDN: the page works without internet, and the CSP ('self' only) allows every asset.
    page = client.get("/api/v1/docs/")
    html = page.content.decode()
    assert "cdn." not in html and "//unpkg" not in html
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    csp = page.headers.get("Content-Security-Policy", "")
    assert "script-src 'self'" in csp or "default-src 'self'" in csp
