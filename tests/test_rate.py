"""RATE: pretraining learns, save/load round trips, logging, callbacks, and every bad-input path."""

import dataclasses
import inspect
import json
import re
import subprocess
import sys
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.collect import collect_episodes
from rate_sb3.data import Episode, save_episodes
from rate_sb3.envs import make_expert
from rate_sb3.evaluate import evaluate
from rate_sb3.objective import window_loss
from rate_sb3.rate import ARCHITECTURE_ARGUMENTS

TINY = dict(context_len=4, n_segments=3, d_model=32, n_layers=1, n_heads=2, n_mem_tokens=2, batch_size=32)


@pytest.fixture(scope="module")
def tmaze_demos():
    """Oracle episodes with corridors of 1..10: the junction falls in the first, second or third segment."""
    env_fn = lambda: gym.make("TMaze-v0", corridor_length=list(range(1, 11)))  # noqa: E731
    return collect_episodes(make_expert("TMaze-v0"), env_fn, 300, n_envs=4, seed=0)


@pytest.fixture(scope="module")
def trained(tmaze_demos):
    """A tiny model pretrained until it solves T-Maze with corridors up to 10 (T <= 12, three segments)."""
    th.manual_seed(0)
    model = RATE(
        "RATEPolicy",
        "TMaze-v0",
        demonstrations=tmaze_demos,
        learning_rate=2e-3,
        warmup_steps=20,
        lr_end_factor=1.0,
        seed=0,
        **TINY,
    )
    return model.pretrain(1200, log_interval=400)


def test_pretraining_learns_tmaze_memory_across_segments(trained):
    # corridor 10: clue at t = 0 in segment 0, junction at t = 10 in segment 2 (K = 4), so only memory helps
    result = evaluate(trained, "TMaze-v0", {"corridor_length": 10}, n_episodes=40, n_envs=8)
    assert result["success_rate"] == 1.0
    short = evaluate(trained, "TMaze-v0", {"corridor_length": 2}, n_episodes=20, n_envs=4)
    assert short["success_rate"] == 1.0


def test_evaluate_policy_and_our_evaluation_agree(trained):
    env = PrevRewardWrapper(gym.make("TMaze-v0", corridor_length=7))
    mean_reward, _ = evaluate_policy(trained, env, n_eval_episodes=20, deterministic=True)
    ours = evaluate(trained, "TMaze-v0", {"corridor_length": 7}, n_episodes=20, n_envs=5)
    assert mean_reward == ours["mean_return"] == 1.0


def test_save_load_gives_identical_actions_without_demonstrations(trained, tmp_path):
    path = tmp_path / "model.zip"
    trained.save(path)
    loaded = RATE.load(path)
    assert loaded.demonstrations is None or not isinstance(loaded.demonstrations, list)
    assert loaded.target_return == trained.target_return and loaded.return_scale == trained.return_scale
    assert th.equal(loaded.entropy_temperature.log_value, trained.entropy_temperature.log_value)
    env = PrevRewardWrapper(gym.make("TMaze-v0", corridor_length=9))
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        states = [None, None]
        start = np.array([True])
        for _ in range(11):
            action_a, states[0] = trained.predict(obs, states[0], start, deterministic=True)
            action_b, states[1] = loaded.predict(obs, states[1], start, deterministic=True)
            assert action_a == action_b
            obs, _, terminated, truncated, _ = env.step(action_a)
            start = np.array([False])
            if terminated or truncated:
                break


