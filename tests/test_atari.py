"""Atari end to end on PongNoFrameskip-v4: the RAM-reading expert, frame-stacked demonstrations in HDF5, pretraining,
predict against the training forward, the zoo and rate_sb3.evaluate (a few hundred steps each)."""

from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecTransposeImage
from test_image_datasets import assert_same_episodes
from test_policy import recorded_step_hidden, training_hidden
from test_zoo import REPO, TINY_RATE, TRAIN, run

from rate_sb3 import RATE, PrevRewardWrapper, load_demonstrations, save_episodes
from rate_sb3.collect import collect_episodes
from rate_sb3.envs import EXPERTS, PongExpert, make_env, make_expert
from rate_sb3.evaluate import evaluate
from rate_sb3.wrappers import VecObservationOnly
from rate_sb3.zoo_checks import ZooConfigError, check_env_id

pytest.importorskip("ale_py", reason="pip install 'rate_sb3[atari]'")
pytest.importorskip("cv2", reason="pip install 'rate_sb3[atari]'")

PONG = "PongNoFrameskip-v4"
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
EPISODE_FRAMES = 1200  # TimeLimit on the emulator's frames: episodes of about 290 steps of 4 frames


def atari_env(env: gym.Env) -> gym.Env:
    return PrevRewardWrapper(AtariWrapper(env))


def pong_vec_env() -> VecEnv:
    """The zoo's training env for the Pong entry: AtariWrapper, the previous reward, 4 stacked frames, channel-first."""
    make = functools.partial(make_env, PONG, max_episode_steps=EPISODE_FRAMES)
    return VecTransposeImage(VecFrameStack(make_vec_env(make, n_envs=1, seed=0, wrapper_class=atari_env), 4))


def rollout_return(policy, env: gym.Env, n_steps: int) -> float:
    """The sum of rewards of ``n_steps`` steps of ``policy(env)`` from the reset with seed 0 (within one episode:
    a game lasts until a player has 21 points, over a thousand steps)."""
    env.reset(seed=0)
    return sum(float(env.step(policy(env))[1]) for _ in range(n_steps))


def test_the_expert_wins_points_that_random_play_loses() -> None:
    env = AtariWrapper(make_env(PONG))
    expert, rng = make_expert(PONG, seed=0), np.random.default_rng(0)
    expert.reset(env)
    expert_return = rollout_return(expert.act, env, 500)
    random_return = rollout_return(lambda _env: int(rng.integers(6)), env, 500)
    assert expert_return >= 1 and random_return <= -5, (expert_return, random_return)
    clumsy = make_expert(PONG, error_rate=1.0, seed=0)  # every action random: the points are lost again
    clumsy.reset(env)
    assert rollout_return(clumsy.act, env, 500) <= -5


def test_expert_registry_and_errors() -> None:
    assert EXPERTS[PONG] is PongExpert
    with pytest.raises(ValueError, match=r"error_rate must be a probability in \[0, 1\], got 2"):
        PongExpert(error_rate=2)
    with pytest.raises(TypeError, match="PongExpert needs an Atari Pong env .* got CartPoleEnv"):
        PongExpert().act(gym.make("CartPole-v1"))
    breakout = make_env("BreakoutNoFrameskip-v4")
    breakout.reset(seed=0)
    with pytest.raises(TypeError, match="PongExpert reads Pong's RAM, got the Atari game 'breakout'"):
        PongExpert().act(breakout)


def test_atari_ids_without_ale_py_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ale_py", None)  # as if ale-py were not installed
    with pytest.raises(ValueError, match=r"needs the package 'ale_py' .*pip install 'rate_sb3\[atari\]'"):
        make_env("ALE/NotRegistered-v5")
    with pytest.raises(ZooConfigError, match=r"--env ALE/NotRegistered-v5: .*pip install 'rate_sb3\[atari\]'"):
        check_env_id("ALE/NotRegistered-v5", [])


def test_an_ale_py_that_registers_nothing_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # ale-py 0.12 beside gymnasium 1.0 (which d3rlpy pins) imports, but its registration fails silently
    without_atari = {env_id: spec for env_id, spec in gym.registry.items() if not env_id.startswith("ALE/")}
    without_atari = {env_id: spec for env_id, spec in without_atari.items() if "NoFrameskip" not in env_id}
    monkeypatch.setattr(gym, "registry", without_atari)
    with pytest.raises(ValueError, match=r"ale-py .* registered no envs with gymnasium .*pip install 'ale-py<0\.11'"):
        make_env(PONG)


def test_an_ale_py_too_new_for_gymnasium_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # ale-py 0.11 beside gymnasium 1.0: its import fails on a name gymnasium 1.0 lacks
    real_import = importlib.import_module

    def failing_import(name, *args, **kwargs):
        if name == "ale_py":
            raise ImportError("cannot import name 'AutoresetMode' from 'gymnasium.vector'", name="gymnasium.vector")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(gym, "registry", {})
    monkeypatch.setattr(importlib, "import_module", failing_import)
    with pytest.raises(
        ValueError, match=r"needs the package 'ale_py' \(cannot import name 'AutoresetMode'.*'ale-py<0\.11'"
    ):
        make_env(PONG)


