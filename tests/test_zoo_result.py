"""benchmarks/zoo_result.py: a zoo entry trained, scored and kept as JSON, whose recorded commands reproduce it."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "zoo_result.py"


def run_python(*arguments: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout's rate_sb3, not an installed one
    return subprocess.run([sys.executable, *arguments], cwd=REPO, env=env, capture_output=True, text=True)


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return run_python(str(SCRIPT), *arguments)


def test_quick_run_writes_a_result_that_its_commands_reproduce(tmp_path):
    out = tmp_path / "zoo_TMaze-v0_rate_seed3_quick.json"
    completed = run_script(
        "--env", "TMaze-v0", "--algo", "rate", "--seed", "3", "--quick", "--log-folder", str(tmp_path / "logs"),
        "--out", str(out),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == result
    assert (result["env"], result["algo"], result["seed"], result["quick"]) == ("TMaze-v0", "rate", 3, True)
    assert len(result["commit"]["hash"]) == 40 and isinstance(result["commit"]["dirty"], bool)
    train = shlex.split(result["train_command"])
    assert train[1:5] == ["zoo/train.py", "--algo", "rate", "--env"] and train[train.index("--seed") + 1] == "3"
    assert int(train[train.index("-n") + 1]) == result["n_timesteps"] > 0
    assert (REPO / result["run_folder"] / "TMaze-v0.zip").is_file()
    assert result["train_seconds"] > 0 and result["eval_seconds"] > 0 and result["online"] is False

    entry = yaml.safe_load((REPO / "hyperparams" / "rate.yml").read_text())["TMaze-v0"]
    (evaluation,) = result["evaluations"]
    assert evaluation["env_kwargs"] == entry["env_kwargs"]
    score = evaluation["result"]
    assert score["env"] == "TMaze-v0" and score["episodes"] == 10 and 0.0 <= score["success_rate"] <= 1.0
    corridor = entry["env_kwargs"]["corridor_length"]
    assert min(corridor) + 2 <= score["mean_length"] <= max(corridor) + 2  # T = L + 2 whatever the policy does

    rerun = run_python(*shlex.split(evaluation["command"])[1:])
    again = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in score.items() if k != "seconds"}


def test_an_env_without_an_entry_is_refused_before_training(tmp_path):
    completed = run_script("--env", "CartPole-v1", "--algo", "rate", "--log-folder", str(tmp_path))
    assert completed.returncode != 0
    assert "rate.yml has no entry for --env CartPole-v1" in completed.stderr and "TMaze-v0" in completed.stderr
    assert not any(tmp_path.iterdir())


def test_cut_episodes_are_for_smoke_runs_only(tmp_path):
    completed = run_script(
        "--env", "TMaze-v0", "--algo", "rate", "--max-episode-steps", "5", "--log-folder", str(tmp_path),
    )  # fmt: skip
    assert completed.returncode != 0 and "cuts the episodes of a smoke run: use it with --quick" in completed.stderr
    assert not any(tmp_path.iterdir())


def test_params_change_the_entry_and_are_kept_with_the_result(tmp_path):
    from rate_sb3 import RATE

    out = tmp_path / "result.json"
    completed = run_script(
        "--env", "TMaze-v0", "--algo", "rate", "--quick", "--params", "burn_in_segments:0", "n_pretrain_steps:7",
        "--log-folder", str(tmp_path / "logs"), "--out", str(out),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["params"] == {"burn_in_segments": 0, "n_pretrain_steps": 7}
    train = shlex.split(result["train_command"])
    assert {"burn_in_segments:0", "n_pretrain_steps:7"} <= set(train[train.index("-params") :])
    model = RATE.load(Path(result["run_folder"]) / "TMaze-v0.zip")
    assert model.burn_in_segments == 0  # the entry leaves RATE's default, 2
    assert model.n_pretrain_steps == result["n_pretrain_steps"] == 7  # the budget recorded is the one trained


def test_a_kept_run_is_reused_only_while_the_entry_trains_for_its_budget(tmp_path, monkeypatch, load_benchmark):
    zoo_result = load_benchmark("zoo_result")
    monkeypatch.setattr(zoo_result, "RESULTS", tmp_path)
    config = REPO / "hyperparams" / "rate.yml"
    entry = yaml.safe_load(config.read_text())["TMaze-v0"]
    path = zoo_result.rate_run_file("TMaze-v0", config, None, 0, False)
    kept = {"n_timesteps": entry["n_timesteps"], "online": False, "n_pretrain_steps": None, "evaluations": []}
    path.write_text(json.dumps(kept))
    assert zoo_result.run_rate_once("TMaze-v0", config, None, 0, False) == kept  # nothing trained

    older = {**kept, "n_timesteps": entry["n_timesteps"] // 2}  # kept from before the entry doubled its budget
    path.write_text(json.dumps(older))
    with pytest.raises(SystemExit, match=r"trained for .*'n_timesteps': \d+.* now trains for .*move the file aside"):
        zoo_result.run_rate_once("TMaze-v0", config, None, 0, False)
    assert json.loads(path.read_text()) == older


def test_params_that_cannot_be_passed_are_refused_before_training(tmp_path):
    for items, message in [
        (["burn_in_segments"], "--params 'burn_in_segments': expected KEY:VALUE"),
        (["burn_in_segments:two"], "--params 'burn_in_segments:two': expected KEY:VALUE"),
        (["mode:'dt'"], "pass --mode instead"),
    ]:
        completed = run_script("--env", "TMaze-v0", "--algo", "rate", "--log-folder", str(tmp_path), "--params", *items)
        assert completed.returncode != 0 and message in completed.stderr
        assert not any(tmp_path.iterdir())


def test_recurrent_ppo_quick_run_is_scored_through_its_normalisation(tmp_path):
    out = tmp_path / "result.json"
    completed = run_script(
        "--env", "CartPoleNoVel-v1", "--algo", "ppo_lstm", "--quick", "--log-folder", str(tmp_path / "logs"),
        "--out", str(out),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    (evaluation,) = json.loads(out.read_text())["evaluations"]
    assert evaluation["normalized"] is True  # the entry has normalize: true
    score = evaluation["result"]
    assert score["env"] == "CartPoleNoVel-v1" and score["episodes"] == 10
    assert 1 <= score["mean_length"] <= 500 and score["mean_return"] == score["mean_length"]  # +1 a step
