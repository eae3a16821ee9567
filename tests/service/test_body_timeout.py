"""A request body that never completes gets 408 and its connection closed, on a real server."""

from __future__ import annotations

import socket
import time

import pytest

from tests.service.api_processes import api_processes


def _stalled_chunked_request(url: str, path: str) -> tuple[bytes, float]:
    """Send headers and one chunk of a chunked body, then nothing; the answer and how long it took."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        started = time.monotonic()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"fix\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            answer += chunk
        return answer, time.monotonic() - started


@pytest.mark.parametrize("path", ["/v1/locations", "/v1/zones"])
def test_a_body_that_never_completes_gets_408_and_the_connection_is_closed(sqlite_engine, tmp_path, path):
    env = {"GEOFENCE_DATABASE_URL": str(sqlite_engine.url), "GEOFENCE_AUTH_REQUIRED": "false",
           "GEOFENCE_INGEST__BODY_TIMEOUT_S": "1", "GEOFENCE_LOG__LEVEL": "WARNING"}  # fmt: skip
    with api_processes(1, env, tmp_path) as (url,):
        answer, elapsed_s = _stalled_chunked_request(url, path)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"not received within 1 s" in answer
    assert elapsed_s < 10  # answered at the bound, and the server closed the connection