def test_make_env_registers_atari_ids_without_rl_zoo3() -> None:
    code = (
        "import sys; from rate_sb3.envs import make_env; env = make_env('PongNoFrameskip-v4'); "
        "assert 'rl_zoo3' not in sys.modules; print(env.action_space)"
    )
    assert "Discrete(6)" in run([sys.executable, "-c", code], REPO).stdout


@pytest.fixture(scope="module")
def demonstrations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two expert episodes recorded on the stacked training env, written to an HDF5 image dataset."""
    env = pong_vec_env()
    episodes = collect_episodes(make_expert(PONG, seed=0), VecObservationOnly(env), n_episodes=2, seed=0)
    path = tmp_path_factory.mktemp("pong") / "pong.h5"
    save_episodes(episodes, path)
    assert_same_episodes(load_demonstrations(path), episodes)
    env.close()
    return path


def test_stacked_demonstrations_round_trip_through_hdf5(demonstrations: Path) -> None:
    episodes = load_demonstrations(demonstrations)
    for episode in episodes:
        assert episode.observations.shape == (len(episode.actions) + 1, 4, 84, 84)  # channel-first stacks
        assert episode.observations.dtype == np.uint8 and episode.truncated
        assert 250 <= len(episode.actions) <= EPISODE_FRAMES // 4
    first = np.asarray(episodes[0].observations[:4])
    assert not first[0, :3].any() and first[0, 3].any()  # after a reset VecFrameStack pads with zeros, newest last
    np.testing.assert_array_equal(first[3, :3], first[2, 1:])  # each step shifts the stack by one frame


def test_pretrain_predict_and_evaluate_on_stacked_frames(demonstrations: Path) -> None:
    env = pong_vec_env()
    model = RATE("RATEPolicy", env, demonstrations=str(demonstrations), online=False, seed=0, **TINY_RATE)
    assert model.observation_space["observation"].shape == (4, 84, 84)
    model.pretrain(3)
    observations, state, starts = env.reset(), None, np.ones(1, bool)
    for _ in range(8):  # predict on the live stacked env, as the zoo's evaluation runs it
        actions, state = model.predict(observations, state, starts)
        observations, _, starts, _ = env.step(actions)
    assert env.action_space.contains(int(actions[0]))

    seen, predict = [], model.predict  # rate_sb3.evaluate stacks and transposes the frames as the training env did

    def recording_predict(observation, *args, **kwargs):
        seen.append(observation)
        return predict(observation, *args, **kwargs)

    model.predict = recording_predict
    result = evaluate(model, PONG, {"max_episode_steps": 400}, n_episodes=1, env_wrappers=ATARI_WRAPPER, frame_stack=4)
    assert result["episodes"] == 1 and 0 < result["mean_length"] <= 100
    first_demo_frame = np.asarray(load_demonstrations(demonstrations)[0].observations[0])
    np.testing.assert_array_equal(seen[0]["observation"][0], first_demo_frame)  # both reset with seed 0


def test_incremental_predict_equals_the_training_forward(demonstrations: Path) -> None:
    model = RATE("RATEPolicy", pong_vec_env(), demonstrations=str(demonstrations), dropout=0.2, seed=0, **TINY_RATE)
    model.pretrain(2)
    policy = model.policy.eval()
    episode, n_steps = load_demonstrations(demonstrations)[0], 10  # 10 steps: 2.5 segments of 4
    observations = np.asarray(episode.observations[: n_steps + 1])
    actions = policy.actions_to_model(th.as_tensor(episode.actions[:n_steps]).reshape(1, n_steps, -1))[0]
    rewards = episode.rewards[:n_steps]
    policy.target_return = float(rewards.sum())
    with th.no_grad():
        steps = recorded_step_hidden(policy, observations, actions, rewards)
        hidden = training_hidden(policy, observations, actions, rewards)
    th.testing.assert_close(steps, hidden, atol=1e-4, rtol=1e-4)


def test_zoo_entry_trains_and_evaluates(tmp_path: Path) -> None:
    """The repo's PongNoFrameskip-v4 entry with a tiny model and one short demonstration, then rate_sb3.evaluate,
    which reads AtariWrapper and the frame stack from the run's config.yml."""
    tiny = [f"{key}:{value}" for key, value in TINY_RATE.items()]
    spec = "demonstrations:{'expert':'privileged','n_episodes':1,'cache':'demos/pong.h5'}"
    params = ["-params", *tiny, spec, f"env_kwargs:{{'max_episode_steps':{EPISODE_FRAMES}}}"]
    command = [sys.executable, TRAIN, "--algo", "rate", "--env", PONG, *params, "-n", "3", "--eval-freq", "-1"]
    run([*command, "-f", "logs", "--seed", "1"], tmp_path)
    assert (tmp_path / "demos" / "pong.h5").is_file()
    model = tmp_path / "logs" / "rate" / f"{PONG}_1" / f"{PONG}.zip"
    evaluate_command = [sys.executable, "-m", "rate_sb3.evaluate", "--model", str(model), "--env", PONG]
    output = run([*evaluate_command, "--episodes", "1", "--env-kwargs", "max_episode_steps:400"], tmp_path).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["episodes"] == 1 and 0 < summary["mean_length"] <= 100
