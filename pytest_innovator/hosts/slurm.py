"""xdist workers as Slurm allocations: `pytest-innovator slurm-tx --gpus 2 --gpus 4` prints the
`--tx` arguments that start each worker through `srun` with the GPUs it asks for.

Why a wrapper script as the worker's "python": execnet's popen gateway starts
`<python> -u -c <bootstrap>` and speaks its protocol over the child's stdin and stdout. srun
forwards both (with `--unbuffered`, bytes as they come rather than whole lines), so a script that
execs srun, which starts python on the node Slurm chose, is a python to execnet; xdist, the probe
of hosts/inventory.py and the GPU scheduler need nothing else. Each worker is its own srun: a job
of its own (or a step of the job it runs in, under salloc or sbatch) that holds its GPUs until the
worker's interpreter exits.

Inside the allocation, before python starts, the script names the worker's host after its
allocation, `INNOVATOR_HOST=<node>/<job>.<step>`: two allocations on one node hold different GPUs,
so to the planner and to the GPU locks they are different hosts. It also drops an
`INNOVATOR_GPUS` that srun copied from the controller's environment, so the worker's GPUs are
those Slurm allocated (gpus.detect_gpus reads them from CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..errors import InnovatorError

# Runs in the allocation, as `sh -c STEP python ARGS...` ($0 is the python).
_IN_STEP = 'export INNOVATOR_HOST="$SLURMD_NODENAME/$SLURM_JOB_ID.$SLURM_STEP_ID"; unset INNOVATOR_GPUS; exec "$0" "$@"'


class SlurmError(InnovatorError):
    pass


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-innovator-{os.getuid()}" / "slurm"


def wrapper_text(gpus: int, python: str, srun: str, srun_args: Sequence[str] = ()) -> str:
    """The script execnet runs as the python of a worker that holds `gpus` GPUs."""
    command = [srun, "--nodes=1", "--ntasks=1", "--unbuffered", f"--job-name=pytest-innovator-gpu{gpus}"]
    if gpus:  # without --gres, Slurm removes CUDA_VISIBLE_DEVICES: the worker has no GPU
        command.append(f"--gres=gpu:{gpus}")
    command += [*srun_args, "/bin/sh", "-c", _IN_STEP, python]
    return (
        "#!/bin/sh\n"
        f"# An xdist worker in a Slurm allocation of {gpus} GPUs (pytest-innovator slurm-tx).\n"
        f'exec {shlex.join(command)} "$@"\n'
    )


def write_wrapper(directory: Path, gpus: int, python: str, srun: str, srun_args: Sequence[str] = ()) -> Path:
    """Write the wrapper once, named by its content so that runs with other settings keep theirs."""
    text = wrapper_text(gpus, python, srun, srun_args)
    path = directory / f"srun-gpu{gpus}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if not path.exists() or path.read_text() != text:
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        partial.chmod(0o755)
        partial.replace(path)
    return path


def tx_arguments(
    gpu_counts: Sequence[int],
    directory: Path | None = None,
    python: str = sys.executable,
    srun_args: Sequence[str] = (),
) -> list[str]:
    """pytest's arguments for one worker per entry of `gpu_counts`, each an allocation of that
    many GPUs: `--tx N*popen//python=WRAPPER` per count, then `--dist load`. `python` must be at
    the same path on the nodes (a shared virtual environment), as with ssh workers."""
    if not gpu_counts:
        raise SlurmError("give the GPUs of at least one worker, e.g. --gpus 2")
    if any(count < 0 for count in gpu_counts):
        raise SlurmError(f"a worker's GPU count must be 0 or more, got {list(gpu_counts)}")
    srun = shutil.which("srun")
    if srun is None:
        raise SlurmError("srun is not on PATH: run this where Slurm's commands are")
    directory = (directory or default_directory()).absolute()
    if any(character.isspace() for character in f"{directory}{python}"):
        # The arguments are pasted unquoted ($(pytest-innovator slurm-tx ...)): the shell splits them at spaces.
        raise SlurmError(f"{directory} or {python} holds a space: give --dir and --python without spaces")
    arguments = []
    for gpus, workers in Counter(gpu_counts).items():
        wrapper = write_wrapper(directory, gpus, python, srun, srun_args)
        arguments += ["--tx", f"{workers}*popen//python={wrapper}" if workers > 1 else f"popen//python={wrapper}"]
    return [*arguments, "--dist", "load"]
