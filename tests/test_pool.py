"""A pool of GPU hosts (`--innovator-hosts hosts.toml`) from the command line: real session servers on
127.0.0.1, each leasing the GPUs it is started with, and items that lease them and run there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pytest_innovator.hosts.pool import PoolError, load_pool

from .session_server import ServerProcess, start_server, stop_server
from .test_innovatorbench import make_dataset, suite  # noqa: F401 (suite: a fixture)
from .test_innovatorbench_runs import FINISH, NO_API, answer, observations
from .test_plugin import add_task, results_log
from .test_resume import evaluations, processes_with, pytest_command, replay_file, resume_run, the_run, wait_for

pytest_plugins = ["pytester"]


def write_hosts(path: Path, servers: dict[str, ServerProcess]) -> Path:
    entries = [
        f'[[hosts]]\nname = "{name}"\nurl = "{server.url}"\ntoken_file = "{server.root.parent / "token"}"\n'
        for name, server in servers.items()
    ]
    path.write_text("\n".join(entries))
    return path


@pytest.fixture
def start_pool(pytester: pytest.Pytester) -> Iterator[Callable[[dict[str, int]], dict[str, ServerProcess]]]:
    """Starts a session server per host with that many GPUs, and hosts.toml naming them."""
    for variable in [v for v in os.environ if v.startswith("INNOVATOR_")]:
        os.environ.pop(variable)  # restored by pytester's environment snapshot
    servers: dict[str, ServerProcess] = {}

    def start(sizes: dict[str, int]) -> dict[str, ServerProcess]:
        for name, gpus in sizes.items():
            directory = pytester.path / "servers" / name
            (directory / "tmp").mkdir(parents=True)  # its graders' scratch directories: where they ran
            env = {**os.environ, "TMPDIR": str(directory / "tmp")}
            servers[name] = start_server(directory, "--gpus", ",".join(map(str, range(gpus))), env=env)
        write_hosts(pytester.path / "hosts.toml", servers)
        return servers

    try:
        yield start
    finally:
        for server in servers.values():
            if server.process.poll() is None:
                stop_server(server)


@pytest.fixture
def pool(start_pool: Callable[[dict[str, int]], dict[str, ServerProcess]]) -> dict[str, ServerProcess]:
    return start_pool({"a": 4, "b": 2, "c": 1})


def replay(pytester: pytest.Pytester, name: str, command: str) -> Path:
    """A replay agent that runs `command` in a session, then finishes."""
    path = pytester.path / f"{name}.jsonl"
    calls = [
        {"tool": "create_session", "arguments": {"name": "s"}},
        {"tool": "run_command", "arguments": {"session": "s", "command": command, "wait": 120}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    path.write_text("".join(json.dumps(call) + "\n" for call in calls))
    return path


def sleeper(pytester: pytest.Pytester, name: str, seconds: float) -> Path:
    return replay(pytester, name, f"sleep {seconds}; echo 0.9 > answer.txt")


def leases(pytester: pytest.Pytester) -> dict[str, dict]:
    (run,) = (pytester.path / ".innovator" / "runs").iterdir()
    return {
        item.name: json.loads((item / "gpu_lease.json").read_text())
        for item in run.iterdir()
        if (item / "gpu_lease.json").exists()
    }


def server_events(server: ServerProcess) -> list[dict]:
    path = server.root / "leases.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


ITEMS = {"one_1": 1, "one_2": 1, "two_1": 2, "two_2": 2, "four": 4, "none": 0}


def test_items_lease_gpus_on_pool_hosts_that_hold_them_and_never_share_one(
    pytester: pytest.Pytester, pool: dict[str, ServerProcess]
) -> None:
    """Under -n 3 on hosts a (4 GPUs), b (2) and c (1): items of 0 to 4 GPUs, a 1-GPU item on two
    hosts, one no host holds, and one whose workspace sits at a fixed path (made there by the host)."""
    for name, gpus in {**ITEMS, "eight": 8, "fixed": 0}.items():
        add_task(pytester.path / "suite", name, gpus=gpus)
    pair = add_task(pytester.path / "suite", "pair", gpus=1) / "task.toml"
    pair.write_text(pair.read_text().replace("gpus = 1\n", "gpus = 1\nhosts = 2\n"))
    fixed = pytester.path / "suite" / "fixed" / "task.toml"
    fixed.write_text(fixed.read_text().replace('id = "fixed"', 'id = "fixed"\nworkspace_path = "/workspace"'))
    agent = sleeper(pytester, "sleepy", 2)
    result = pytester.runpytest_subprocess(
        "suite", "-rs", "-n", "3", "--innovator-hosts", "hosts.toml", "--innovator-agent", "replay",
        "--innovator-replay", str(agent),
    )  # fmt: skip
    result.assert_outcomes(passed=len(ITEMS) + 2, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*task eight needs 8 GPUs on one host; the pool's hosts have a: 4, b: 2, c: 1"])
    (run,) = (pytester.path / ".innovator" / "runs").iterdir()
    assert "created session 's' in /workspace" in (run / "fixed" / "trajectory.jsonl").read_text()
    records = leases(pytester)
    assert set(records) == {*ITEMS, "pair", "fixed"}
    sizes = {"a": 4, "b": 2, "c": 1}
    for item, record in records.items():
        for where in [record, *record.get("more_hosts", [])]:
            assert len(where["devices"]) == {**ITEMS, "pair": 1, "fixed": 0}[item], (item, record)
            assert set(where["devices"]) <= {str(i) for i in range(sizes[where["host"]])}, (item, record)
            assert where["url"] == pool[where["host"]].url
    assert records["four"]["host"] == "a"
    assert len({records["pair"]["host"], *(h["host"] for h in records["pair"]["more_hosts"])}) == 2
    # The servers' own records (written under their lease table's lock): every lease granted was
    # released by its holder, none expired, and no GPU of a host was held by two leases at once.
    recorded = {r["lease"] for r in records.values()} | {
        h["lease"] for r in records.values() for h in r.get("more_hosts", [])
    }
    held, granted_anywhere = [], set()
    for host, server in pool.items():
        events = server_events(server)
        granted = {e["id"]: e for e in events if e["event"] == "granted"}
        released = {e["id"]: e for e in events if e["event"] == "released"}
        assert set(granted) == set(released), host
        granted_anywhere |= set(granted)
        held += [(host, d, e["at"], released[i]["at"]) for i, e in granted.items() for d in e["devices"]]
    assert recorded <= granted_anywhere  # (an item asking for two hosts may give one back and ask again)
    for i, (host, device, start, end) in enumerate(held):
        for other_host, other_device, other_start, other_end in held[i + 1 :]:
            if (host, device) == (other_host, other_device):
                assert end <= other_start or other_end <= start, (host, device)


def test_a_command_sees_only_its_leased_gpus_and_the_grader_runs_on_that_host(
    pytester: pytest.Pytester, pool: dict[str, ServerProcess]
) -> None:
    toml = add_task(pytester.path / "suite", "two", gpus=2) / "task.toml"
    toml.write_text(toml.read_text().replace('command = "python3 grade.py"', 'command = "pwd >&2; python3 grade.py"'))
    path = replay(pytester, "env", "echo CUDA=$CUDA_VISIBLE_DEVICES; echo 0.9 > answer.txt")
    result = pytester.runpytest_subprocess(
        "suite", "--innovator-hosts", "hosts.toml", "--innovator-agent", "replay", "--innovator-replay", str(path)
    )
    result.assert_outcomes(passed=1)
    (record,) = leases(pytester).values()
    (run,) = (pytester.path / ".innovator" / "runs").iterdir()
    assert f"CUDA={','.join(record['devices'])}" in (run / "two" / "trajectory.jsonl").read_text()
    # The grader's scratch directory was in that host's server's temporary directory.
    (log,) = (run / "two" / "grader").glob("eval-*.log")
    assert str(pytester.path / "servers" / record["host"] / "tmp" / "innovator-grade-two-") in log.read_text()


def test_a_host_killed_mid_run_fails_only_its_item_and_the_rest_run(
    pytester: pytest.Pytester, start_pool: Callable[[dict[str, int]], dict[str, ServerProcess]]
) -> None:
    """`doomed` needs 4 GPUs (only host a has them); host a's server is killed once it holds them."""
    pool = start_pool({"a": 4, "b": 2})
    add_task(pytester.path / "suite", "doomed", gpus=4)
    for name in ("small_1", "small_2", "small_3"):
        add_task(pytester.path / "suite", name, gpus=2)
    agents = pytester.path / "agents"
    agents.mkdir()
    sleeper(pytester, "long", 120).rename(agents / "doomed.jsonl")
    for name in ("small_1", "small_2", "small_3"):
        sleeper(pytester, "short", 2).rename(agents / f"{name}.jsonl")

    def kill_a_once_doomed_holds_it() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any(e["event"] == "granted" and "doomed" in e["holder"] for e in server_events(pool["a"])):
                time.sleep(3)  # its workspace and command start
                pool["a"].process.send_signal(signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_once_doomed_holds_it)
    killer.start()
    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "--innovator-hosts", "hosts.toml", "--innovator-agent", "replay",
        "--innovator-replay", str(agents),
    )  # fmt: skip
    killer.join()
    assert pool["a"].process.poll() is not None
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*doomed*host a stopped answering*"])
    outcomes = {line["innovator_task"]: line for line in results_log(pytester)}
    assert {name: line["end_reason"] for name, line in outcomes.items()} == {
        "doomed": "host_lost",
        "small_1": "finished",
        "small_2": "finished",
        "small_3": "finished",
    }
    (run,) = (pytester.path / ".innovator" / "runs").iterdir()
    assert "host a stopped answering" in (run / "doomed" / "sessions" / "unreachable.txt").read_text()


