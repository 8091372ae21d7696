"""D4RL-style MuJoCo datasets (rate_sb3.d4rl, benchmarks/mujoco_datasets.py): the replay buffer's episodes, the
Minari round trip, the builder's four datasets, RATE on Hopper from them, and the bad inputs. Nothing here trains
SAC: its replay buffers are filled by the random steps before ``learning_starts``."""

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from rate_sb3 import RATE
from rate_sb3.d4rl import (
    D4RL_REFERENCE_SCORES,
    dataset_id,
    env_name,
    normalized_score,
    record_transitions,
    replay_buffer_episodes,
)
from rate_sb3.data import load_demonstrations, load_minari, save_minari
from rate_sb3.episode import Episode
from rate_sb3.evaluate import main as evaluate_main

pytest.importorskip("mujoco")
minari = pytest.importorskip("minari")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REPO = Path(__file__).resolve().parents[1]


class ActionLog(gym.Wrapper):
    """Remembers every action the env received."""

    actions: list[np.ndarray] = []

    def step(self, action):
        ActionLog.actions.append(np.array(action, dtype=np.float32))
        return super().step(action)


def sac_with_random_steps(env_id: str, n_steps: int, resume_after: int | None = None) -> SAC:
    """A SAC agent whose replay buffer holds ``n_steps`` random steps (no gradient step: learning has not started);
    with ``resume_after``, the run is cut there and resumed as from a checkpoint (its env is reset)."""
    ActionLog.actions = []
    model = SAC("MlpPolicy", ActionLog(gym.make(env_id)), learning_starts=10**6, buffer_size=10_000, seed=0)
    first = resume_after or n_steps
    model.learn(first)
    if resume_after is not None:
        model._last_obs = None  # what SAC.load leaves: the next learn resets the env
        model.learn(n_steps - first, reset_num_timesteps=False)
    return model


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari_datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def assert_same_episodes(loaded: list[Episode], expected: list[Episode]) -> None:
    assert len(loaded) == len(expected)
    for got, want in zip(loaded, expected):
        np.testing.assert_array_equal(got.observations, want.observations)
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_array_equal(got.rewards, want.rewards)
        assert (got.terminated, got.truncated) == (want.terminated, want.truncated)


def test_normalised_scores_and_names():
    scores = D4RL_REFERENCE_SCORES["hopper"]
    np.testing.assert_allclose(normalized_score("Hopper-v5", [scores.random, scores.expert]), [0.0, 100.0])
    assert env_name("rate_sb3/walker2d-medium-replay-v0") == "walker2d"
    assert dataset_id("halfcheetah", "medium-expert") == "rate_sb3/halfcheetah/medium-expert-v0"
    with pytest.raises(ValueError, match="not one of D4RL's MuJoCo envs"):
        normalized_score("CartPole-v1", 500.0)
    with pytest.raises(ValueError, match="unknown dataset kind 'random'"):
        dataset_id("hopper", "random")
    with pytest.raises(ValueError, match="unknown env name 'ant'"):
        dataset_id("ant", "medium")


def replay(env_id: str, episodes: list[Episode], seed: int) -> None:
    """Play the episodes' actions again as SB3's VecEnv played them (the first reset seeded) and compare."""
    env = gym.make(env_id)
    for index, episode in enumerate(episodes):
        observation, _ = env.reset(seed=seed if index == 0 else None)
        np.testing.assert_allclose(episode.observations[0], observation, atol=1e-6)
        for step, action in enumerate(episode.actions):
            observation, reward, terminated, truncated, _ = env.step(action)
            np.testing.assert_allclose(episode.observations[step + 1], observation, atol=1e-5)
            assert episode.rewards[step] == pytest.approx(reward, abs=1e-5)
        assert (episode.terminated, episode.truncated) == (terminated, truncated)