def test_architecture_attributes_of_an_older_zip_and_load_arguments_go_into_the_config(tmp_path):
    arguments = dict(TINY, mode="trxl", d_inner=8)  # trxl: the cache length comes from mem_len=None
    model = RATE("RATEPolicy", "TMaze-v0", **arguments)
    model.save(tmp_path / "model.zip")
    defaults = {name: parameter.default for name, parameter in inspect.signature(RATE).parameters.items()}
    legacy = {name: dict(defaults, **arguments)[name] for name in ARCHITECTURE_ARGUMENTS}
    with zipfile.ZipFile(tmp_path / "model.zip") as new, zipfile.ZipFile(tmp_path / "legacy.zip", "w") as old:
        for item in new.infolist():  # the same zip, with the architecture as attributes as RATE kept it before
            content = new.read(item)
            if item.filename == "data":
                data = json.loads(content)
                del data["config"]
                content = json.dumps(dict(data, **legacy))
            old.writestr(item, content)
    loaded = RATE.load(tmp_path / "legacy.zip")  # its weights load only into the saved architecture
    assert loaded.config == model.config and not hasattr(loaded, "context_len")
    # rl_zoo3 continues training with RATE.load(path, **hyperparameters): they update the config
    continued = RATE.load(tmp_path / "model.zip", context_len=TINY["context_len"], dropout=0.0)
    assert continued.config == dataclasses.replace(model.config, dropout=0.0)


def test_evaluate_cli_prints_json_and_splits_goals_evenly(trained, tmp_path):
    path = tmp_path / "model.zip"
    trained.save(path)
    command = [sys.executable, "-m", "rate_sb3.evaluate", "--model", str(path), "--env", "TMaze-v0"]
    command += ["--env-kwargs", "corridor_length:6", "--episodes", "10", "--n-envs", "3", "--seed", "4"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    result = json.loads(output)
    assert set(result) == {"env", "episodes", "mean_return", "std_return", "success_rate", "mean_length", "seconds"}
    assert result["episodes"] == 10 and result["success_rate"] == 1.0 and result["mean_length"] == 7.0
    goals = [gym.make("TMaze-v0").reset(seed=4 + j)[0][1] for j in range(10)]
    assert goals.count(1.0) == goals.count(-1.0) == 5


def test_evaluate_cli_reports_a_missing_model_cleanly(tmp_path):
    command = [sys.executable, "-m", "rate_sb3.evaluate", "--model", str(tmp_path / "nope.zip"), "--env", "TMaze-v0"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "no model file" in result.stderr


def test_pretraining_logs_loss_accuracy_and_learning_rate_to_tensorboard(tmaze_demos, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=tmaze_demos, tensorboard_log=str(tmp_path), **TINY)
    model.pretrain(4, log_interval=2)
    run_dir = next(tmp_path.iterdir())
    tags = EventAccumulator(str(run_dir)).Reload().Tags()["scalars"]
    assert {"pretrain/loss", "pretrain/action_accuracy", "pretrain/learning_rate"} <= set(tags)


def test_offline_learn_counts_gradient_steps_and_calls_callbacks(tmaze_demos):
    class Counter(BaseCallback):
        def _on_step(self) -> bool:
            return self.n_calls < 5

    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=tmaze_demos, online=False, **TINY)
    counter = Counter()
    model.learn(20, callback=counter)
    assert counter.n_calls == 5 and model.num_timesteps == 5


def test_online_learn_calls_callbacks_every_env_step_and_fills_the_buffer(tmaze_demos):
    class Counter(BaseCallback):
        def _on_step(self) -> bool:
            return True

    env = gym.make("TMaze-v0", corridor_length=3)
    model = RATE(
        "RATEPolicy",
        env,
        demonstrations=tmaze_demos[:20],
        n_pretrain_steps=2,
        train_freq=8,
        gradient_steps=1,
        seed=0,
        **TINY,
    )
    counter = Counter()
    model.learn(24, callback=counter)
    assert counter.n_calls == 24 and model.num_timesteps == 24
    # an episode lasts 4 steps (a turn as soon as the junction is reached) or 5 (T = L + 2, then truncated)
    assert 24 // 5 <= len(model.replay_buffer.online) <= 24 // 4


def test_continued_learning_finishes_the_episodes_it_left_unfinished(tmaze_demos):
    env = gym.make("TMaze-v0", corridor_length=[3, 6])
    model = RATE("RATEPolicy", env, demonstrations=tmaze_demos[:20], n_pretrain_steps=2, gradient_steps=1, **TINY)
    model.learn(11)  # stops mid-episode (episodes have 5 or 8 steps)
    for _ in range(3):
        model.learn(7, reset_num_timesteps=False)
    assert model.num_timesteps == 32 and len(model.replay_buffer.online) >= 3
    for episode in model.replay_buffer.online:  # each recorded from its first step: the clue, then none
        clues = episode.observations[:, 1]
        assert clues[0] != 0 and not clues[1:].any() and len(episode.actions) in (4, 5, 7, 8)


def test_collect_rollouts_reports_what_it_collected_and_calls_the_rollout_callbacks():
    events = []

    class Recorder(BaseCallback):
        def _on_rollout_start(self) -> None:
            events.append("start")

        def _on_step(self) -> bool:
            events.append("step")
            return len(events) < 9  # stops the second collection at its second step

        def _on_rollout_end(self) -> None:
            events.append("end")

    env = make_vec_env("TMaze-v0", n_envs=2, env_kwargs=dict(corridor_length=3), wrapper_class=PrevRewardWrapper)
    model = RATE("RATEPolicy", env, target_return=1.0, seed=0, **TINY)
    _, callback = model._setup_learn(100, Recorder())
    buffer = model._prepare_buffer()
    first = model.collect_rollouts(model.env, callback, 7, buffer)  # 7 env steps: 4 steps of both envs
    assert (first.episode_timesteps, first.n_episodes, first.continue_training) == (8, len(buffer.online), True)
    assert model.num_timesteps == 8 and events == ["start", "step", "step", "step", "step", "end"]
    second = model.collect_rollouts(model.env, callback, 10, buffer)
    assert (second.episode_timesteps, second.continue_training) == (4, False) and model.num_timesteps == 12
    assert events[6:] == ["start", "step", "step"]  # no rollout end after a stop


def test_nan_loss_raises_value_error_with_the_step(tmaze_demos):
    bad = [Episode(ep.observations, ep.actions, ep.rewards.copy(), ep.terminated, ep.truncated) for ep in tmaze_demos]
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=bad, **TINY)
    with th.no_grad():
        model.policy.return_encoder.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="pretrain loss is not finite at step 0"):
        model.pretrain(1)


