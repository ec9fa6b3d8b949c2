"""The docker backend: the item's container, its limits, its session server, grading beside it."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_innovator
from pytest_innovator.agents import load_agent, run_episode
from pytest_innovator.env import Limits, ResearchEnv
from pytest_innovator.gpus import GpuLease
from pytest_innovator.grading import run_grader
from pytest_innovator.remote.client import ServerUnreachable
from pytest_innovator.results import EpisodeResult
from pytest_innovator.task import Task, load_task
from pytest_innovator.workspace import LocalWorkspace, Workspace, WorkspaceError

from .conftest import FIXTURES
from .docker_support import REPOSITORY, docker_daemon, docker_image  # noqa: F401
from .test_task_scaffold_construction import BASELINE_STEALING_ANSWERS

pytest.importorskip("docker", reason="the docker backend needs the docker package: pip install docker")

from pytest_innovator.remote.docker import (
    ITEM_LABEL,
    DockerBackendError,
    DockerWorkspace,
    container_options,
    container_python_mounts,
    create_docker_workspace,
    symlinks_followed,
)


def task_with(task_dir: Path, resources: str = "", network: bool = False) -> Task:
    toml = task_dir / "task.toml"
    text = toml.read_text()
    if resources:
        text = text.replace("[grader]", f"[resources]\n{resources}\n\n[grader]")
    if network:
        text = text.replace('outputs = ["answer.txt"]', 'outputs = ["answer.txt"]\nnetwork = true')
    toml.write_text(text)
    return load_task(task_dir)


def test_container_options_follow_the_task_and_the_lease(number_task_dir: Path, tmp_path: Path) -> None:
    task = task_with(number_task_dir, 'cpus = 2.5\nmemory = "512M"')
    lease = GpuLease(devices=("1", "3"), owner="test", acquired_at=0.0)
    root = tmp_path / "workspace"
    inside_a_mount = Path(pytest_innovator.__file__).resolve().parent / "agents"  # as a develop-mode checkout's tasks
    options = container_options(
        task,
        root,
        tmp_path / "sessions",
        tmp_path / "socket",
        image="some:image",
        env={"CUDA_VISIBLE_DEVICES": "1,3", "INNOVATOR_TASK": "number"},
        lease=lease,
        linked_paths=("data/facts.txt",),
        hidden=[inside_a_mount, number_task_dir],
        pids_limit=300,
        label="item",
    )
    assert (options["nano_cpus"], options["mem_limit"], options["memswap_limit"], options["pids_limit"]) == (
        2_500_000_000,
        512 << 20,
        512 << 20,
        300,
    )
    [gpus] = options["device_requests"]
    assert gpus["DeviceIDs"] == ["1", "3"] and gpus["Capabilities"] == [["gpu"]]
    assert options["network_mode"] == "none" and options["read_only"] and options["cap_drop"] == ["ALL"]
    assert "CUDA_VISIBLE_DEVICES" not in options["environment"] and options["environment"]["INNOVATOR_TASK"] == "number"
    mounts = {m["Target"]: m for m in options["mounts"]}
    assert mounts[str(root)]["ReadOnly"] is False and mounts[str(root / "data/facts.txt")]["ReadOnly"] is True
    assert not any(target.startswith(str(number_task_dir)) for target in mounts)  # not mounted, so nothing to cover
    assert mounts[str(inside_a_mount)]["Type"] == "tmpfs"
    assert options["command"][-2:] == ["--read-only", "data/facts.txt"]
    allowed = container_options(
        task_with(number_task_dir, network=True), root, tmp_path, tmp_path, image="i", env={}, lease=None
    )
    assert allowed["network_mode"] == "host" and allowed["device_requests"] == []


def test_the_interpreter_is_mounted_where_its_symlinks_lead(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "python3.11").write_text("")
    (tmp_path / "usr" / "bin" / "python3").symlink_to("python3.11")
    (tmp_path / "venv" / "bin" / "python3").symlink_to(tmp_path / "usr" / "bin" / "python3")
    (tmp_path / "venv" / "bin" / "python").symlink_to("python3")
    venv_bin = tmp_path / "venv" / "bin"
    assert symlinks_followed(venv_bin / "python") == [
        venv_bin / "python",
        venv_bin / "python3",
        tmp_path / "usr" / "bin" / "python3",
    ]
    interpreter = Path(sys.executable).resolve()
    targets = {target: source for source, target in container_python_mounts()}
    for link in symlinks_followed(Path(sys.executable)):
        assert targets.get(link) == interpreter or any(t in link.parents for t in targets)


@pytest.fixture
def docker_workspace(number_task_dir: Path, tmp_path: Path, docker_image: str) -> Iterator[DockerWorkspace]:  # noqa: F811
    task = task_with(number_task_dir, 'cpus = 1\nmemory = "512M"')
    workspace, _ = create_docker_workspace(
        task, tmp_path / "run", {"INNOVATOR_TASK": "number"}, image=docker_image, pids_limit=500
    )
    yield workspace
    workspace.close()


def test_commands_run_in_the_container_within_the_tasks_limits(
    docker_workspace: DockerWorkspace, number_task_dir: Path
) -> None:
    session = docker_workspace.sessions.create("s")
    probes = {
        "init": "tr '\\0' ' ' < /proc/1/cmdline",
        "memory": "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        "pids": "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        "interfaces": "ls /sys/class/net",
        "system": "touch /usr/owned 2>&1; echo $?",
        "task": f"ls {number_task_dir} 2>&1; echo $?",
        "workspace": "echo made here > made.txt && pwd",
    }
    seen = {name: session.run(command, wait=20).output.strip() for name, command in probes.items()}
    assert seen["init"].startswith("/sbin/docker-init") or "docker-init" in seen["init"]
    assert seen["memory"] == str(512 << 20) and seen["pids"] == "500"
    assert seen["interfaces"] == "lo"
    assert "Read-only file system" in seen["system"] and seen["system"].endswith("1")
    assert "No such file or directory" in seen["task"]
    assert seen["workspace"] == docker_workspace.root
    assert (docker_workspace.host_root / "made.txt").read_text() == "made here\n"
    assert docker_workspace.exec("id -u", 10).output.strip() == str(os.getuid())


def test_what_the_containers_limits_did_is_told_after_the_command(
    number_task_dir: Path,
    tmp_path: Path,
    docker_image: str,  # noqa: F811
) -> None:
    task = task_with(number_task_dir, 'memory = "256M"\ndisk = "100M"')
    workspace, _ = create_docker_workspace(task, tmp_path / "run", {}, image=docker_image, pids_limit=64)
    try:
        assert "limits by docker" in workspace.limits_text and "is not reported" not in workspace.limits_text
        session = workspace.sessions.create("s")

        def told(command: str) -> list[str]:
            session.run(command, wait=60)
            return [said.split(":")[0] for said in workspace.limit_events() if not said.startswith("CPU limit")]

        assert told("echo nothing") == []
        assert told("head -c 512M /dev/zero | tail > /dev/null") == ["out of memory"]  # tail holds the one line
        assert told("for i in $(seq 100); do sleep 30 & done 2>/dev/null; kill $(jobs -p)") == ["process limit"]
        assert told("head -c 300M /dev/zero > fill.bin") == ["disk full"]
        assert told("rm fill.bin; echo freed") == []
    finally:
        workspace.close()


def test_a_dead_server_is_reported_and_grading_still_works(docker_workspace: DockerWorkspace, tmp_path: Path) -> None:
    session = docker_workspace.sessions.create("s")
    session.run("echo 0.9 > answer.txt", wait=10)
    with pytest.raises(ServerUnreachable):
        session.run("kill -9 -1", wait=10)  # every process the container's user may signal: the server too
    with pytest.raises(ServerUnreachable, match="has stopped"):
        docker_workspace.sessions.list()
    # What grading needs comes from the host side, not from the dead container.
    assert docker_workspace.copy_out("answer.txt", tmp_path / "submitted.txt")
    assert (tmp_path / "submitted.txt").read_text() == "0.9\n"
    assert docker_workspace.protected_state(["data/"])


def test_close_removes_the_container_and_its_graders(number_task_dir: Path, tmp_path: Path, docker_image: str) -> None:  # noqa: F811
    import docker

    task = load_task(number_task_dir)
    workspace, _ = create_docker_workspace(task, tmp_path / "run", image=docker_image)
    env = ResearchEnv(task, workspace, tmp_path / "run", Limits(300, 50, 3))
    workspace.write_file("answer.txt", b"0.6")
    assert "score 45.71" in env.step("evaluate").output
    env.finalize()
    workspace.close()
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": f"{ITEM_LABEL}={workspace.label}"}) == []
    assert not workspace.socket_dir.exists()


def test_a_missing_image_says_how_to_build_one(number_task_dir: Path, tmp_path: Path, docker_daemon: None) -> None:  # noqa: F811
    with pytest.raises(DockerBackendError, match="docker-test-image.sh"):
        create_docker_workspace(load_task(number_task_dir), tmp_path / "run", image="innovator-no-such:image")
    assert not (tmp_path / "run" / "workspace").exists()


def run_agent(task: Task, run_dir: Path, agent: str, docker_image: str | None) -> EpisodeResult:  # noqa: F811
    workspace: Workspace
    if docker_image is None:
        workspace, _ = LocalWorkspace.create(task, run_dir)
    else:
        workspace, _ = create_docker_workspace(task, run_dir, image=docker_image)
    try:
        limits = Limits(task.spec.time_limit, task.spec.step_limit, task.spec.eval_budget)
        env = ResearchEnv(task, workspace, run_dir, limits)
        return run_episode(load_agent(agent), env)
    finally:
        workspace.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_dir",
    [FIXTURES / "tasks" / "number", REPOSITORY / "task_suites" / "mini" / "scaffold_construction"],
    ids=["number", "mini-scaffold_construction"],
)
def test_oracle_and_null_score_as_on_the_local_backend(task_dir: Path, tmp_path: Path, docker_image: str) -> None:  # noqa: F811
    task = load_task(task_dir)
    scores = {}
    for backend, image in (("local", None), ("docker", docker_image)):
        for agent in ("null", "oracle"):
            result = run_agent(task, tmp_path / f"{backend}-{agent}", agent, image)
            assert result.final_status == "scored", result.final_message
            scores[backend, agent] = (result.score_final, result.metric_final)
    assert scores["docker", "null"] == scores["local", "null"] and scores["local", "null"][0] == 0
    assert scores["docker", "oracle"] == scores["local", "oracle"] and scores["local", "oracle"][0] == pytest.approx(80)


def test_file_tools_work_on_the_host_side_and_stay_confined(docker_workspace: DockerWorkspace) -> None:
    docker_workspace.sessions.create("s").run("ln -s /etc/passwd escape && mkdir -p out && echo x > out/a", wait=10)
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        docker_workspace.read_file("escape")
    assert [e.path for e in docker_workspace.list_dir("out")] == ["out/a"]


@pytest.mark.slow
def test_a_scaffold_in_the_grader_container_cannot_read_the_answers(tmp_path: Path, docker_image: str) -> None:  # noqa: F811
    # The grader container has no bubblewrap: the scaffold runs there as `nobody`, which cannot
    # read the grader's 0700 scratch directory (its copy of the answers) or its /proc entries.
    task = load_task(REPOSITORY / "task_suites" / "mini" / "scaffold_construction")
    stealing = BASELINE_STEALING_ANSWERS.format(temp_dir=tempfile.gettempdir(), task_dir=str(task.root))
    baseline = (task.workspace_dir / "scaffold.py").read_text(encoding="utf-8")
    workspace, _ = create_docker_workspace(task, tmp_path / "run", {}, image=docker_image)
    try:
        outcomes = {
            name: run_grader(
                task,
                lambda d, source=source: (d / "scaffold.py").write_text(source),
                tmp_path / f"{name}.log",
                wrap=workspace.wrap_grader,
            )
            for name, source in (("stealing", stealing), ("baseline", baseline))
        }
    finally:
        workspace.close()
    assert outcomes["baseline"].status == "scored", outcomes["baseline"].message
    assert outcomes["stealing"].metrics["isolated"] == 1.0
    assert outcomes["stealing"].metric == outcomes["baseline"].metric
