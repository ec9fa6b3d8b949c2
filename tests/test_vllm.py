"""The vllm_server fixture and the shared-server machinery behind it.

vLLM cannot run in the test environment, so `fake_vllm_server.py` (a stdlib HTTP server that
takes vLLM's arguments and answers /v1/models) stands in for its command; the last test starts
the real vLLM where it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_innovator.gpus import GpuLeaser
from pytest_innovator.llm.embedded import default_cache_dir
from pytest_innovator.llm.server_process import (
    ServerProcess,
    ServerSpec,
    ServerStartError,
    SharedServer,
    free_loopback_port,
    process_alive,
    served_models,
)
from pytest_innovator.plugin.llm_servers import (
    NotEnoughGpus,
    ServerSetupError,
    vllm_gpu_count,
    vllm_server_spec,
)

FAKE_VLLM = Path(__file__).with_name("fake_vllm_server.py")
FAKE_VLLM_COMMAND = shlex.join([sys.executable, str(FAKE_VLLM)])

# Caches of the real HOME, read before pytester points HOME at a temporary directory.
EMBEDDED_MODEL_CACHE = default_cache_dir()
VLLM_CACHE_ROOT = Path.home() / ".cache" / "vllm"

CONFTEST = """
from pytest_innovator.plugin.llm_servers import embedded_llm_server, vllm_server  # noqa: F401
"""


def test_gpu_count_is_tensor_times_pipeline_parallel_size() -> None:
    assert vllm_gpu_count([], host_gpus=4) == 1
    assert vllm_gpu_count(["--tensor-parallel-size", "2", "-pp=2"], host_gpus=4) == 4
    assert vllm_gpu_count(["-tp", "2"], host_gpus=0) == 0
    with pytest.raises(ServerSetupError, match="needs a whole number"):
        vllm_gpu_count(["--tensor-parallel-size", "two"], host_gpus=2)


def test_spec_refuses_arguments_the_fixture_sets(tmp_path: Path) -> None:
    with pytest.raises(ServerSetupError, match="remove --port"):
        vllm_server_spec("m", "--port=9000", "", (), tmp_path)
    with pytest.raises(NotEnoughGpus, match="needs 4 GPUs.*this host has 2"):
        vllm_server_spec("m", "-tp 4", "", ("0", "1"), tmp_path)


def test_spec_holds_the_gpus_through_the_launcher(tmp_path: Path) -> None:
    on_gpus = vllm_server_spec("org/model", "-tp 2 --dtype half", "", ("0", "1", "2"), tmp_path)
    assert on_gpus.command[1:4] == ("-m", "pytest_innovator.llm.server_process", "hold-gpus")
    assert on_gpus.command[on_gpus.command.index("--count") + 1] == "2"
    on_cpu = vllm_server_spec("org/model", "--dtype half", "", (), tmp_path)
    assert on_cpu.command[1:] == (
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "org/model",
        "--host",
        "127.0.0.1",
        "--dtype",
        "half",
    )
    assert on_cpu.key != vllm_server_spec("org/other", "--dtype half", "", (), tmp_path).key


def _fake_command(*arguments: str) -> list[str]:
    return [sys.executable, str(FAKE_VLLM), "--model", "tiny", "--host", "127.0.0.1", *arguments]


def test_a_server_that_never_answers_is_stopped_and_the_error_shows_its_log(tmp_path: Path) -> None:
    port = free_loopback_port()
    server = ServerProcess.launch(
        _fake_command("--never-ready", "--port", str(port)), f"http://127.0.0.1:{port}/v1", tmp_path / "server.log"
    )
    with pytest.raises(ServerStartError) as failure:
        server.wait_ready(timeout_s=1.5, what="the fake vLLM")
    message = str(failure.value)
    assert "did not answer" in message and "within 1.5 s" in message
    assert "compiling kernels, this takes forever" in message  # the log tail
    assert not process_alive(server.pid)


def test_a_server_that_exits_reports_its_exit_code_and_log(tmp_path: Path) -> None:
    port = free_loopback_port()
    server = ServerProcess.launch(
        _fake_command("--exit-code", "3", "--port", str(port)), f"http://127.0.0.1:{port}/v1", tmp_path / "server.log"
    )
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*out of memory while loading"):
        server.wait_ready(timeout_s=60, what="the fake vLLM")


def test_shared_server_replaces_a_dead_server_and_the_last_user_stops_it(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    spec = ServerSpec(
        key="fake", command=tuple(_fake_command("--spawn-child", str(child_pid_file))), start_timeout_s=60
    )
    shared = SharedServer(tmp_path / "state", spec)
    shared.state_dir.mkdir()
    dead_worker = _dead_pid()
    shared.state_path.write_text(
        json.dumps(
            {
                "base_url": "http://127.0.0.1:9/v1",
                "model": "x",
                "pid": dead_worker,
                "users": [dead_worker],
                "log": "",
                "command": [],
            }
        )
    )
    endpoint = shared.acquire()
    assert endpoint.model == "tiny"
    assert served_models(endpoint.base_url) == ["tiny"]
    state = json.loads(shared.state_path.read_text())
    assert state["users"] == [os.getpid()] and state["pid"] != dead_worker
    child_pid = int(child_pid_file.read_text())
    assert process_alive(child_pid)
    shared.release()
    assert not shared.state_path.exists()
    assert not process_alive(state["pid"])
    assert not process_alive(child_pid)  # the server's whole process group is stopped


def test_a_server_whose_users_were_all_killed_stops(tmp_path: Path) -> None:
    import subprocess
    import time

    user = textwrap.dedent(f"""
        import json, time
        from pathlib import Path
        from pytest_innovator.llm.server_process import ServerSpec, SharedServer
        spec = ServerSpec(key="orphan", command={tuple(_fake_command())!r})
        shared = SharedServer(Path({str(tmp_path / "state")!r}), spec)
        shared.acquire()
        print(json.loads(shared.state_path.read_text())["pid"], flush=True)
        time.sleep(600)
    """)
    worker = subprocess.Popen([sys.executable, "-c", user], stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    server_pid = int(worker.stdout.readline())
    assert process_alive(server_pid)
    worker.kill()  # as Ctrl-C or kill -9 ends an xdist worker: it never releases the server
    worker.wait()
    deadline = time.monotonic() + 60  # the watcher looks every 2 s; this only bounds a hang
    while process_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(server_pid)
    assert not (tmp_path / "state" / "orphan.json").exists()


def test_shared_server_start_timeout_leaves_no_state(tmp_path: Path) -> None:
    spec = ServerSpec(
        key="stuck", command=tuple(_fake_command("--never-ready")), start_timeout_s=1.0, description="the fake vLLM"
    )
    shared = SharedServer(tmp_path, spec)
    with pytest.raises(ServerStartError, match="(?s)the fake vLLM did not answer.*takes forever"):
        shared.acquire()
    assert not shared.state_path.exists()


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_xdist_workers_share_one_server(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uses = tmp_path / "uses.jsonl"
    starts = tmp_path / "starts.jsonl"
    monkeypatch.setenv("FAKE_VLLM_USES", str(uses))
    pytester.makeconftest(CONFTEST)
    # Every test waits until both workers hold the server, so neither can stop it early.
    pytester.makepyfile(
        test_share=textwrap.dedent("""
        import json, os, time, urllib.request

        def use(vllm_server):
            models = json.load(urllib.request.urlopen(vllm_server.base_url + "/models", timeout=10))
            record = {"worker": os.environ["PYTEST_XDIST_WORKER"], "url": vllm_server.base_url,
                      "model": vllm_server.model, "listed": models["data"][0]["id"]}
            with open(os.environ["FAKE_VLLM_USES"], "a") as uses:
                uses.write(json.dumps(record) + "\\n")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with open(os.environ["FAKE_VLLM_USES"]) as uses:
                    if len({json.loads(line)["worker"] for line in uses}) == 2:
                        return
                time.sleep(0.1)
            raise AssertionError("the other worker never got the server")

        def test_a(vllm_server): use(vllm_server)
        def test_b(vllm_server): use(vllm_server)
        def test_c(vllm_server): use(vllm_server)
        def test_d(vllm_server): use(vllm_server)
    """)
    )
    state_dir = tmp_path / "locks" / "llm-servers"
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
        "--innovator-vllm-model",
        "tiny-model",
        "--innovator-vllm-command",
        FAKE_VLLM_COMMAND,
        "--innovator-vllm-args",
        f"--record {starts} --startup-delay 1 --served-model-name tiny",
        "--innovator-gpus",
        "",
        "--innovator-gpu-lock-dir",
        str(tmp_path / "locks"),
    )
    result.assert_outcomes(passed=4)
    records = [json.loads(line) for line in uses.read_text().splitlines()]
    assert {record["worker"] for record in records} == {"gw0", "gw1"}
    assert len({record["url"] for record in records}) == 1
    assert {record["model"] for record in records} == {"tiny"} == {record["listed"] for record in records}
    started = [json.loads(line) for line in starts.read_text().splitlines()]
    assert len(started) == 1
    assert "--model" in started[0]["argv"] and "tiny-model" in started[0]["argv"]
    assert not process_alive(started[0]["pid"])
    assert not list(state_dir.glob("*.json"))


def test_server_holds_its_gpu_lease_while_it_runs(pytester: pytest.Pytester, tmp_path: Path) -> None:
    starts = tmp_path / "starts.jsonl"
    lock_dir = tmp_path / "locks"
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_gpus=textwrap.dedent(f"""
        import pytest
        from pytest_innovator.gpus import GpuLeaser

        def test_gpus_are_taken(vllm_server):
            with pytest.raises(TimeoutError, match="vLLM server for tiny-model"):
                GpuLeaser({str(lock_dir)!r}, ["0", "1", "2"]).acquire(2, owner="probe", timeout=0.3)
    """)
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--innovator-vllm-model",
        "tiny-model",
        "--innovator-vllm-command",
        FAKE_VLLM_COMMAND,
        "--innovator-vllm-args",
        f"--tensor-parallel-size 2 --record {starts}",
        "--innovator-gpus",
        "0,1,2",
        "--innovator-gpu-lock-dir",
        str(lock_dir),
    )
    result.assert_outcomes(passed=1)
    started = json.loads(starts.read_text())
    assert started["cuda_visible_devices"] == "0,1"
    events = [json.loads(line) for line in (lock_dir / "leases.jsonl").read_text().splitlines()]
    assert [event["event"] for event in events] == ["acquire", "release"]
    assert events[0]["devices"] == ["0", "1"]
    GpuLeaser(lock_dir, ["0", "1", "2"]).acquire(3, owner="after", timeout=5)


def test_the_react_agent_talks_to_the_named_vllm_model(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from .test_plugin import add_task, results_log

    add_task(pytester.path / "suite", "number")
    script, requests = tmp_path / "script.jsonl", tmp_path / "requests.jsonl"
    script.write_text(json.dumps({"tool": "write_file", "arguments": {"path": "answer.txt", "content": "0.9"}}))
    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "-p", "no:cacheprovider", "--innovator-agent", "react",
        "--innovator-vllm-model", "org/model-7b", "--innovator-vllm-command", FAKE_VLLM_COMMAND,
        "--innovator-vllm-args", f"--script {script} --requests {requests}",
        "--innovator-gpus", "", "--innovator-gpu-lock-dir", str(tmp_path / "locks"),
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    [record] = results_log(pytester)
    assert record["model"] == "org/model-7b" and record["score_final"] == pytest.approx(80)
    asked = [json.loads(line) for line in requests.read_text().splitlines()]
    assert asked and {request["model"] for request in asked} == {"org/model-7b"}
    assert any("write_file" in request["tools"] for request in asked)  # native tool calls
    lines = Path(record["run_dir"], "trajectory.jsonl").read_text().splitlines()
    assert {json.loads(line)["model"] for line in lines if json.loads(line).get("event") == "llm_call"} == {
        "org/model-7b"
    }


def test_a_vllm_model_and_another_endpoint_are_refused_together(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from .test_plugin import add_task

    add_task(pytester.path / "suite", "number")
    result = pytester.runpytest_subprocess(
        "suite", "-p", "no:cacheprovider", "--innovator-agent", "react", "--innovator-vllm-model", "org/model-7b",
        "--innovator-base-url", "http://127.0.0.1:9/v1",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["*--innovator-vllm-model starts a vLLM server for the agent*give one of them*"])
    assert result.ret != 0


def test_fixture_skips_without_a_model(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INNOVATOR_VLLM_MODEL", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_one="def test_one(vllm_server):\n    pass\n")
    skipped = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rs", "--innovator-gpus", "", "--innovator-gpu-lock-dir", str(tmp_path)
    )
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*no vLLM model configured: pass --innovator-vllm-model*"])


def test_fixture_errors_with_the_log_tail_when_the_server_dies(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_one="def test_one(vllm_server):\n    pass\n")
    failed = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--innovator-gpus",
        "",
        "--innovator-gpu-lock-dir",
        str(tmp_path),
        "--innovator-vllm-model",
        "tiny",
        "--innovator-vllm-command",
        FAKE_VLLM_COMMAND,
        "--innovator-vllm-args",
        "--exit-code 7",
    )
    failed.assert_outcomes(errors=1)
    failed.stdout.fnmatch_lines(
        ["*the vLLM server for tiny exited with code 7*", "*out of memory while loading the weights*"]
    )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None and not os.environ.get("INNOVATOR_VLLM_COMMAND"),
    reason="vLLM is not installed in this python and INNOVATOR_VLLM_COMMAND is not set "
    "(docs/llm-servers.md; scripts/start-vllm-cpu.sh)",
)
def test_real_vllm_serves_chat_completions(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_innovator.llm.embedded import (
        EmbeddedModelError,
        default_model_file,
        prepare_model_dir,
    )

    model = os.environ.get("INNOVATOR_VLLM_MODEL")
    if not model:
        try:
            model = str(prepare_model_dir(default_model_file(), EMBEDDED_MODEL_CACHE))
        except EmbeddedModelError as exc:
            pytest.skip(f"no model for vLLM: set INNOVATOR_VLLM_MODEL or install the embedded one ({exc})")
    if "VLLM_CACHE_ROOT" not in os.environ:  # reuse compiled kernels from earlier runs
        monkeypatch.setenv("VLLM_CACHE_ROOT", str(VLLM_CACHE_ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_chat=textwrap.dedent("""
        import openai

        def test_chat(vllm_server):
            client = openai.OpenAI(base_url=vllm_server.base_url, api_key="none", max_retries=0)
            reply = client.chat.completions.create(
                model=vllm_server.model, max_tokens=8, temperature=0,
                messages=[{"role": "user", "content": "Say hello."}])
            assert reply.choices[0].message.content
            assert reply.usage.completion_tokens > 0
    """)
    )
    from .test_plugin import add_task, results_log

    add_task(pytester.path / "suite", "number")  # and the react agent on a task, against the same server
    arguments = "--max-model-len 2048 --enable-auto-tool-choice --tool-call-parser hermes"
    result = pytester.runpytest_subprocess(
        "test_chat.py", "suite", "-p", "no:cacheprovider", "--innovator-agent", "react", "--innovator-max-steps", "3",
        "--innovator-vllm-model", model, "--innovator-vllm-args", os.environ.get("INNOVATOR_VLLM_ARGS", arguments),
        "--innovator-gpu-lock-dir", str(tmp_path),
        timeout=1800,
    )  # fmt: skip
    assert result.parseoutcomes().get("passed", 0) >= 1  # the chat test; the item may fail on its score
    [record] = results_log(pytester)
    assert record["model"] == model and record["llm_calls"] > 0
    assert record["tool_protocol"] in ("native", "json_schema")  # the server constrains: no text protocol