def test_mixed_precision_losses_and_gradients_follow_float32(tmaze_demos):
    # bfloat16 autocast on the training forward: the loss within 2% of float32's on the same batch, gradients
    # pointing the same way, and parameters, optimizer and predict left in float32
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=tmaze_demos, mixed_precision=True, seed=0, **TINY)
    model.pretrain(20)
    batch = model.replay_buffer.sample(32, 3, model.device)
    model.policy.set_training_mode(False)  # no dropout: both forwards see the same network

    def loss_and_gradient(autocast: bool) -> tuple[float, th.Tensor]:
        model.policy.zero_grad()
        with th.autocast("cpu", th.bfloat16, enabled=autocast):
            loss = window_loss(model.policy, batch, 0.0, 0.0, None, None).loss
        loss.backward()
        return loss.item(), th.cat([p.grad.flatten() for p in model.policy.parameters() if p.grad is not None])

    (loss, gradient), (mixed_loss, mixed_gradient) = loss_and_gradient(False), loss_and_gradient(True)
    assert mixed_loss == pytest.approx(loss, rel=0.02) and mixed_loss != loss  # autocast did run in bfloat16
    assert th.nn.functional.cosine_similarity(gradient, mixed_gradient, dim=0) > 0.99
    assert {p.dtype for p in model.policy.parameters()} == {th.float32}
    assert model.predict(model.env.reset(), deterministic=True)[0].shape == (model.n_envs,)


def test_mixed_precision_on_a_gpu_without_bfloat16_is_refused_with_the_fix(monkeypatch):
    from rate_sb3.return_conditioned import _check_mixed_precision

    monkeypatch.setattr(th.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(th.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ValueError, match="Tesla T4 does not support: pass mixed_precision=False"):
        _check_mixed_precision(True, th.device("cuda"))
    _check_mixed_precision(False, th.device("cuda"))


def test_demonstrations_that_do_not_match_the_env_are_rejected_before_training():
    cartpole = collect_episodes(lambda obs: np.zeros(len(obs), dtype=np.int64), "CartPole-v1", 2)
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=cartpole, **TINY)
    with pytest.raises(ValueError, match="episode 0"):
        model.pretrain(1)


