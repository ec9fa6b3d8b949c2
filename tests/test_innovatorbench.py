"""InnovatorBench's 20 tasks as items, run from the command line as a user would: collection and
selection, the skips of what this host or this harness cannot give, and the dataset they take
their files from (a synthetic one in the released layout, made by fixtures/innovatorbench/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_innovator.task import load_task

from .conftest import FIXTURES, fake_gpus

pytest_plugins = ["pytester"]

SUITE = Path(__file__).resolve().parent.parent / "task_suites" / "innovatorbench"
ALL = {f"task_{n}" for n in range(1, 21)}
WEB = {f"task_{n}" for n in (1, 2, 3, 4, 8, 9)}
API_MODEL = {"task_18", "task_19", "task_20"}
EIGHT_GPUS = ALL - {"task_18", "task_19", "task_20"}
ON_ONE_HOST_WITH_EIGHT_GPUS = EIGHT_GPUS - WEB - {"task_6"}  # 5, 7, 10-17: nothing else they lack
SOURCE = "https://huggingface.co/datasets/GAIR/InnovatorBench"


@pytest.fixture(autouse=True)
def no_innovator_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs see only the settings a test gives them."""
    for variable in [v for v in os.environ if v.startswith("INNOVATOR_")]:
        monkeypatch.delenv(variable)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the suite in the test's directory, on a host whose NVML sees no GPU."""
    shutil.copytree(SUITE, pytester.path / "innovatorbench")
    fake_gpus(monkeypatch, pytester.path / "nvml.json", [])
    return pytester.path / "innovatorbench"


def make_dataset(root: Path, *tasks: int) -> Path:
    script = FIXTURES / "innovatorbench" / "make_dataset.py"
    subprocess.run([sys.executable, str(script), str(root), *map(str, tasks)], check=True)
    return root


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    locks = pytester.path / "gpu-locks"
    cache = pytester.path / "cache"
    return pytester.runpytest_subprocess(
        "innovatorbench",
        "-rs",
        "--innovator-gpu-lock-dir",
        str(locks),
        "--innovator-cache-dir",
        str(cache),
        "--innovator-agent",
        "null",
        *args,
    )


def collected(result: pytest.RunResult) -> set[str]:
    return {line.rsplit("::", 1)[1] for line in result.outlines if "task.toml::" in line}


def skip_reasons(result: pytest.RunResult) -> dict[str, str]:
    """task id -> the reason its item was skipped (the -rs lines)."""
    reasons = {}
    for line in result.outlines:
        match = re.match(r"SKIPPED \[1\] \S+: task (task_\d+) needs (.*)$", line)
        if match:
            reasons[match.group(1)] = match.group(2)
    return reasons


def setup_errors(result: pytest.RunResult) -> dict[str, str]:
    """task id -> the text of its setup error (the ERROR at setup sections)."""
    text = "\n".join(result.outlines)
    sections = re.split(r"_+ ERROR at setup of innovator task (task_\d+) _+\n", text)
    return {task: body.split("\n____")[0].split("\n===")[0] for task, body in zip(sections[1::2], sections[2::2])}


# --- collection and selection ------------------------------------------------------------------


def test_twenty_items_named_by_task(pytester: pytest.Pytester, suite: Path) -> None:
    result = run(pytester, "--collect-only", "-q")
    assert collected(result) == ALL
    assert "innovatorbench/task_14/task.toml::task_14" in result.outlines


def test_selection_by_name_and_by_domain(pytester: pytest.Pytester, suite: Path) -> None:
    assert collected(run(pytester, "--collect-only", "-q", "-k", "task_14")) == {"task_14"}
    assert collected(run(pytester, "--collect-only", "-q", "-m", "loss_design")) == {"task_13", "task_14", "task_15"}
    assert collected(run(pytester, "--collect-only", "-q", "-m", "scaffold_construction")) == API_MODEL


# --- what the host or the harness cannot give --------------------------------------------------