def test_a_lease_its_holder_stops_renewing_expires_and_frees_its_gpus(
    pytester: pytest.Pytester, pool: dict[str, ServerProcess]
) -> None:
    server = pool["b"]
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    lease = client.post("/v1/leases", json={"gpus": 2, "holder": "gone", "ttl_s": 5}).json()
    busy = client.post("/v1/leases", json={"gpus": 1, "holder": "next", "ttl_s": 5})
    assert busy.status_code == 409 and busy.json()["error"] == "busy"
    too_many = client.post("/v1/leases", json={"gpus": 3, "holder": "next", "ttl_s": 5})
    assert too_many.status_code == 400 and "this host has 2" in too_many.json()["detail"]
    workspace = client.post("/v1/workspaces", json={"lease": lease["id"], "label": "t"}).json()
    started = client.post(f"/v1/workspaces/{workspace['id']}/sessions", json={"name": "s"})
    assert started.status_code < 300, started.text
    client.post(f"/v1/workspaces/{workspace['id']}/sessions/s/run", json={"command": "sleep 600"})
    deadline = time.monotonic() + 30
    while client.get("/v1/leases").json()["free"] != ["0", "1"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert client.get("/v1/leases").json()["free"] == ["0", "1"]
    assert [e["event"] for e in server_events(server)] == ["granted", "expired"]
    assert client.post(f"/v1/leases/{lease['id']}/renew").status_code == 404
    # What ran under the expired lease was ended.
    deadline = time.monotonic() + 30
    while client.get(f"/v1/workspaces/{workspace['id']}/sessions/s").json().get("busy") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not client.get(f"/v1/workspaces/{workspace['id']}/sessions/s").json().get("busy")


def test_a_bad_hosts_file_is_an_error_that_says_what_to_change(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text('[[hosts]]\nurl = "gpu-a:8765"\ntoken_file = "t"\n')
    with pytest.raises(PoolError, match="host 1: url must be the session server's http"):
        load_pool(path)
    path.write_text('[[hosts]]\nurl = "http://a:1"\ntoken_file = "t"\ngpu = 4\n')
    with pytest.raises(PoolError, match=r"unknown key\(s\) \['gpu'\]"):
        load_pool(path)
    twice = '[[hosts]]\nurl = "http://a:1"\ntoken_file = "t"\n'
    path.write_text(twice + twice)
    with pytest.raises(PoolError, match="two hosts are named alike"):
        load_pool(path)
    (tmp_path / "t").write_text("x" * 20)
    path.write_text('[[hosts]]\nurl = "http://a:1"\ntoken_file = "t"\n')
    assert load_pool(path)[0].token_file == tmp_path / "t"


def test_a_pool_nobody_answers_stops_the_run_before_it_starts(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "one", gpus=1)
    (pytester.path / "token").write_text("x" * 20)
    (pytester.path / "hosts.toml").write_text('[[hosts]]\nurl = "http://127.0.0.1:9"\ntoken_file = "token"\n')
    result = pytester.runpytest_subprocess("suite", "--innovator-hosts", "hosts.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no host of*hosts.toml answers*start their session servers*"])


def test_an_item_that_spans_two_hosts_holds_both_and_runs_sessions_on_each(
    pytester: pytest.Pytester, start_pool: Callable[[dict[str, int]], dict[str, ServerProcess]]
) -> None:
    """Hosts a and b have 2 GPUs, c has 1: a 2-GPU, 2-host item holds a and b."""
    pool = start_pool({"a": 2, "b": 2, "c": 1})
    task = add_task(pytester.path / "suite", "pair", gpus=2)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("gpus = 2\n", "gpus = 2\nhosts = 2\n"))
    calls = [
        {"tool": "list_hosts", "arguments": {}},
        {"tool": "create_session", "arguments": {"name": "train", "host": "b"}},
        {"tool": "run_command", "arguments": {"session": "b/train", "command": "echo ON-B $CUDA_VISIBLE_DEVICES"}},
        {"tool": "create_session", "arguments": {"name": "s", "host": "nowhere"}},
        {"tool": "create_session", "arguments": {"name": "s"}},
        {"tool": "run_command", "arguments": {"session": "s", "command": "echo 0.9 > answer.txt"}},
        {"tool": "list_sessions", "arguments": {}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    path = pytester.path / "pair.jsonl"
    path.write_text("".join(json.dumps(call) + "\n" for call in calls))
    result = pytester.runpytest_subprocess(
        "suite", "--innovator-hosts", "hosts.toml", "--innovator-agent", "replay", "--innovator-replay", str(path)
    )
    result.assert_outcomes(passed=1)
    record = leases(pytester)["pair"]
    assert record["host"] == "a" and len(record["devices"]) == 2
    assert [(h["host"], len(h["devices"])) for h in record["more_hosts"]] == [("b", 2)]
    (run,) = (pytester.path / ".innovator" / "runs").iterdir()
    steps = [json.loads(line) for line in (run / "pair" / "trajectory.jsonl").read_text().splitlines()]
    outputs = [step["observation"] for step in steps if step["type"] == "step"]
    assert "a (first: your files and the graded workspace): GPUs 0,1" in outputs[0]
    assert "b: GPUs 0,1" in outputs[0]
    assert "created session 'b/train'" in outputs[1]
    assert "ON-B 0,1" in outputs[2]
    assert "this item holds no host 'nowhere'" in outputs[3]
    assert "b/train" in outputs[6] and "s: idle" in outputs[6]
    # The second host's session log came back beside the first's; both hosts' leases were released.
    assert "ON-B" in "".join(p.read_text() for p in (run / "pair" / "hosts" / "b" / "sessions").glob("*.log"))
    for name in ("a", "b"):
        assert [e["event"] for e in server_events(pool[name])] == ["granted", "released"]


def test_innovatorbench_tasks_run_on_a_pool_host_at_slash_workspace_and_are_graded_there(
    pytester: pytest.Pytester,
    suite: Path,  # noqa: F811 (the fixture)
    start_pool: Callable[[dict[str, int]], dict[str, ServerProcess]],
) -> None:
    """Tasks 18 and 19 (CPU only) with a synthetic dataset in the released layout: the pool host
    makes the workspace from the dataset (at /workspace, the environment overlaid) and runs the
    dataset's own evaluation; the score is what that evaluation computes (capped at 100)."""
    dataset = make_dataset(pytester.path / "dataset", 18, 19)
    start_pool({"a": 1, "b": 1})
    steps = [
        {"tool": "create_session", "arguments": {"name": "s"}},
        {"tool": "run_command", "arguments": {"session": "s", "command": f"pwd; {answer(60, 30)}", "wait": 60}},
        FINISH,
    ]
    path = pytester.path / "steps.jsonl"
    path.write_text("".join(json.dumps(step) + "\n" for step in steps))
    result = pytester.runpytest_subprocess(
        "innovatorbench", "-rs", "-k", "task_18 or task_19", "--innovator-hosts", "hosts.toml",
        "--innovator-dataset", f"innovatorbench={dataset}", "--innovator-agent", "replay",
        "--innovator-replay", str(path), *NO_API,
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    outcomes = {line["innovator_task"]: line for line in results_log(pytester)}
    for task in ("task_18", "task_19"):
        assert outcomes[task]["final_status"] == "scored"
        assert outcomes[task]["score_final"] == 100.0
        assert "\n/workspace\n" in observations(outcomes[task])[1]  # the agent's pwd
    assert outcomes["task_18"]["final_message"] == "task_18: 10 + 70 + 30 = 110, capped at 100"


def test_a_pool_item_killed_mid_run_starts_again_on_resume_with_its_evaluations_still_spent(
    pytester: pytest.Pytester, start_pool: Callable[[dict[str, int]], dict[str, ServerProcess]]
) -> None:
    """A pool host's workspace has no snapshots: on resume the item starts from the beginning, and
    the evaluation its killed attempt used stays used (the budget is never reset)."""
    start_pool({"a": 1})
    root = pytester.path
    add_task(root / "suite", "number")
    marker = f"7.{uuid.uuid4().int % 10**6:06d}"
    replay = replay_file(root, marker)  # evaluate, start a long command, ..., evaluate, finish
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    pool_args = ("--innovator-hosts", "hosts.toml")
    first = subprocess.Popen(
        pytest_command(root, "crashed", replay, *pool_args), cwd=root, env=env, stdout=subprocess.DEVNULL
    )
    wait_for(lambda: bool(processes_with(marker)))  # the first evaluation is done, the command runs
    first.send_signal(signal.SIGKILL)
    first.wait()
    crashed = the_run(root, "crashed")
    assert evaluations(crashed / "number") == [("agent", 0.2)]

    resume_run(root, "resumed", replay, crashed, env, *pool_args)
    item = the_run(root, "resumed") / "number"
    # The replay starts over and evaluates twice more: the budget of 3 holds all three.
    assert evaluations(item) == [("agent", 0.2), ("agent", 0.2), ("agent", 0.55), ("final", 0.55)]
    records = [json.loads(line) for line in (item / "trajectory.jsonl").read_text().splitlines()]
    restart = next(r for r in records if r.get("event") == "restart")
    assert restart["evaluations_kept"] == 1 and restart["source"] == str(crashed / "number")
    first_step = next(r for r in records if r["type"] == "step")
    assert "the 1 evaluation(s) it used stay used; 2 remain" in first_step["observation"]