def test_missing_and_corrupt_demonstration_files_are_named(tmp_path):
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=str(tmp_path / "missing.npz"), **TINY)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        model.pretrain(1)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt.npz"):
        RATE("RATEPolicy", "TMaze-v0", demonstrations=str(corrupt), **TINY).pretrain(1)


def test_expert_spec_collects_once_and_reuses_the_cache(tmp_path):
    cache = tmp_path / "demos" / "tmaze.npz"
    spec = {"expert": "privileged", "n_episodes": 6, "cache": str(cache)}
    env = gym.make("TMaze-v0", corridor_length=[2, 3])
    model = RATE("RATEPolicy", env, demonstrations=spec, **TINY)
    episodes = model.demonstration_episodes()
    assert len(episodes) == 6 and cache.exists() and {ep.length for ep in episodes} <= {3, 4}
    save_episodes(episodes[:2], cache)  # a changed cache proves the second model reads it
    assert len(RATE("RATEPolicy", env, demonstrations=spec, **TINY).demonstration_episodes()) == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"expert": "privileged", "n_episodes": 0}, "n_episodes=0"),
        ({"expert": "privileged", "n_episodes": 2, "colour": "red"}, "unknown key"),
        ({"expert": "ppo", "n_episodes": 2}, "only 'privileged'"),
    ],
)
def test_bad_expert_specs_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        RATE("RATEPolicy", "TMaze-v0", demonstrations=spec, **TINY).pretrain(1)


def test_empty_demonstrations_are_rejected():
    with pytest.raises(ValueError, match="no episodes"):
        RATE("RATEPolicy", "TMaze-v0", demonstrations=[], **TINY).pretrain(1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(context_len=0), "context_len=0"),
        (dict(n_segments=0), "n_segments=0"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(n_mem_tokens=-1), "n_mem_tokens=-1"),
        (dict(mode="lstm"), "mode='lstm'"),
        (dict(ent_coef="sometimes"), "ent_coef='sometimes'"),
        (dict(return_scale=0.0), "return_scale=0.0"),
        (dict(action_mse_coef=-1.0), "action_mse_coef=-1.0"),
        (dict(policy_kwargs=dict(d_model=32)), r"policy_kwargs \['d_model'\] are architecture arguments"),
    ],
)
def test_out_of_range_arguments_are_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RATE("RATEPolicy", "TMaze-v0", **dict(TINY, **kwargs))


def test_a_vec_env_without_reward_feedback_is_rejected_with_the_fix():
    from stable_baselines3.common.env_util import make_vec_env

    with pytest.raises(ValueError, match="PrevRewardWrapper"):
        RATE("RATEPolicy", make_vec_env("TMaze-v0", n_envs=2), **TINY)


def test_pretrain_without_demonstrations_and_online_without_target_return_explain_themselves():
    model = RATE("RATEPolicy", "TMaze-v0", **TINY)
    with pytest.raises(ValueError, match="needs demonstrations"):
        model.pretrain(1)
    with pytest.raises(ValueError, match="set target_return"):
        model.learn(4)


def test_standardised_observations_take_the_demonstrations_statistics_once_and_keep_them(tmaze_demos, tmp_path):
    standardized = dict(policy_kwargs=dict(standardize_observations=True))
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=tmaze_demos, seed=0, **standardized, **TINY).pretrain(2)
    observations = np.concatenate([ep.observations[:-1] for ep in tmaze_demos])
    encoder = model.policy.observation_encoder
    std = observations.std(0)
    assert std[0] == 0  # the first value is constant: it is only shifted
    np.testing.assert_allclose(encoder.observation_mean.numpy(), observations.mean(0), atol=1e-6)
    np.testing.assert_allclose(encoder.observation_std.numpy(), np.where(std == 0, 1.0, std), rtol=1e-5)
    model.save(tmp_path / "standardized.zip")
    # loaded and trained on other demonstrations, the policy keeps the statistics it acts with
    loaded = RATE.load(tmp_path / "standardized.zip", demonstrations=tmaze_demos[:5])
    loaded.pretrain(1)
    np.testing.assert_array_equal(loaded.policy.observation_encoder.observation_mean, encoder.observation_mean)
    obs = {"observation": observations[:1], "prev_reward": np.zeros((1, 1), np.float32)}
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match="standardize_observations takes its statistics from the demonstrations"):
        RATE("RATEPolicy", "TMaze-v0", **standardized, **TINY)


