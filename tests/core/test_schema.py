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
