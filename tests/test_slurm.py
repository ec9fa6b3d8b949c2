"""xdist workers as Slurm allocations: the wrapper scripts and `--tx` arguments of `pytest-innovator
slurm-tx`, a worker's GPUs and host name inside an allocation, and a run under a real single-node
Slurm (slurmctld, slurmd and munge started here as root, six GPU stand-ins made with mknod) whose
two workers, started through srun with 2 and 4 GPUs, receive only the items that fit them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import execnet
import pytest

from pytest_innovator.cli import main as cli_main
from pytest_innovator.gpus import detect_gpus
from pytest_innovator.hosts.inventory import ask_worker
from pytest_innovator.hosts.slurm import SlurmError, tx_arguments
from pytest_innovator.plugin.options import resolve_settings
from pytest_innovator.plugin.scheduling import worker_host

from .test_scheduling import ITEMS, TOO_BIG, leases, run_suite, suite  # noqa: F401 (suite: a fixture)

pytest_plugins = ["pytester"]

SLURM_COMMANDS = ("slurmctld", "slurmd", "srun", "squeue", "scancel", "sinfo", "munged")
DAEMONS = ("slurmctld", "slurmd", "slurmstepd", "munged")
NODE_GPUS = 6
STARTUP_S = 30.0

# A stand-in for srun: records its arguments, sets what Slurm sets in a step of 2 GPUs, runs the rest.
FAKE_SRUN = """#!/bin/sh
printf '%s\\n' "$@" > "$(dirname "$0")/srun-args"
while [ "$1" != /bin/sh ]; do shift; done
export SLURMD_NODENAME=node7 SLURM_JOB_ID=41 SLURM_STEP_ID=0 CUDA_VISIBLE_DEVICES=4,5
exec "$@"
"""


def test_slurm_tx_prints_one_tx_per_gpu_count_whose_wrapper_runs_python_in_an_allocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("INNOVATOR_GPUS", "0,1,2,3,4,5,6,7")  # the controller's, not the allocation's

    wrappers = tmp_path / "wrappers"
    argv = ["slurm-tx", "--gpus", "2", "--gpus", "4", "--gpus", "2", "--dir", str(wrappers)]
    assert cli_main([*argv, "--srun-args", "--partition=gpu --time=48:00:00"]) == 0
    printed = capsys.readouterr().out.split()
    two, four = sorted(wrappers.iterdir())
    assert printed == ["--tx", f"2*popen//python={two}", "--tx", f"popen//python={four}", "--dist", "load"]
    assert two.stat().st_mode & stat.S_IXUSR

    # execnet runs the wrapper as python: through srun, in the allocation, with its host named.
    gateway = execnet.makegateway(f"popen//python={two}")
    try:
        channel = gateway.remote_exec(
            "import os, sys; channel.send((sys.executable, os.environ.get('INNOVATOR_HOST'), "
            "os.environ.get('INNOVATOR_GPUS'), os.environ['CUDA_VISIBLE_DEVICES']))"
        )
        assert channel.receive(timeout=60) == (sys.executable, "node7/41.0", None, "4,5")
    finally:
        gateway.exit()
    srun_args = (bin_dir / "srun-args").read_text().splitlines()
    assert srun_args[:6] == [
        "--nodes=1",
        "--ntasks=1",
        "--unbuffered",
        "--job-name=pytest-innovator-gpu2",
        "--gres=gpu:2",
        "--partition=gpu",
    ]
    assert srun_args[6:8] == ["--time=48:00:00", "/bin/sh"]

    # The same settings give the same wrappers; a worker of no GPU asks for no gres.
    assert tx_arguments([2, 4, 2], wrappers, srun_args=["--partition=gpu", "--time=48:00:00"])[:4] == printed[:4]
    none = Path(tx_arguments([0], wrappers)[1].removeprefix("popen//python="))
    assert "--gres" not in none.read_text()
    with pytest.raises(SlurmError, match="holds a space"):
        tx_arguments([1], tmp_path / "with space")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert cli_main(["slurm-tx", "--gpus", "1", "--dir", str(wrappers)]) == 1
    assert "srun is not on PATH" in capsys.readouterr().err


def test_in_a_slurm_allocation_the_worker_and_the_controller_find_the_allocated_gpus(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in [v for v in os.environ if v.startswith(("INNOVATOR_", "SLURM"))]:
        monkeypatch.delenv(variable)
    allocation = {"SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0", "CUDA_VISIBLE_DEVICES": "4,5", "SLURMD_NODENAME": "node7"}
    assert detect_gpus(None, allocation) == ["4", "5"]
    assert detect_gpus(None, {"SLURM_JOB_ID": "41"}) == []  # Slurm removes it when none are allocated
    assert detect_gpus("0", allocation) == ["0"]  # named GPUs win
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES='NoDevFiles'.*INNOVATOR_GPUS"):
        detect_gpus(None, {"SLURM_JOB_ID": "41", "CUDA_VISIBLE_DEVICES": "NoDevFiles"})

    # The worker's own settings and the controller's view from the probe's report agree, on the
    # GPUs and on the host: the allocation's name, with nothing naming it.
    env = "".join(f"//env:{name}={value}" for name, value in allocation.items())
    config = pytester.parseconfig()
    for name, value in allocation.items():
        monkeypatch.setenv(name, value)
    settings = resolve_settings(config)
    gateway = execnet.makegateway(f"popen{env}")
    try:
        assert (
            worker_host(config, ask_worker(gateway))[:2] == (settings.host, settings.gpus) == ("node7/41.0", ("4", "5"))
        )
    finally:
        gateway.exit()
    # INNOVATOR_GPUS in the worker's environment still wins over the allocation.
    gateway = execnet.makegateway(f"popen{env}//env:INNOVATOR_GPUS=4")
    try:
        assert worker_host(config, ask_worker(gateway))[1] == ("4",)
    finally:
        gateway.exit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_of(cluster: str, conf: Path) -> list[str]:
    """Processes of this test's Slurm: its daemons and job steps carry its slurm.conf or cluster name."""
    marks = (f"SLURM_CONF={conf}".encode(), f"SLURM_CLUSTER_NAME={cluster}".encode())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            name = (proc / "comm").read_text().strip()
        except OSError:
            continue  # gone, or not ours to read
        if any(mark in environ for mark in marks):
            found.append(f"{proc.name} {name}")
    return found