def test_replay_buffer_round_trip(tmaze_demos, tmp_path):
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=tmaze_demos[:10], **TINY)
    with pytest.raises(ValueError, match="no trajectory buffer"):
        model.save_replay_buffer(tmp_path / "buffer.pkl")
    model.pretrain(1)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = RATE("RATEPolicy", "TMaze-v0", **TINY)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert len(other.replay_buffer.demonstrations) == 10


# ------------------------------------------------------------------------------------------------ replay and online
def _episode(length: int, reward: float) -> Episode:
    observations = np.zeros((length + 1, 4), np.float32)
    observations[0, 1] = 1.0
    rewards = np.zeros(length, np.float32)
    rewards[-1] = reward
    return Episode(observations, np.zeros(length, np.int64), rewards, True, False)


@pytest.mark.parametrize("pools", ["online", "demonstrations", "both"])
def test_a_batch_comes_whole_from_the_pools_that_hold_episodes(pools):
    from rate_sb3.buffers import TrajectoryBuffer

    buffer = TrajectoryBuffer(segment_len=4, demo_fraction=0.25, seed=0)
    if pools in ("demonstrations", "both"):
        buffer.add_demonstrations([_episode(5, 1.0), _episode(9, 1.0)])
    if pools in ("online", "both"):
        for length in (3, 6, 11):
            buffer.add(_episode(length, 0.0))
    for _ in range(5):
        batch = buffer.sample(8, n_segments=2)
        assert batch.observations.shape[0] == 8 and batch.valid[:, 0].all()
        expected = {"online": 0, "demonstrations": 8, "both": 2}[pools]
        assert int(batch.from_demonstrations.sum()) == expected


def test_online_learning_from_scratch_waits_for_a_finished_episode():
    env = gym.make("TMaze-v0", corridor_length=3)  # episodes of at most 5 steps
    model = RATE("RATEPolicy", env, target_return=1.0, train_freq=1, gradient_steps=1, seed=0, **TINY)
    before = [parameter.detach().clone() for parameter in model.policy.parameters()]
    model.learn(16)  # no gradient step before the first episode ends, then batches of online episodes only
    assert len(model.replay_buffer.online) >= 3 and not model.replay_buffer.demonstrations
    assert any(not th.equal(old, new) for old, new in zip(before, model.policy.parameters()))


def test_recording_demonstrations_on_the_training_env_leaves_the_online_rollouts_unchanged():
    """An expert spec recorded on the training env gives the same online episodes as the same episodes given."""

    def make(demonstrations):
        kwargs = dict(corridor_length=[1, 2, 3, 4])
        env = make_vec_env("TMaze-v0", n_envs=2, env_kwargs=kwargs, wrapper_class=PrevRewardWrapper)
        return RATE(
            "RATEPolicy", env, demonstrations=demonstrations, n_pretrain_steps=2, train_freq=1000, seed=0, **TINY
        )

    spec = {"expert": "privileged", "n_episodes": 5, "expert_kwargs": {"error_rate": 0.5, "seed": 0}}
    recorded = make(spec).learn(30)
    given = make(list(recorded.replay_buffer.demonstrations)).learn(30)
    episodes, expected = list(recorded.replay_buffer.online), list(given.replay_buffer.online)
    assert len(episodes) == len(expected) >= 4
    for episode, other in zip(episodes, expected):
        assert np.array_equal(episode.observations, other.observations)
        assert np.array_equal(episode.actions, other.actions)


# ------------------------------------------------------------------------------------------------ zoo-trained images
MINIGRID = "MiniGrid-MemoryS7-v0"
MINIGRID_WRAPPERS = [
    "minigrid.wrappers.ImgObsWrapper",
    "rate_sb3.wrappers.SuccessFromReward",
    "rate_sb3.wrappers.PrevRewardWrapper",
]


