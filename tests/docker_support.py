"""A Docker daemon and the offline test image for the docker backend's tests.

When no daemon answers, the `docker_daemon` fixture starts one (`dockerd --bridge=none
--iptables=false`, so containers have only loopback) and the last test process using it stops it:
xdist workers share one daemon through a lock file and a count of users. When the test image is
missing, `docker_image` builds it once with scripts/docker-test-image.sh (debootstrap from
Debian's mirror, a few minutes, then kept by the daemon). Tests skip only where Docker is not
installed or cannot be started by this user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_innovator.remote.docker import DEFAULT_IMAGE

REPOSITORY = Path(__file__).resolve().parent.parent
IMAGE_SCRIPT = REPOSITORY / "scripts" / "docker-test-image.sh"
DAEMON_START_S = 60.0
DAEMON_STOP_S = 30.0
SHARED_DIR = Path(tempfile.gettempdir()) / f"pytest-innovator-dockerd-{os.getuid()}"


def daemon_answers() -> bool:
    import docker

    try:
        docker.from_env().ping()
    except docker.errors.DockerException:
        return False
    return True


@contextlib.contextmanager
def shared_state() -> Iterator[dict[str, int]]:
    """The daemon this test run started ({"pid", "users"}), read and written under a lock."""
    SHARED_DIR.mkdir(exist_ok=True)
    state_path = SHARED_DIR / "state.json"
    with open(SHARED_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        yield state
        if state:
            state_path.write_text(json.dumps(state))
        else:
            state_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and b"dockerd" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _start_daemon(log_path: Path) -> int:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("Docker is not installed here (apt-get install docker.io)")
    if os.geteuid() != 0:
        pytest.skip("no Docker daemon runs, and starting one (dockerd) needs root")
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [dockerd, "--bridge=none", "--iptables=false"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + DAEMON_START_S
    while not daemon_answers():
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            pytest.fail(f"dockerd did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return daemon.pid


def _stop_daemon(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DAEMON_STOP_S
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaps it when this process started it
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    try:
        import docker  # noqa: F401
    except ImportError:
        pytest.skip("the docker package is not installed: pip install docker")
    with shared_state() as state:
        if state and _alive(state["pid"]):
            state["users"] += 1  # started by another process of this test run
        elif daemon_answers():
            state.clear()  # somebody else's daemon: use it, leave it running
        else:
            state.update(pid=_start_daemon(tmp_path_factory.mktemp("dockerd") / "dockerd.log"), users=1)
        managed = bool(state)
    try:
        yield
    finally:
        if managed:
            with shared_state() as state:
                state["users"] -= 1
                if state["users"] <= 0:
                    _stop_daemon(state["pid"])
                    state.clear()


@pytest.fixture(scope="session")
def docker_image(docker_daemon: None) -> str:
    import docker

    with shared_state():  # one process builds; the others wait for it
        try:
            docker.from_env().images.get(DEFAULT_IMAGE)
        except docker.errors.ImageNotFound:
            built = subprocess.run(
                ["bash", str(IMAGE_SCRIPT), DEFAULT_IMAGE], capture_output=True, text=True, check=False
            )
            if built.returncode != 0:
                pytest.fail(f"cannot build the test image {DEFAULT_IMAGE}: {built.stderr[-3000:]}")
    return DEFAULT_IMAGE