def test_without_the_dataset_every_item_is_skipped_naming_the_option_and_the_source(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = run(pytester)
    result.assert_outcomes(skipped=20)
    reasons = skip_reasons(result)
    assert set(reasons) == ALL
    for reason in reasons.values():
        assert reason.startswith(
            "dataset 'innovatorbench' (give its path with --innovator-dataset innovatorbench=PATH, environment "
            f"variable INNOVATOR_DATASET_INNOVATORBENCH or ini key innovator_datasets; get it from {SOURCE}, with "
            "evaluations/ from https://github.com/GAIR-NLP/InnovatorBench inside it)"
        )
    assert not list((pytester.path / ".innovator").glob("runs/*/task_*"))  # nothing is made for a skipped item


def test_with_the_dataset_on_a_host_without_gpus_every_item_is_skipped_naming_what_it_needs(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNOVATOR_DATASET_INNOVATORBENCH", str(make_dataset(pytester.path / "dataset")))
    result = run(pytester)
    result.assert_outcomes(skipped=20)
    reasons = skip_reasons(result)
    gpus = "8 GPUs with 80 GiB each, this host has 0 (none detected): name them with --innovator-gpus"
    for task in EIGHT_GPUS:
        assert gpus in reasons[task], task
    assert "1 GPU with 24 GiB each, this host has 0 (none detected)" in reasons["task_20"]
    assert reasons["task_6"].startswith("2 hosts (an item spans hosts only on a pool of session servers")
    for task in ALL:
        assert ("web search and browsing tools for the agent" in reasons[task]) == (task in WEB), task
        assert ("an API model its code calls, OpenAI or Azure" in reasons[task]) == (task in API_MODEL), task
        assert "dataset" not in reasons[task]
    assert (
        reasons["task_19"]
        == "an API model its code calls, OpenAI or Azure (an OpenAI-compatible endpoint: --innovator-task-api-url "
        "URL, its key in $OPENAI_API_KEY)"
    )


def test_items_the_host_can_hold_run_with_their_dataset_and_are_graded_by_its_evaluation(
    pytester: pytest.Pytester, suite: Path
) -> None:
    dataset = make_dataset(pytester.path / "dataset")
    result = run(pytester, "--innovator-dataset", f"innovatorbench={dataset}", "--innovator-gpus", "0,1,2,3,4,5,6,7")
    result.assert_outcomes(skipped=10, failed=10)
    assert set(skip_reasons(result)) == ALL - ON_ONE_HOST_WITH_EIGHT_GPUS
    for task in ON_ONE_HOST_WITH_EIGHT_GPUS:  # the null agent writes no answer: the evaluation's 0
        result.stdout.fnmatch_lines([f"*final score 0.00 is below the pass score 1 (task {task}, agent null@1*"])
        result.stdout.fnmatch_lines([f"  {task}: 0 = 0"])
    # GPUs named by hand: their memory is not known, and the run says it did not check it.
    result.stdout.fnmatch_lines(
        ["*GPU memory not checked: --innovator-gpus names the GPUs by hand (a task needs 80 GiB*"]
    )


@pytest.mark.parametrize(
    ("gib", "outcome"),
    [
        ("40,40,40,40,40,40,40,40", "skipped"),
        ("79.6,79.6,79.6,79.6,79.6,79.6,79.6,79.6", "runs"),  # an "80 GB" H100, as NVML reports it
        ("79.6,79.6,79.6,79.6,79.6,79.6,79.6,40", "skipped"),
    ],
)
def test_gpu_memory_as_nvml_reports_it(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch, gib: str, outcome: str
) -> None:
    fake_gpus(monkeypatch, pytester.path / "nvml.json", [float(g) for g in gib.split(",")])
    dataset = make_dataset(pytester.path / "dataset", 5)
    result = run(pytester, "-k", "task_5", "--innovator-dataset", f"innovatorbench={dataset}")
    result.assert_outcomes(**{"failed" if outcome == "runs" else outcome: 1})
    if outcome == "skipped":
        sizes = ", ".join(f"{i}: {float(g):.1f}".removesuffix(".0") + " GiB" for i, g in enumerate(gib.split(",")))
        usable = gib.split(",").count("79.6")
        assert skip_reasons(result)["task_5"] == (
            f"8 GPUs with 80 GiB each, this host has {usable} such ({sizes}): name them with --innovator-gpus"
        )
    else:
        result.stdout.fnmatch_lines(["*final score 0.00 is below the pass score 1 (task task_5, agent null@1*"])
        assert "GPU memory not checked" not in result.stdout.str()


# --- the dataset -------------------------------------------------------------------------------


def test_a_dataset_that_lacks_a_task_file_is_an_error_naming_the_path(pytester: pytest.Pytester, suite: Path) -> None:
    dataset = make_dataset(pytester.path / "dataset", 5, 7, 14)
    (dataset / "conda" / "vllm" / "conda.tar").unlink()  # tasks 5 and 7
    shutil.rmtree(dataset / "gym" / "task_14" / "data")
    result = run(
        pytester,
        "-k",
        "task_5 or task_7 or task_14 or task_13",
        "--innovator-dataset",
        f"innovatorbench={dataset}",
        "--innovator-gpus",
        "0,1,2,3,4,5,6,7",
    )
    result.assert_outcomes(errors=4)
    errors = setup_errors(result)
    for task in ("task_5", "task_7"):
        assert (
            f"innovatorbench/{task}/task.toml: dataset.environment: {dataset}/conda/vllm/conda.tar not found in "
            "dataset 'innovatorbench'"
        ) in errors[task]
    assert f"task_14/task.toml: dataset.workspace.data: {dataset}/gym/task_14/data not found" in errors["task_14"]
    task_13 = errors["task_13"]  # not in the dataset at all: every path it takes is named
    for field in ("instruction", "environment", "evaluation", "hint", "workspace.task", "workspace.data"):
        assert f"task_13/task.toml: dataset.{field}: {dataset}/" in task_13, field
    assert "Traceback" not in "\n".join(errors.values())


def test_bad_dataset_sections_are_collection_errors_naming_the_field(pytester: pytest.Pytester, suite: Path) -> None:
    toml = suite / "task_14" / "task.toml"
    toml.write_text(toml.read_text().replace('name = "innovatorbench"', 'name = "Inno-Bench"'))
    toml = suite / "task_15" / "task.toml"
    text = toml.read_text().replace('evaluation = "evaluations/task_15"', 'evaluation = "../evaluations/task_15"')
    toml.write_text(text.replace("[dataset.workspace]", 'zip = "x.zip"\n\n[dataset.workspace]'))
    result = run(pytester, "--collect-only", "-q")
    result.assert_outcomes(errors=2)
    assert collected(result) == ALL - {"task_14", "task_15"}
    result.stdout.fnmatch_lines_random(
        [
            "*innovatorbench/task_14/task.toml: dataset.name: must be lower case letters, digits and _*'Inno-Bench'",
            "*innovatorbench/task_15/task.toml: dataset.evaluation: paths are relative to the dataset's root and stay "
            "inside it, got '../evaluations/task_15'",
            "*innovatorbench/task_15/task.toml: dataset.zip: unknown key*",
        ]
    )


def test_the_synthetic_dataset_holds_every_file_the_tasks_take(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "dataset")
    for n in range(1, 21):
        load_task(SUITE / f"task_{n}").with_dataset(dataset)  # raises naming what is missing
    size = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())
    assert size < 64 * 1024


def test_the_synthetic_evaluation_scores_the_workspace_in_the_published_shape(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "dataset", 14)
    outputs = tmp_path / "workspace" / "data" / "outputs"
    outputs.mkdir(parents=True)
    (outputs / "answer.txt").write_text("80")
    (outputs / "extra.txt").write_text("15")
    script = textwrap.dedent(
        """
        import sys
        dataset, workspace = sys.argv[1:]
        sys.path.insert(0, dataset)
        from evaluations.task_14.task.config import TaskConfig
        from evaluations.task_14.task.evaluation import TaskBenchmark
        results = TaskBenchmark(TaskConfig(eval_workspace=dataset + "/evaluations", workspace=workspace)).validate()
        print([r.to_dict()["eval_results"]["score"] for r in results])
        """
    )
    argv = [sys.executable, "-c", script, str(dataset), str(tmp_path / "workspace")]
    scores = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert scores.strip() == "[10.0, 80.0, 15.0]"  # 70 up to the advanced target (60), 20 x 20/40 past it


# --- the --innovator-dataset option ------------------------------------------------------------

SHOW_DATASETS = """
from pytest_innovator.plugin.options import settings_key

def pytest_report_header(config):
    return "datasets: " + repr({name: str(path) for name, path in config.stash[settings_key].datasets.items()})
"""


def test_datasets_from_the_command_line_the_environment_and_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c", "d"):
        (pytester.path / name).mkdir()
    pytester.makeconftest(SHOW_DATASETS)
    pytester.makeini("[pytest]\ninnovator_datasets =\n    first=a\n    second = b\n    third=a\n")
    monkeypatch.setenv("INNOVATOR_DATASET_SECOND", str(pytester.path / "c"))
    monkeypatch.setenv("INNOVATOR_DATASET_THIRD", "c")
    result = pytester.runpytest_subprocess("--innovator-dataset", "third=d", "--innovator-dataset=fourth=a")
    # ini < environment < command line, for each NAME; relative paths from where pytest runs
    expected = {
        name: str(pytester.path / d) for name, d in [("first", "a"), ("second", "c"), ("third", "d"), ("fourth", "a")]
    }
    result.stdout.fnmatch_lines([f"datasets: {expected!r}"])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--innovator-dataset", "innovatorbench"],
            {},
            "invalid --innovator-dataset 'innovatorbench' (from command line --innovator-dataset): must be NAME=VALUE",
        ),
        (
            ["--innovator-dataset", "ib=nowhere"],
            {},
            "invalid --innovator-dataset 'ib=nowhere' (from command line "
            "--innovator-dataset): must be an existing directory",
        ),
        (
            [],
            {"INNOVATOR_DATASET_IB": "nowhere"},
            "invalid --innovator-dataset 'ib=nowhere' (from environment "
            "variable INNOVATOR_DATASET_IB): must be an existing directory",
        ),
        (
            ["--innovator-dataset", "Inno-Bench=."],
            {},
            "invalid --innovator-dataset name 'Inno-Bench' (from command "
            "line --innovator-dataset): must be lower case letters, digits and _",
        ),
    ],
)
def test_a_bad_dataset_option_is_a_usage_error_naming_where_it_came_from(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], message: str
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_task_that_requires_web_tools_runs_once_a_search_provider_is_configured(
    pytester: pytest.Pytester, suite: Path
) -> None:
    dataset = make_dataset(pytester.path / "dataset", 8)
    (pytester.path / "corpus.jsonl").write_text('{"url": "https://example.org/a", "title": "A", "text": "a"}\n')
    common = ("-k", "task_8", "--innovator-dataset", f"innovatorbench={dataset}", "--innovator-gpus", "0,1,2,3,4,5,6,7")
    skipped = run(pytester, *common)
    assert skip_reasons(skipped)["task_8"].startswith(
        "web search and browsing tools for the agent (name their provider with --innovator-search-provider"
    )
    offline = ("--innovator-search-provider", "offline", "--innovator-offline-corpus", "corpus.jsonl")
    result = run(pytester, *common, *offline)
    result.assert_outcomes(failed=1)  # the null agent's answer: the evaluation's 0
    result.stdout.fnmatch_lines(["*final score 0.00 is below the pass score 1 (task task_8, agent null@1*"])
