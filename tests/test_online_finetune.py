"""benchmarks/online_finetune.py: every stored online result is what a flag combination of the script writes, and
``run_all.py`` reruns each of them."""

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def online_finetune(load_benchmark):
    return load_benchmark("online_finetune")


# The command line of each stored file (RESULTS.md section 3); one seed of each setting trained the baseline.
SKIP = "--skip-baseline"
STORED_RUNS = {
    "online_cartpole_seed0.json": "--task cartpole",
    "online_cartpole_seed1.json": f"--task cartpole --seed 1 {SKIP}",
    "online_cartpole_seed2.json": f"--task cartpole --seed 2 {SKIP}",
    "online_cartpole-scratch_seed0.json": "--task cartpole-scratch",
    "online_cartpole-scratch_seed1.json": f"--task cartpole-scratch --seed 1 {SKIP}",
    "online_cartpole-scratch_seed2.json": f"--task cartpole-scratch --seed 2 {SKIP}",
    "online_cartpole-scratch_nocritic_20gradsteps_seed0.json": (
        "--task cartpole-scratch --no-critic --gradient-steps 20"
    ),
    "online_tmaze_seed0.json": f"--task tmaze {SKIP}",
    "online_tmaze_seed1.json": f"--task tmaze --seed 1 {SKIP}",
    "online_tmaze_seed2.json": f"--task tmaze --seed 2 {SKIP}",
    "online_tmaze_50gradsteps_seed0.json": "--task tmaze --gradient-steps 50",
    "online_tmaze_50gradsteps_seed1.json": f"--task tmaze --gradient-steps 50 --seed 1 {SKIP}",
    "online_tmaze_50gradsteps_seed2.json": f"--task tmaze --gradient-steps 50 --seed 2 {SKIP}",
    "online_tmaze-scratch_seed0.json": f"--task tmaze-scratch {SKIP}",
}


def test_every_stored_online_file_has_a_command():
    stored = {p.name for p in (BENCHMARKS / "results").glob("online_*seed*.json") if not p.stem.endswith("_quick")}
    assert stored == set(STORED_RUNS)


@pytest.mark.parametrize("name", sorted(STORED_RUNS))
def test_stored_files_are_named_by_the_flags_that_write_them(online_finetune, name):
    args = online_finetune.parse_args(STORED_RUNS[name].split())
    path = online_finetune.result_path(args)
    assert path == BENCHMARKS / "results" / name
    stored = json.loads(path.read_text())
    assert (stored["task"], stored["seed"]) == (args.task, args.seed)
    assert (stored["recurrent_ppo"] is None) == args.skip_baseline


def test_run_all_reruns_every_stored_online_file(online_finetune, load_benchmark):
    run_all = load_benchmark("run_all")

    def outcome(command: list[str]) -> tuple[str, bool]:
        args = online_finetune.parse_args(command)
        return online_finetune.result_path(args).name, args.skip_baseline

    stored = {outcome(command.split()) for command in STORED_RUNS.values()}
    full = {outcome(command[1:]) for command in run_all.FULL if command[0] == "online_finetune.py"}
    assert stored <= full


def test_variant_flags_change_the_settings(online_finetune):
    task = online_finetune.TASKS["tmaze"]
    default = online_finetune.rate_kwargs(task, online_finetune.parse_args(["--task", "tmaze"]))
    variant = online_finetune.rate_kwargs(
        task, online_finetune.parse_args(["--task", "tmaze", "--no-critic", "--gradient-steps", "50"])
    )
    assert default["gradient_steps"] == 100 and default["advantage_temperature"] == 0.1
    assert variant["gradient_steps"] == 50 and not set(online_finetune.CRITIC_KEYS) & set(variant)
    assert {k: v for k, v in default.items() if k not in (*online_finetune.CRITIC_KEYS, "gradient_steps")} == {
        k: v for k, v in variant.items() if k != "gradient_steps"
    }
    # the task's own value is no variant
    same = online_finetune.parse_args(["--task", "tmaze", "--gradient-steps", "100"])
    assert online_finetune.result_path(same).name == "online_tmaze_seed0.json"


def test_bad_variant_flags_are_refused(online_finetune, capsys):
    for argv, message in (
        (["--task", "cartpole", "--no-critic"], "--no-critic: task cartpole does not use the critic"),
        (["--task", "tmaze", "--gradient-steps", "0"], "--gradient-steps 0: must be >= 1"),
    ):
        with pytest.raises(SystemExit):
            online_finetune.parse_args(argv)
        assert message in capsys.readouterr().err