def test_replay_buffer_episodes_are_the_played_episodes():
    model = sac_with_random_steps("Hopper-v5", 400)
    episodes = replay_buffer_episodes(model.replay_buffer, 400, model)
    assert len(episodes) >= 5  # random Hopper falls within tens of steps
    steps = sum(episode.length for episode in episodes)
    assert 300 < steps <= 400  # only the unfinished last episode is dropped
    assert all(episode.terminated for episode in episodes)
    replay("Hopper-v5", episodes, seed=0)


def test_replay_buffer_actions_are_the_env_actions_and_time_limits_truncate():
    model = sac_with_random_steps("Pendulum-v1", 450)  # actions in [-2, 2]; 200-step episodes
    episodes = replay_buffer_episodes(model.replay_buffer, 450, model)
    assert [episode.length for episode in episodes] == [200, 200]
    assert all(episode.truncated and not episode.terminated for episode in episodes)
    np.testing.assert_allclose(np.concatenate([e.actions for e in episodes]), ActionLog.actions[:400], atol=1e-5)
    assert np.abs(episodes[0].actions).max() > 1.5
    replay("Pendulum-v1", episodes, seed=0)


def test_a_resumed_run_splits_its_episode_where_the_env_was_reset():
    model = sac_with_random_steps("Pendulum-v1", 400, resume_after=150)
    episodes = replay_buffer_episodes(model.replay_buffer, 400, model)
    assert [episode.length for episode in episodes] == [150, 200]
    assert episodes[0].truncated and not episodes[0].terminated


def test_replay_buffer_refuses_more_steps_than_it_holds():
    model = sac_with_random_steps("Pendulum-v1", 50)
    with pytest.raises(ValueError, match="holds 50"):
        replay_buffer_episodes(model.replay_buffer, 60, model)


def test_replay_buffer_of_several_envs_is_refused():
    model = SAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2), learning_starts=10**6, buffer_size=1_000)
    model.learn(20)
    with pytest.raises(ValueError, match="single-env buffers; this one has 2 envs"):
        replay_buffer_episodes(model.replay_buffer, 10, model)


def test_record_transitions_gathers_whole_episodes():
    model = SAC("MlpPolicy", "Hopper-v5", seed=0)
    episodes = record_transitions(model, "Hopper-v5", 150, seed=3, n_envs=2)
    assert sum(episode.length for episode in episodes) >= 150
    assert all(episode.terminated or episode.truncated for episode in episodes)


def test_minari_round_trip_keeps_episodes_and_reference_scores(minari_root):
    model = sac_with_random_steps("Hopper-v5", 200)
    episodes = replay_buffer_episodes(model.replay_buffer, 200, model)
    scores = D4RL_REFERENCE_SCORES["hopper"]
    save_minari(
        episodes, "rate_sb3/hopper/test-v0", "Hopper-v5", ref_min_score=scores.random, ref_max_score=scores.expert
    )
    assert_same_episodes(load_minari("rate_sb3/hopper/test-v0"), episodes)
    dataset = minari.load_dataset("rate_sb3/hopper/test-v0")
    assert minari.get_normalized_score(dataset, np.array([scores.expert])) == pytest.approx(1.0)
    with pytest.raises(FileExistsError, match="rate_sb3/hopper/test-v0"):
        save_minari(episodes, "rate_sb3/hopper/test-v0", "Hopper-v5")


def test_writing_no_episodes_is_refused(minari_root):
    with pytest.raises(ValueError, match="No episodes to write to Minari dataset 'rate_sb3/hopper/empty-v0'"):
        save_minari([], "rate_sb3/hopper/empty-v0", "Hopper-v5")
    assert not minari_root.exists()


