"""Grades a loss.py: trains the fixed classifier with it on hidden worlds, scores held-out data.

For each hidden world, the training set (inputs and noisy labels, made by data.py) is written to
an empty work directory together with this grader's copies of train.py and model.py and the
submitted loss.py. train.py runs there once for all worlds, sandboxed by
grader_kit.run_untrusted, and saves each trained network's weights. This process then loads the weights
(tensors only) into its own copy of the network and measures balanced accuracy on a clean,
balanced test set of each world, which never leaves this process.

Outcomes:
- invalid: no loss.py; training failed (an import error, an exception in the loss, a loss that is
  not a finite scalar depending on the logits), used more than TRAIN_CPU_SECONDS of CPU time
  (or hung for TRAIN_TIMEOUT seconds), or left weights that are missing, malformed or not
  finite. The message says which, with the end of the trainer's error output when the trainer
  ran isolated (it never sees test data and cannot read the grader's files, so the text cannot
  carry any).
- valid: the mean over the hidden worlds of the balanced accuracy (mean per-class recall).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import data
import numpy as np
import torch
from model import Classifier

from pytest_innovator.grader_kit import (
    GradeRequest,
    invalid,
    isolation_available,
    pin_numerics,
    program_failure,
    read_request,
    report,
)

HERE = Path(__file__).resolve().parent
HIDDEN_WORLD_SEEDS = (458436, 645619, 911438, 661625, 524347, 241230, 380417, 772906)
TEST_PER_CLASS = 300
TEST_STREAM = 3
TRAIN_CPU_SECONDS = 60
TRAIN_TIMEOUT = 150.0  # wall clock: only a program that hangs or sleeps gets near it
# Class groups by training frequency, as in long-tailed recognition: many-, medium- and few-shot.
CLASS_GROUPS = {"many": range(3), "medium": range(3, 7), "few": range(7, 10)}


def per_class_recall(model: Classifier, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        predictions = model(torch.from_numpy(inputs)).argmax(dim=1).numpy()
    return np.array([np.mean(predictions[labels == c] == c) for c in range(data.NUM_CLASSES)])


def load_weights(path: Path) -> Classifier | str:
    """The trained network, or why the weights cannot be used."""
    if not path.is_file():
        return f"train.py saved no weights to {path.name}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = Classifier(data.DIM, data.NUM_CLASSES)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds is the submission's doing
        return f"the weights in {path.name} do not fit the classifier ({type(exc).__name__})"
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return f"the weights in {path.name} are not finite (nan or inf gradients from the loss?)"
    return model.eval()


def train_sandboxed(loss_path: Path, seed: int) -> list[Classifier] | str:
    """The trained models, or why training failed."""
    workdir = Path(tempfile.mkdtemp(prefix="loss-design-"))
    try:
        for name in ("train.py", "model.py"):
            shutil.copyfile(HERE / name, workdir / name)
        shutil.copyfile(loss_path, workdir / "loss.py")
        args = ["train.py", "--seed", str(seed)]
        for index, world in enumerate(HIDDEN_WORLD_SEEDS):
            inputs, labels = data.training_set(world)
            np.savez(workdir / f"train_{index}.npz", inputs=inputs, labels=labels)
            args += ["--train", f"train_{index}.npz", "--out", f"model_{index}.pt"]
        failure = program_failure(
            [sys.executable, "-E", "-s", *args],
            cwd=workdir,
            timeout=TRAIN_TIMEOUT,
            cpu_seconds=TRAIN_CPU_SECONDS,
            activity="training",
            failed="train.py failed with your loss.py",
            rerun_hint="python3 evaluate_dev.py shows the error",
        )
        if failure is not None:
            return failure
        models = []
        for index in range(len(HIDDEN_WORLD_SEEDS)):
            model = load_weights(workdir / f"model_{index}.pt")
            if isinstance(model, str):
                return model
            models.append(model)
        return models
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def grade(request: GradeRequest) -> None:
    loss_path = request.submission_dir / "loss.py"
    if not loss_path.is_file():
        invalid(request, "the submission has no loss.py: write your loss to loss.py in the workspace")
        return
    torch.set_num_threads(1)
    # Every world gets its own initialisation: train.py adds the run index to the seed.
    trained = train_sandboxed(loss_path, seed=100 * request.seed)
    if isinstance(trained, str):
        invalid(request, trained)
        return
    recalls = []
    for world, model in zip(HIDDEN_WORLD_SEEDS, trained):
        recalls.append(per_class_recall(model, *data.clean_set(world, TEST_PER_CLASS, TEST_STREAM)))
    recall = np.array(recalls)  # [world, class]
    by_world = recall.mean(axis=1)
    metric = float(by_world.mean())
    metrics = {f"world_{i}": float(v) for i, v in enumerate(by_world)}
    metrics |= {
        f"{group}_shot_recall": float(recall[:, list(classes)].mean()) for group, classes in CLASS_GROUPS.items()
    }
    metrics["isolated"] = 1.0 if isolation_available() else 0.0
    groups = ", ".join(f"{g} {metrics[f'{g}_shot_recall']:.3f}" for g in CLASS_GROUPS)
    report(
        request,
        valid=True,
        metric=metric,
        metrics=metrics,
        message=f"balanced accuracy {metric:.4f} (mean of {len(by_world)} hidden worlds); "
        f"recall by class frequency: {groups}",
    )


def main() -> int:
    pin_numerics()
    grade(read_request())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