def _wait_for(what: str, check, logs: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + STARTUP_S
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(logs.glob("*.log")))
            raise AssertionError(f"the test Slurm: {what} not within {STARTUP_S} s\n{tails}")
        time.sleep(0.2)


@pytest.fixture
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A single-node Slurm with NODE_GPUS GPUs; the environment that reaches it. Everything it
    started is stopped afterwards, and the test fails if any of its processes is left."""
    missing = [command for command in SLURM_COMMANDS if shutil.which(command, path="/usr/sbin:/usr/bin") is None]
    if missing:
        pytest.skip(f"needs Slurm and munge (apt-get install slurm-wlm munge); missing {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd, slurmctld and munged and making device nodes need root")
    root = tmp_path_factory.mktemp("slurm")
    dev = root / "dev"
    dev.mkdir()
    for index in range(NODE_GPUS):  # slurmd's gres.conf takes only character devices
        os.mknod(dev / f"nvidia{index}", 0o600 | stat.S_IFCHR, os.makedev(195, index))
    for state in ("state", "spool"):
        (root / state).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node = socket.gethostname()
    cluster = f"t{uuid.uuid4().hex[:10]}"
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName={cluster}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName={node} NodeAddr=127.0.0.1 CPUs=8 Gres=gpu:{NODE_GPUS} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File={dev}/nvidia[0-{NODE_GPUS - 1}]\n")
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"/usr/sbin:/usr/bin:{os.environ['PATH']}"}
    daemons: list[subprocess.Popen[bytes]] = []

    def start(*command: str) -> None:
        out = open(root / f"{Path(command[0]).name}.out.log", "wb")  # noqa: SIM115 (the daemon's, closed after it)
        daemons.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        out.close()

    def ask(*command: str) -> str:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=STARTUP_S).stdout

    try:
        start(
            "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={root}/munge.socket",
            f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed",
            "--origin=127.0.0.1",
        )  # fmt: skip
        _wait_for("munged's socket", (root / "munge.socket").exists, root)
        start("slurmctld", "-D", "-f", str(conf))
        start("slurmd", "-D", "-f", str(conf), "-N", node)
        _wait_for("an idle node", lambda: ask("sinfo", "-h", "-o", "%T").strip() == "idle", root)
        yield env
    finally:
        jobs = ask("squeue", "-h", "-o", "%i").split() if daemons else []
        if jobs:
            ask("scancel", *jobs)
            _wait_for("the jobs to end", lambda: not ask("squeue", "-h", "-o", "%i").strip(), root)
        for daemon in reversed(daemons):
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=STARTUP_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        deadline = time.monotonic() + STARTUP_S
        while (left := _processes_of(cluster, conf)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid_and_name in left:
            os.kill(int(pid_and_name.split()[0]), signal.SIGKILL)
        assert not left, f"processes of the test Slurm outlived it: {left}"


ALLOCATIONS = (2, 4)

# Each worker writes what Slurm gave it, for the test to compare with where its items ran.
WORKER_REPORT = """
import json, os
from pathlib import Path