def test_an_interrupted_minari_write_leaves_no_dataset(minari_root, monkeypatch):
    model = sac_with_random_steps("Hopper-v5", 100)
    episodes = replay_buffer_episodes(model.replay_buffer, 100, model)

    def fail(dataset_id, buffers, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", fail)
    with pytest.raises(KeyboardInterrupt):
        save_minari(episodes, "rate_sb3/hopper/cut-v0", "Hopper-v5")
    assert list(minari_root.iterdir()) == []


def test_builder_writes_the_four_datasets_from_its_checkpoints(minari_root, tmp_path, load_benchmark):
    builder = load_benchmark("mujoco_datasets")
    model = sac_with_random_steps("Hopper-v5", 300)
    model.save(tmp_path / "sac_latest.zip")
    model.save(tmp_path / "sac_medium.zip")
    model.save_replay_buffer(tmp_path / "sac_latest_replay.pkl")
    progress = {
        "evaluations": [{"steps": 300, "mean_return": 20.0}],
        "medium_steps": 200,
        "medium_return": 15.0,
        "train_seconds": 1.0,
    }
    args, kinds = (
        argparse.Namespace(quick=False, transitions=60),
        ["medium", "medium-replay", "expert", "medium-expert"],
    )
    # as the builder's main does: the medium datasets first, the expert ones in a later call
    builder.write_datasets(tmp_path, "Hopper-v5", "hopper", progress, args, kinds[:2])
    builder.write_datasets(tmp_path, "Hopper-v5", "hopper", progress, args, kinds[2:])
    loaded = {kind: load_minari(dataset_id("hopper", kind)) for kind in kinds}
    assert sum(episode.length for episode in loaded["medium"]) >= 60
    assert_same_episodes(loaded["medium-expert"], loaded["medium"] + loaded["expert"])
    assert sum(episode.length for episode in loaded["medium-replay"]) <= 200
    assert_same_episodes(loaded["medium-replay"], replay_buffer_episodes(model.replay_buffer, 200, model))
    recorded = json.loads((tmp_path / "progress.json").read_text())["datasets"]
    assert recorded[dataset_id("hopper", "medium")]["episodes"] == len(loaded["medium"])
    metadata = minari.load_dataset(dataset_id("hopper", "expert")).storage.metadata
    assert "sac_latest.zip (sha256 " in metadata["description"]
    builder.write_datasets(tmp_path, "Hopper-v5", "hopper", progress, args, kinds)  # exists: left as it is


def test_offline_summary_compares_rate_with_dt_per_pair_and_prints_the_table(load_benchmark):
    offline = load_benchmark("mujoco_offline")
    scores = {
        "hopper-medium": {"rate": [30.0, 40.0], "dt": [20.0, 30.0], "bc": [10.0, 10.0], "iql": [5.0, 7.0]},
        "walker2d-medium": {"rate": [10.0], "dt": [12.0], "bc": [], "iql": []},
    }
    summary = offline.summarise(scores)
    hopper = summary["pairs"]["hopper-medium"]
    assert hopper["rate"] == 35.0 and hopper["sem"]["rate"] == pytest.approx(5.0) and hopper["n_seeds"] == 2
    assert summary["average"] == {"rate": 35.0, "dt": 25.0, "bc": 10.0, "iql": 6.0, "pairs": 1}
    assert summary["rate_at_least_dt"] == {"pairs": 1, "of": 2}
    assert summary["average_rate_dt"] == {"rate": 22.5, "dt": 18.5}
    table = offline.markdown_table(summary).splitlines()
    assert table[2] == "| hopper-medium | 35.0 +- 5.0 | - | 25.0 +- 5.0 | 10.0 +- 0.0 | 6.0 +- 1.0 | 2 | 77.4 / 67.6 |"
    assert table[3] == "| walker2d-medium | 10.0 | - | 12.0 | - | - | 1 | 80.7 / 74.0 |"
    assert table[-1].startswith("| average (1 pairs) | 35.0 | - | 25.0 | 10.0 | 6.0 |")


class _CountingModel:
    """Stands in for RATE in ``mujoco_finetune.run_rate``: its files hold its env steps."""

    def __init__(self, *args, **kwargs) -> None:
        self.num_timesteps = 0

    @classmethod
    def load(cls, path, env=None) -> "_CountingModel":
        model = cls()
        model.num_timesteps = int(Path(path).read_text())
        return model

    def pretrain(self) -> None:
        pass

    def learn(self, steps: int, reset_num_timesteps: bool) -> None:
        self.num_timesteps += steps

    def save(self, path) -> None:
        Path(path).write_text(str(self.num_timesteps))

    def save_replay_buffer(self, path) -> None:
        Path(path).touch()

    def load_replay_buffer(self, path) -> None:
        pass


def test_finetune_scores_and_times_each_new_rate_run_and_resumes_without_rescoring(
    load_benchmark, tmp_path, monkeypatch
):
    finetune = load_benchmark("mujoco_finetune")
    scored = []

    def score(model, episodes: int) -> float:
        scored.append(model.num_timesteps)
        return float(len(scored))

    monkeypatch.setattr(finetune, "score", score)
    monkeypatch.setattr(finetune, "RATE", _CountingModel)
    monkeypatch.setattr(finetune, "make_vec_env", lambda *args, **kwargs: None)
    args = argparse.Namespace(seed=0, quick=True, chunk=10, episodes=1)
    result = {"pretrained": 23.1, "finetuned": 30.7}  # an earlier run's, kept in the results file
    finetune.run_rate(tmp_path / "rate", 20, args, result)
    assert scored == [0, 10, 20, 20]  # pretrained, the curve after each chunk, the final score
    assert result == {"pretrained": 1.0, "finetuned": 4.0, "rate_curve": [[10, 2.0], [20, 3.0]]}
    curve_file = tmp_path / "rate" / "curve.json"
    cut = json.loads(curve_file.read_text())  # cut after scoring the chunk to 30, before its checkpoint
    curve_file.write_text(json.dumps({"curve": cut["curve"] + [[30, 99.0]]}))
    finetune.run_rate(tmp_path / "rate", 30, args, result)  # resumed: learns on, its pretrained score is kept
    assert scored == [0, 10, 20, 20, 30, 30]
    assert result == {"pretrained": 1.0, "finetuned": 6.0, "rate_curve": [[10, 2.0], [20, 3.0], [30, 5.0]]}
    assert finetune.add_seconds(tmp_path / "rate", 5.0) == 5.0 and finetune.add_seconds(tmp_path / "rate", 2.0) == 7.0
    (tmp_path / "rate" / "model.zip").unlink()  # a new run in the same folder is scored and timed anew
    finetune.run_rate(tmp_path / "rate", 10, args, result)
    assert result == {"pretrained": 7.0, "finetuned": 9.0, "rate_curve": [[10, 8.0]]}
    assert finetune.add_seconds(tmp_path / "rate", 1.0) == 1.0


def tiny_hopper_rate(**kwargs) -> RATE:
    """A small RATE on ``rate_sb3/hopper-medium-v0``, its dataset 300 random steps of SAC (saved first)."""
    model = sac_with_random_steps("Hopper-v5", 300)
    save_minari(replay_buffer_episodes(model.replay_buffer, 300, model), "rate_sb3/hopper/medium-v0", "Hopper-v5")
    architecture = dict(context_len=5, n_segments=2, d_model=16, n_layers=1, n_heads=1, n_mem_tokens=2, batch_size=4)
    return RATE(
        "RATEPolicy",
        "rate_sb3/hopper-medium-v0",
        demonstrations="rate_sb3/hopper/medium-v0",
        return_scale=0.01,
        seed=0,
        **architecture,
        **kwargs,
    )


def test_rate_pretrains_on_a_hopper_dataset_and_is_scored_normalised(minari_root, tmp_path):
    rate = tiny_hopper_rate(online=False)
    rate.pretrain(2)
    rate.save(tmp_path / "hopper_rate.zip")
    arguments = ["--model", str(tmp_path / "hopper_rate.zip"), "--env", "rate_sb3/hopper-medium-v0", "--episodes", "2"]
    result = evaluate_main(arguments)
    assert result["normalized_score"] == pytest.approx(float(normalized_score("hopper", result["mean_return"])))


def test_a_dataset_of_another_env_is_refused_naming_it(minari_root):
    model = sac_with_random_steps("Pendulum-v1", 250)
    save_minari(replay_buffer_episodes(model.replay_buffer, 250, model), "rate_sb3/pendulum/test-v0", "Pendulum-v1")
    with pytest.raises(ValueError, match="rate_sb3/pendulum/test-v0"):
        RATE("RATEPolicy", "Hopper-v5", demonstrations="rate_sb3/pendulum/test-v0", online=False).pretrain(1)


def test_a_dataset_with_nan_is_refused_naming_it(minari_root):
    model = sac_with_random_steps("Hopper-v5", 200)
    episodes = replay_buffer_episodes(model.replay_buffer, 200, model)
    episodes[1].rewards[3] = np.nan
    save_minari(episodes, "rate_sb3/hopper/nan-v0", "Hopper-v5")
    with pytest.raises(ValueError, match=r"rate_sb3/hopper/nan-v0.*episode 1.*NaN"):
        RATE("RATEPolicy", "Hopper-v5", demonstrations="rate_sb3/hopper/nan-v0", online=False).pretrain(1)


def test_a_missing_dataset_says_how_to_build_it(minari_root):
    with pytest.raises(FileNotFoundError, match=r"mujoco_datasets.py --env walker2d"):
        load_demonstrations("rate_sb3/walker2d/medium-v0")


def test_the_zoo_entry_of_a_pair_passes_the_checks_once_its_dataset_exists(minari_root):
    from rate_sb3.zoo import prepare_train_argv

    model = sac_with_random_steps("Hopper-v5", 200)
    save_minari(
        replay_buffer_episodes(model.replay_buffer, 200, model), "rate_sb3/hopper/medium-replay-v0", "Hopper-v5"
    )
    argv = ["train.py", "--algo", "rate", "--env", "rate_sb3/hopper-medium-replay-v0"]
    assert prepare_train_argv(argv, REPO / "hyperparams")[-1].endswith("rate.yml")
    paper = str(REPO / "hyperparams" / "rate_paper_mujoco.yml")  # the GPU scale, checked the same way
    assert prepare_train_argv([*argv, "-conf", paper], REPO / "hyperparams")[-1] == paper


def test_finetune_diagnosis_without_a_finetuning_run_names_the_command(load_benchmark, tmp_path, monkeypatch):
    diagnosis = load_benchmark("mujoco_finetune_diagnosis")
    monkeypatch.setattr(diagnosis, "RUN", tmp_path / "rate")
    monkeypatch.setattr(sys, "argv", ["mujoco_finetune_diagnosis.py"])
    with pytest.raises(SystemExit, match="mujoco_finetune.py --runs rate"):
        diagnosis.main()


def test_finetune_diagnosis_control_keeps_the_pretrained_score_and_updates_change_it(
    load_benchmark, minari_root, tmp_path, monkeypatch
):
    rate = tiny_hopper_rate(train_freq=50, gradient_steps=1)
    run = tmp_path / "rate"
    run.mkdir()
    rate.pretrain(2)
    rate.save(run / "pretrained.zip")
    rate.learn(100)  # online: episodes of the stochastic policy join the buffer
    rate.save_replay_buffer(run / "replay.pkl")
    assert len(rate.replay_buffer.online) > 0
    diagnosis = load_benchmark("mujoco_finetune_diagnosis")
    monkeypatch.setattr(diagnosis, "RUN", run)
    pretrained = diagnosis.score(RATE.load(run / "pretrained.zip"), 100.0, 2)
    assert diagnosis.after_updates(0.5, 0.0, 3, 100.0, 2) == pretrained
    assert diagnosis.after_updates(0.5, 0.05, 3, 100.0, 2) != pretrained