@pytest.fixture(scope="module")
def minigrid_run(tmp_path_factory):
    """A tiny RATE model trained as the zoo does (wrappers from the YAML, channel-first images), in a run folder
    laid out as rl_zoo3 leaves it: ``<run>/<env id>.zip`` and ``<run>/<env id>/config.yml``. Its 50 steps on the
    oracle's walk make most episodes reach the end of the hallway (without the memory to choose well every time)."""
    pytest.importorskip("minigrid")
    from collections import OrderedDict

    import yaml
    from minigrid.wrappers import ImgObsWrapper
    from stable_baselines3.common.vec_env import VecTransposeImage

    from rate_sb3.wrappers import SuccessFromReward, VecObservationOnly

    wrap = lambda env: PrevRewardWrapper(SuccessFromReward(ImgObsWrapper(env)))  # noqa: E731
    env = VecTransposeImage(make_vec_env(MINIGRID, n_envs=1, wrapper_class=wrap, seed=0))
    episodes = collect_episodes(make_expert(MINIGRID), VecObservationOnly(env), 20, seed=0)
    tiny = dict(TINY, batch_size=8, learning_rate=3e-3, lr_end_factor=1.0, policy_kwargs=dict(normalize_images=False))
    model = RATE("RATEPolicy", env, demonstrations=episodes, seed=0, **tiny).pretrain(50)
    run_dir = tmp_path_factory.mktemp("logs") / "rate" / f"{MINIGRID}_1"
    (run_dir / MINIGRID).mkdir(parents=True)
    model.save(run_dir / f"{MINIGRID}.zip")
    saved = {"env_wrapper": MINIGRID_WRAPPERS, "n_timesteps": 5e4, "policy": "RATEPolicy", "target_return": 1.0}
    saved["demonstrations"] = {"expert": "privileged", "n_episodes": 20}
    saved["policy_kwargs"] = "dict(normalize_images=False)"
    (run_dir / MINIGRID / "config.yml").write_text(yaml.dump(OrderedDict(sorted(saved.items()))))  # as rl_zoo3
    return run_dir


