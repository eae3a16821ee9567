"""The OpenAPI schema documents the error answers each route gives, with their real body shape."""

from __future__ import annotations

from fastapi.testclient import TestClient

from geofence.service.app import create_app

REF = {"$ref": "#/components/schemas/ErrorAnswer"}


def test_every_operation_documents_its_error_answers(settings):
    schema = create_app(settings).openapi()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "400" in codes, (method, path)
            public = path in ("/healthz", "/readyz") or "twilio" in path
            if not public:
                assert {"401", "403", "422", "429"} <= codes, (method, path, codes)
            if "{" in path:
                assert "404" in codes, (method, path)
            if method in ("post", "put", "patch"):
                assert {"408", "413"} <= codes, (method, path)
            for code in {c for c in codes if c[0] in "45"}:
                assert operation["responses"][code]["content"]["application/json"]["schema"] == REF
    detail = schema["components"]["schemas"]["ErrorAnswer"]["properties"]["detail"]["anyOf"]
    assert {"string", "array", "object"} == {variant["type"] for variant in detail}


def test_a_string_422_and_a_list_422_are_both_what_the_schema_says(settings):
    with TestClient(create_app(settings)) as client:
        rocket = {"name": "x", "sizing": {"lat": 1, "lng": 2, "profile": "rocket"}}
        engine_reason = client.post("/v1/zones", json=rocket)
        schema_check = client.post("/v1/zones", json={"name": 7})
    assert engine_reason.status_code == 422 and isinstance(engine_reason.json()["detail"], str)
    assert schema_check.status_code == 422 and isinstance(schema_check.json()["detail"], list)
