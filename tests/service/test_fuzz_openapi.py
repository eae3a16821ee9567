"""Fuzz the whole OpenAPI schema in-process (ASGI, no network): no input may produce a 5xx, and every
answer must be what the schema documents (status code, content type, body schema: docs/api-errors.md).

Every operation is fuzzed with valid and schema-violating inputs, anonymously (the auth layer must
answer, not crash) and with a key holding both scopes (the handlers themselves get the input).
Bounded: a few examples per operation and mode, no shrinking, fixed seed — reproducible and fast.

The operations are driven with ``APIOperation.as_strategy()`` + Hypothesis rather than
``@schema.parametrize()``: schemathesis' lazy pytest fixture loader does not work with pytest 9.2
(``Function`` has no ``_nodeid``), and one test that collects every failing operation reports better.
"""

from __future__ import annotations

import logging
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from geofence.service.app import create_app
from tests.conftest import make_key_headers

# Per operation and generation mode. Generating the inputs dominates the run time (~0.1 s per example
# for a rich body), and the schema has ~40 operations: these keep the whole file under a minute.
# SQLite: valid and schema-violating inputs. PostgreSQL: valid inputs only — it is there for what
# PostgreSQL refuses and SQLite stores (NUL in text, integers beyond BIGINT), which valid inputs carry.
MODES = {
    "sqlite": (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    "postgresql": (GenerationMode.POSITIVE,),
}
# GEOFENCE_FUZZ_EXAMPLES=50 for a deeper run by hand; the suite keeps to a few.
EXAMPLES_PER_OPERATION = int(os.environ.get("GEOFENCE_FUZZ_EXAMPLES", "4"))
ANONYMOUS_EXAMPLES = 2
FUZZ = settings(
    deadline=None,
    derandomize=True,  # same inputs every run: a failure is reproducible, not flaky
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
AUTH_HEADERS = {"authorization", "x-api-key", "x-device-token"}
# The answer must be documented: its code, its content type and its body's schema.
RESPONSE_CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
]
# Not authenticated by API key, by design (see docs/security.md).
PUBLIC = ("/healthz", "/readyz", "/metrics")


def _quiet_app(settings, engine):
    # thousands of requests with junk keys from one address: the failed-check limit would answer 429
    limits = settings.limits.model_copy(update={"failed_auth_rate_per_s": 0})
    app = create_app(settings.model_copy(update={"limits": limits}), engine=engine)
    # Generated inputs make handlers log warnings at a high rate; keep the test output readable.
    logging.getLogger().setLevel(logging.ERROR)
    return app


@pytest.fixture
def fuzz_app(secure_settings, engine):
    """On SQLite and PostgreSQL: PostgreSQL refuses what SQLite stores (NUL in text, huge integers)."""
    return _quiet_app(secure_settings, engine)


@pytest.fixture
def anonymous_app(secure_settings, sqlite_engine):
    """Anonymous requests stop at the auth layer, which does not depend on the database engine."""
    return _quiet_app(secure_settings, sqlite_engine)


def _operations(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        try:
            operations.append(result.ok())
        except AttributeError:
            pytest.fail(f"the app's OpenAPI schema has an invalid operation: {result.err()}")
    return operations


def _runner(operation, mode, headers: dict[str, str], examples: int):
    @settings(FUZZ, max_examples=examples)
    @given(case=operation.as_strategy(mode))
    def run(case):
        if headers and case.headers:
            # schemathesis fills the declared auth schemes with junk; with real credentials drop it
            # (a junk X-Device-Token would make every request a 401). Anonymous runs keep the junk.
            case.headers = {k: v for k, v in case.headers.items() if k.lower() not in AUTH_HEADERS}
        response = case.call(headers=headers)
        where = (
            f"{operation.method.upper()} {operation.path} [{mode.value}] -> {response.status_code}: "
            f"path={case.path_parameters!r} query={case.query!r} body={str(case.body)[:300]!r} "
            f"response={response.text[:300]!r}"
        )
        assert response.status_code < 500, where
        try:
            case.validate_response(response, checks=RESPONSE_CHECKS, headers=headers)
        except BaseException as exc:  # schemathesis reports its failures as an exception group
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise AssertionError(f"{where}: {' | '.join(str(exc).splitlines()[:8])}") from None
        if not headers and operation.path not in PUBLIC and "twilio" not in operation.path:
            assert not 200 <= response.status_code < 300, f"anonymous 2xx on {operation.path}"

    return run


def _fuzz(app, headers: dict[str, str], modes, examples: int) -> list[str]:
    """Run every operation; return one line per operation and mode that answered 5xx (or raised)."""
    operations = _operations(app)
    assert operations, "the schema has no operation"
    failures: list[str] = []
    for operation in operations:
        for mode in modes:
            try:
                _runner(operation, mode, headers, examples)()
            except Unsatisfiable:  # nothing to violate (e.g. no parameters): no negative case exists
                continue
            except Exception as exc:  # collect every failing operation, then fail once
                failures.append(f"{type(exc).__name__}: {exc}"[:1500])
    return failures


def test_no_5xx_without_credentials(anonymous_app):
    # the auth layer answers before any parameter is used: a few valid-looking requests suffice
    failures = _fuzz(anonymous_app, {}, (GenerationMode.POSITIVE,), examples=ANONYMOUS_EXAMPLES)
    assert not failures, "\n".join(failures)


def test_no_5xx_with_credentials(fuzz_app):
    headers = make_key_headers(fuzz_app.state.runtime.engine, "admin", "ingest", name="fuzz")
    modes = MODES[fuzz_app.state.runtime.engine.dialect.name]
    failures = _fuzz(fuzz_app, headers, modes, EXAMPLES_PER_OPERATION)
    assert not failures, "\n".join(failures)