def minigrid_returns_by_hand(model: RATE, n_episodes: int) -> list[float]:
    """Episode j reset with seed j, as ``rate_sb3.evaluate`` does, in a plain loop over one env."""
    from minigrid.wrappers import ImgObsWrapper

    env = PrevRewardWrapper(ImgObsWrapper(gym.make(MINIGRID)))
    returns = []
    for seed in range(n_episodes):
        obs, _ = env.reset(seed=seed)
        state, start, done, total = None, np.array([True]), False, 0.0
        while not done:
            obs = dict(obs, observation=np.transpose(obs["observation"], (2, 0, 1)))  # channel-first, as trained
            action, state = model.predict(obs, state, episode_start=start, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            start, done, total = np.array([False]), terminated or truncated, total + reward
        returns.append(total)
    return returns


def test_evaluate_cli_takes_the_wrappers_of_a_zoo_run_and_transposes_images(minigrid_run):
    model_path = minigrid_run / f"{MINIGRID}.zip"
    command = [sys.executable, "-m", "rate_sb3.evaluate", "--model", str(model_path)]
    command += ["--env", MINIGRID, "--episodes", "10", "--n-envs", "2"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == {"env", "episodes", "mean_return", "std_return", "success_rate", "mean_length", "seconds"}
    assert summary["env"] == MINIGRID and summary["episodes"] == 10 and summary["mean_length"] > 0
    # MiniGrid rewards an episode if and only if it succeeds: the success rate that SuccessFromReward (from the run's
    # config.yml) reports must be the share of rewarded episodes, counted here from the same seeded episodes.
    returns = minigrid_returns_by_hand(RATE.load(model_path), 10)
    successes = sum(total > 0 for total in returns)
    assert 0 < successes < 10  # both outcomes occur, so a wrong count cannot pass
    assert summary["success_rate"] == successes / 10
    assert summary["mean_return"] == pytest.approx(np.mean(returns))


def test_evaluate_cli_env_wrapper_flags_and_unknown_wrappers(minigrid_run, tmp_path, capsys):
    from rate_sb3.evaluate import main

    model_path = tmp_path / "model.zip"  # outside the run folder: no config.yml to read
    model_path.write_bytes((minigrid_run / f"{MINIGRID}.zip").read_bytes())
    base = ["--model", str(model_path), "--env", MINIGRID, "--episodes", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(base)
    assert exit_info.value.code == 2 and "--env-wrapper" in capsys.readouterr().err
    result = main([*base, "--env-wrapper", "minigrid.wrappers.ImgObsWrapper"])  # the previous reward is added
    assert result["episodes"] == 1 and json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    for wrapper in ("minigrid.wrappers.NoSuchWrapper", "no_such_package.Wrapper", "ImgObsWrapper"):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "--env-wrapper", wrapper])
        assert exit_info.value.code == 2 and wrapper in capsys.readouterr().err
    model = RATE.load(model_path)
    assert evaluate(model, MINIGRID, n_episodes=1, env_wrappers=MINIGRID_WRAPPERS)["episodes"] == 1


@pytest.mark.parametrize(
    "env_wrappers, message",
    [
        ({"a.B": {}, "c.D": {}}, "expected one {path: kwargs} pair"),
        (42, "expected a dotted import path"),
        ("ImgObsWrapper", "expected a dotted import path"),
    ],
)
def test_malformed_env_wrappers_are_named(env_wrappers, message):
    from rate_sb3.evaluate import resolve_env_wrappers

    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_env_wrappers([env_wrappers])


def test_a_broken_zoo_config_and_a_wrapper_that_fails_are_named(minigrid_run, tmp_path, capsys):
    from rate_sb3.evaluate import main

    run_dir = tmp_path / "run"
    (run_dir / MINIGRID).mkdir(parents=True)
    (run_dir / f"{MINIGRID}.zip").write_bytes((minigrid_run / f"{MINIGRID}.zip").read_bytes())
    config = run_dir / MINIGRID / "config.yml"
    config.write_text("env_wrapper: [unclosed\n")
    base = ["--model", str(run_dir / f"{MINIGRID}.zip"), "--env", MINIGRID, "--episodes", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(base)
    assert exit_info.value.code == 2 and f"cannot read the zoo config {config}" in capsys.readouterr().err
    # a wrapper that raises while wrapping (FlattenObservation cannot flatten MiniGrid's Text mission)
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--env-wrapper", "gymnasium.wrappers.FlattenObservation"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"gymnasium.wrappers.FlattenObservation: cannot wrap {MINIGRID}" in err


class ClipEnv(gym.Env):
    """Observation x ~ U(-1, 1); the expert's action clip(2x, -1, 1) is at a bound of the box half of the time."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_box_actions_at_the_bounds_are_imitated_with_the_squared_error_term():
    """Likelihood alone fits targets at the bounds by widening the squashed Gaussian, which stalls its mean."""
    rng = np.random.default_rng(0)
    observations = rng.uniform(-1, 1, size=(40, 13, 1)).astype(np.float32)
    demos = [
        Episode(obs, np.clip(2 * obs[:-1], -1, 1), np.zeros(12, np.float32), terminated=True, truncated=False)
        for obs in observations
    ]

    def action_mse(coef: float) -> float:
        th.manual_seed(0)
        model = RATE(
            "RATEPolicy",
            ClipEnv(),
            demonstrations=demos,
            action_mse_coef=coef,
            seed=0,
            learning_rate=1e-3,
            warmup_steps=20,
            lr_end_factor=1.0,
            target_return=1.0,
            **TINY,
        )
        model.pretrain(150, log_interval=1000)
        model.policy.set_training_mode(False)
        with th.no_grad():
            return window_loss(model.policy, model.replay_buffer.sample(256, 3, model.device)).action_mse

    with_term, likelihood_only = action_mse(10.0), action_mse(0.0)
    assert with_term < 0.02 and with_term < 0.5 * likelihood_only, (with_term, likelihood_only)


def test_the_entropy_mask_averages_the_entropy_over_the_steps_it_selects(tmaze_demos):
    from rate_sb3.envs.tmaze import junction_steps

    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=tmaze_demos, seed=0, **TINY)
    model._prepare_buffer().start_at_zero = 1.0  # no burn-in: every step of the window is in the loss
    batch = model.replay_buffer.sample(16, 3, model.device)
    policy = model.policy
    policy.set_training_mode(False)
    with th.no_grad():
        hidden = policy.window_hidden(
            batch.observations, policy.actions_to_model(batch.actions), batch.returns_to_go, batch.valid
        )
        per_step = policy.action_head.entropy(hidden)
        at_junction = junction_steps(batch.observations) & batch.valid
        everywhere = window_loss(policy, batch, entropy_mask=lambda obs: th.ones(obs.shape[:2], dtype=th.bool))
        masked = window_loss(policy, batch, entropy_mask=junction_steps)
        nowhere = window_loss(policy, batch, entropy_mask=lambda obs: th.zeros(obs.shape[:2], dtype=th.bool))
    assert masked.entropy_steps == int(at_junction.sum()) == 16  # one junction per episode
    assert masked.entropy.item() == pytest.approx(per_step[at_junction].mean().item(), rel=1e-5)
    assert everywhere.entropy.item() == pytest.approx(per_step[batch.valid].mean().item(), rel=1e-5)
    assert nowhere.entropy_steps == 0 and nowhere.entropy.item() == 0.0
    assert masked.nll.item() == everywhere.nll.item()  # the likelihood covers every step either way
    with th.no_grad():
        weighted = window_loss(policy, batch, temperature=0.5, entropy_mask=junction_steps)
    per_valid_step = per_step[at_junction].sum() / batch.valid.sum()  # a selected step weighs as in the likelihood
    assert weighted.loss.item() == pytest.approx((masked.nll - 0.5 * per_valid_step).item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"entropy_mask <lambda> returned \(16, 12, 1\): it must map"):
        window_loss(policy, batch, entropy_mask=lambda obs: obs[..., 2:3] > 0)
    with pytest.raises(ValueError, match=r"entropy_mask <lambda> returned ndarray: it must map"):
        window_loss(policy, batch, entropy_mask=lambda obs: obs[..., 2].numpy() > 0)
    with pytest.raises(ValueError, match="entropy_mask no_such_package.mask: cannot import no_such_package"):
        RATE("RATEPolicy", "TMaze-v0", entropy_mask="no_such_package.mask", **TINY)
    with pytest.raises(ValueError, match="entropy_mask rate_sb3.envs.tmaze.no_such: .* nothing callable"):
        RATE("RATEPolicy", "TMaze-v0", entropy_mask="rate_sb3.envs.tmaze.no_such", **TINY)


def test_the_return_to_go_stays_within_what_the_buffer_reached_and_the_cap_is_saved(tmaze_demos, tmp_path):
    """Rewards of -2 per step (-1 at the goal): the highest return-to-go in the data is -1, so a run of bad luck
    must not make the policy ask for more (no trajectory reached more)."""
    penalised = [
        Episode(ep.observations, ep.actions, ep.rewards - 2.0, ep.terminated, ep.truncated) for ep in tmaze_demos
    ]
    obs = {"observation": np.zeros((1, 4), np.float32), "prev_reward": np.full((1, 1), -1.0, np.float32)}

    def tracked_returns(model: RATE) -> list[float]:
        state, returns = None, []
        for step in range(20):
            _, state = model.predict(obs, state, np.array([step == 0]), deterministic=True)
            returns.append(float(state.return_to_go[0]) / model.policy.return_scale)
        return returns

    capped = RATE("RATEPolicy", "TMaze-v0", demonstrations=penalised, target_return=-5.0, seed=0, **TINY)
    capped.pretrain(1)
    assert capped.return_to_go_cap == -1.0
    assert tracked_returns(capped) == pytest.approx([-5.0, -4.0, -3.0, -2.0] + [-1.0] * 16)
    uncapped = RATE("RATEPolicy", "TMaze-v0", demonstrations=penalised, target_return=-5.0, cap_return_to_go=False)
    assert tracked_returns(uncapped.pretrain(1))[-1] == pytest.approx(14.0)
    capped.save(tmp_path / "capped.zip")
    assert tracked_returns(RATE.load(tmp_path / "capped.zip")) == tracked_returns(capped)
