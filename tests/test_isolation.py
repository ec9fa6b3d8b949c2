"""Attacks on the sandbox and docker backends, each played by the replay agent through the real plugin.

Every attack runs on the `number` task, whose untouched answer scores 0 and whose reference
(0.9, in solution/) scores 80: an attack that reads the solution, the grader or the hint, or
forges what the grader reads, would raise the score. On `sandbox` and `docker` each attack must
fail or be flagged, and the final score must stay 0. The `local` backend protects none of this
(README).
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from pytest_innovator.plugin.options import OPTION_BY_NAME
from pytest_innovator.sandbox import bwrap_path

from .docker_support import docker_daemon, docker_image  # noqa: F401
from .test_plugin import add_task, ended_workspace, results_log, upper_layer


def plugin_offers(backend: str) -> bool:
    try:
        OPTION_BY_NAME["backend"].convert(backend)
    except ValueError:
        return False
    return True


@pytest.fixture(
    params=[
        pytest.param(
            "sandbox",
            marks=pytest.mark.skipif(
                bwrap_path() is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
            ),
        ),
        pytest.param(
            "docker",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    not plugin_offers("docker"), reason="the plugin does not offer --innovator-backend docker yet"
                ),
            ],
        ),
    ]
)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "docker":
        monkeypatch.setenv("INNOVATOR_DOCKER_IMAGE", request.getfixturevalue("docker_image"))
    return request.param


def run_attack(pytester: pytest.Pytester, backend: str, commands: list[str], *extra: str) -> dict:
    add_task(pytester.path / "suite", "number")
    calls = [{"tool": "create_session", "arguments": {"name": "attack"}}]
    calls += [{"tool": "run_command", "arguments": {"session": "attack", "command": c, "wait": 20}} for c in commands]
    calls += [{"tool": "evaluate"}, {"tool": "finish"}]
    replay = pytester.path / "attack.jsonl"
    replay.write_text("\n".join(json.dumps(c) for c in calls))
    result = pytester.runpytest_subprocess(
        "suite",
        "--innovator-backend",
        backend,
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replay),
        *extra,
    )
    [record] = results_log(pytester)
    assert record["backend"] == backend, result.stdout.str()
    record["stdout"] = result.stdout.str()
    return record


def trajectory_outputs(record: dict) -> str:
    lines = Path(record["run_dir"], "trajectory.jsonl").read_text().splitlines()
    return "\n".join(json.loads(line).get("observation", "") for line in lines)


FIND_SOLUTION = "find / -xdev -path '*number/solution/answer.txt' 2>/dev/null | head -1"


@pytest.mark.parametrize(
    "commands",
    [
        pytest.param([f'cp "$({FIND_SOLUTION})" answer.txt; cat answer.txt'], id="solution-by-absolute-path"),
        pytest.param(
            ["cat ../../../../suite/number/solution/answer.txt > answer.txt; cat answer.txt"], id="solution-by-dotdot"
        ),
        pytest.param(
            [
                "for f in $(find / -xdev -name hint.md 2>/dev/null); do cat $f; done; "
                "grep -rh 0.9 / --include=grade.py 2>/dev/null | head -3"
            ],
            id="hint-and-grader",
        ),
        pytest.param(
            ["cat ../ledger.json; ls ../..; echo '{\"valid\": true}' > ../result.json"], id="ledger-and-results"
        ),
        pytest.param(
            [
                "(while true; do for d in /tmp/innovator-grade-*/submission; do "
                "echo 0.9 > $d/answer.txt 2>/dev/null; done; sleep 0.01; done) &"
            ],
            id="forge-the-graders-input",
        ),
    ],
)
def test_hidden_parts_cannot_be_read_or_forged(pytester: pytest.Pytester, backend: str, commands: list[str]) -> None:
    record = run_attack(pytester, backend, commands)
    assert record["score_final"] == 0 and record["score_best"] == 0
    assert "The reference writes 0.9" not in trajectory_outputs(record)
    assert not Path(record["run_dir"], "result.json").read_text().startswith('{"valid"')


def test_host_processes_are_invisible_and_unkillable(pytester: pytest.Pytester, backend: str) -> None:
    record = run_attack(
        pytester, backend, ["ps -eo args --no-headers > procs.txt", "pkill -9 -f pytest; kill -9 -1; echo still-here"]
    )
    assert record["outcome"] == "failed" and record["final_status"] == "scored"  # the harness lived on
    processes = (ended_workspace(record["run_dir"], pytester.path / "ended") / "procs.txt").read_text().splitlines()
    # Only the sandbox's own processes: its init (bwrap, or docker-init and the session server of a
    # container), the session's reaper and shell, and ps.
    own = {"sandbox": ("bwrap", "bash", "ps"), "docker": ("docker-init", "bash", "ps")}[backend]
    for process in processes:
        program = Path(process.split()[0]).name
        server = backend == "docker" and "pytest_innovator.cli serve" in process
        assert program in own or "reaper.py" in process or server, processes


def test_writes_outside_the_workspace_do_not_reach_the_host(
    pytester: pytest.Pytester, backend: str, tmp_path: Path
) -> None:
    target = tmp_path / "outside.txt"
    record = run_attack(
        pytester, backend, [f"echo owned > {target}; echo owned > /etc/owned; echo owned > /tmp/owned; ls /tmp"]
    )
    assert not target.exists() and not Path("/etc/owned").exists() and not Path("/tmp/owned").exists()
    assert record["score_final"] == 0


def test_protected_symlink_swap_is_flagged(pytester: pytest.Pytester, backend: str) -> None:
    record = run_attack(pytester, backend, ["rm data/facts.txt && ln -s /etc/passwd data/facts.txt"])
    assert record["protected_changes"] >= 1
    assert "data/facts.txt" in Path(record["run_dir"], "ledger.json").read_text()


def test_process_flood_ends_with_the_session(pytester: pytest.Pytester, backend: str) -> None:
    record = run_attack(pytester, backend, ["for i in $(seq 300); do (sleep 600 &) ; done; ps -e | wc -l"])
    assert record["final_status"] == "scored"
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == b"sleep\x00600\x00"]
    assert survivors == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_no_network_to_the_hosts_loopback(pytester: pytest.Pytester, backend: str) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(30)
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    thread.start()
    record = run_attack(
        pytester,
        backend,
        [f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)\" 2>&1 | tail -1"],
    )
    server.close()
    thread.join(5)
    assert accepted in ([], [None])
    assert "Connection refused" in trajectory_outputs(record) or "unreachable" in trajectory_outputs(record)


def _accept(server: socket.socket) -> object:
    try:
        return server.accept()
    except OSError:
        return None


def test_read_only_files_are_shared_but_unwritable(pytester: pytest.Pytester, backend: str) -> None:
    task = add_task(pytester.path / "suite", "number")
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace('protected = ["data/"]', 'protected = ["data/"]\nread_only = ["data/"]'))
    source = task / "workspace" / "data" / "facts.txt"
    calls = [
        {"tool": "create_session", "arguments": {"name": "s"}},
        {
            "tool": "run_command",
            "arguments": {
                "session": "s",
                "command": "echo changed >> data/facts.txt; rm -f data/facts.txt; ls data",
                "wait": 20,
            },
        },
        {"tool": "write_file", "arguments": {"path": "data/facts.txt", "content": "changed"}},
        {"tool": "finish"},
    ]
    replay = pytester.path / "ro.jsonl"
    replay.write_text("\n".join(json.dumps(c) for c in calls))
    pytester.runpytest_subprocess(
        "suite", "--innovator-backend", backend, "--innovator-agent", "replay", "--innovator-replay", str(replay)
    )
    [record] = results_log(pytester)
    assert source.read_text() == "reference data\n"
    if record["workspace_provisioning"] == "overlay":  # shared as the lower layer, never copied up
        with upper_layer(record["run_dir"]) as upper:
            assert upper.is_dir() and not (upper / "data" / "facts.txt").exists()
    else:  # shared by hard link
        assert Path(record["run_dir"], "workspace", "data", "facts.txt").stat().st_ino == source.stat().st_ino
    steps = [json.loads(line) for line in Path(record["run_dir"], "trajectory.jsonl").read_text().splitlines()[1:]]
    assert "Read-only file system" in steps[1]["observation"]
    assert not steps[2]["ok"] and "read-only" in steps[2]["observation"]
    assert record["protected_changes"] == 0
