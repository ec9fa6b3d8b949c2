"""Fuzzing the session server's OpenAPI schema with schemathesis: no 5xx, no hang.

A live server on 127.0.0.1 (serving a directory as `main` and creating workspaces under --root)
gets schema-conforming and schema-violating requests for every operation, a bounded number each,
with a per-request timeout. Path parameters mostly name the served workspace and an open session,
so the requests reach the handlers rather than stopping at "no such workspace"; waits are capped
at a second so the run stays short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .session_server import start_server, stop_server

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (it is in the test extra)")
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")

EXAMPLES_PER_OPERATION = 10
REQUEST_TIMEOUT_S = 20.0
LONGEST_WAIT_S = 1.0


def aim(case: Any, data: st.DataObject, http: requests.Session, url: str) -> None:
    """Point most cases at things that exist (the session `fuzz` is made again when a case closed
    it or ended its shell), and keep waits short."""
    if "name" in case.path_parameters:
        sessions = http.get(f"{url}/v1/workspaces/main/sessions").json()
        if not any(s["name"] == "fuzz" and s["alive"] for s in sessions):
            http.delete(f"{url}/v1/workspaces/main/sessions/fuzz")
            http.post(f"{url}/v1/workspaces/main/sessions", json={"name": "fuzz"})
    if "workspace_id" in case.path_parameters:
        named = case.path_parameters["workspace_id"]
        case.path_parameters["workspace_id"] = data.draw(st.sampled_from(["main", "main", named]))
    if "name" in case.path_parameters:
        case.path_parameters["name"] = data.draw(st.sampled_from(["fuzz", "fuzz", case.path_parameters["name"]]))
    if isinstance(case.body, dict):
        for key in ("wait", "timeout"):
            value = case.body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > LONGEST_WAIT_S:
                case.body[key] = LONGEST_WAIT_S


@pytest.mark.slow
def test_no_server_error_and_no_hang(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "notes.txt").write_text("some text\n")
    server = start_server(tmp_path / "server", "--workspace", str(served))
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {server.token}"
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json", headers=dict(http.headers))
        failures: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 25
        for operation in operations:
            for mode in schemathesis.GenerationMode:

                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                    print_blob=False,
                )
                @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
                def call(case: Any, data: st.DataObject) -> None:
                    aim(case, data, http, server.url)
                    try:
                        response = case.call(base_url=server.url, session=http, timeout=REQUEST_TIMEOUT_S)
                    except requests.Timeout:
                        failures.append(
                            f"{case.method} {case.formatted_path}: no answer within "
                            f"{REQUEST_TIMEOUT_S:g} s ({case.as_curl_command()})"
                        )
                        return
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path}: {response.status_code} "
                            f"{response.text[:300]} ({case.as_curl_command()})"
                        )

                call()
        assert failures == []
        assert http.get(f"{server.url}/v1/health").status_code == 200
    finally:
        stop_server(server)
    assert "Traceback" not in server.log_path.read_text()