def pytest_configure(config):
    if hasattr(config, "workerinput"):
        names = ("INNOVATOR_HOST", "SLURM_JOB_ID", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES")
        report = {name: os.environ.get(name) for name in names}
        Path("allocations", config.workerinput["workerid"]).write_text(json.dumps(report))
"""


@pytest.mark.usefixtures("suite")
def test_workers_started_through_srun_receive_only_items_that_fit_their_allocation(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, slurm: dict[str, str]
) -> None:
    """The suite of tests/test_scheduling.py (items of 0 to 8 GPUs that sleep) on two allocations."""
    for variable in [v for v in os.environ if v.startswith(("SLURM", "CUDA_"))]:
        monkeypatch.delenv(variable)
    for variable in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(variable, slurm[variable])
    pytester.makeconftest(WORKER_REPORT)
    (pytester.path / "allocations").mkdir()

    tx = tx_arguments(ALLOCATIONS, pytester.path / "wrappers")
    result = run_suite(pytester, *tx)
    result.assert_outcomes(passed=len(ITEMS), skipped=len(TOO_BIG))
    result.stdout.fnmatch_lines(["SKIPPED*task eight needs 8 GPUs, this host has*"])

    # What Slurm gave each worker: disjoint GPUs, 2 and 4, each allocation a host of its own.
    reports = [json.loads(path.read_text()) for path in (pytester.path / "allocations").iterdir()]
    allocations = {r["INNOVATOR_HOST"]: set(r["SLURM_STEP_GPUS"].split(",")) for r in reports}
    assert sorted(len(gpus) for gpus in allocations.values()) == sorted(ALLOCATIONS), reports
    first, second = allocations.values()
    assert not first & second
    for report in reports:
        assert report["INNOVATOR_HOST"] == f"{socket.gethostname()}/{report['SLURM_JOB_ID']}.0"
        assert report["CUDA_VISIBLE_DEVICES"] == report["SLURM_STEP_GPUS"]

    records = leases(pytester)
    assert set(records) == set(ITEMS)
    for item, record in records.items():
        assert len(record["devices"]) == ITEMS[item], (item, record)
        assert set(record["devices"]) <= allocations[record["host"]], (item, record, allocations)
    big = {host for host, gpus in allocations.items() if len(gpus) == max(ALLOCATIONS)}
    assert {records[item]["host"] for item in ("four_a", "four_b")} == big
    assert {record["host"] for record in records.values()} == set(allocations)  # both allocations ran items
    held = [(device, r["acquired_at"], r["released_at"]) for r in records.values() for device in r["devices"]]
    for i, (device, start, end) in enumerate(held):
        for other_device, other_start, other_end in held[i + 1 :]:
            if device == other_device:
                assert end <= other_start or other_end <= start, device
