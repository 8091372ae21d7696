"""Tests for rate_sb3.data: the Episode container, file formats, validation and collection."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from rate_sb3 import data
from rate_sb3.collect import collect_episodes
from rate_sb3.data import (
    Episode,
    load_demonstrations,
    load_episodes_npz,
    load_imitation,
    load_minari,
    save_episodes,
    validate_episodes,
)
from rate_sb3.envs.experts import PrivilegedExpert

COUNTER_TIME_LIMIT = 5


class CounterEnv(gym.Env):
    """Observation is the step counter; reward = 10 * counter + action; hidden episode length in [2, 6]."""

    observation_space = spaces.Box(0, 100, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.counter = 0
        self.episode_length = int(self.np_random.integers(2, 7))
        return np.array([0.0], np.float32), {}

    def step(self, action):
        reward = 10.0 * self.counter + int(action)
        self.counter += 1
        terminated = self.counter >= self.episode_length
        return np.array([self.counter], np.float32), reward, terminated, False, {}


def make_counter_env() -> gym.Env:
    return TimeLimit(CounterEnv(), max_episode_steps=COUNTER_TIME_LIMIT)


class ParityExpert(PrivilegedExpert):
    """Reads the hidden episode length at reset and plays its parity for the whole episode."""

    def reset(self, env: gym.Env) -> None:
        assert env.unwrapped.counter == 0
        self.parity = env.unwrapped.episode_length % 2

    def act(self, env: gym.Env) -> int:
        return self.parity


def assert_counter_episode(episode: Episode) -> None:
    """The episode is whole, ordered, and its final observation is the env's terminal observation."""
    steps = np.arange(episode.length)
    np.testing.assert_array_equal(episode.observations[:, 0], np.arange(episode.length + 1))
    np.testing.assert_array_equal(episode.rewards, 10 * steps + episode.actions)
    assert episode.terminated != episode.truncated
    if episode.truncated:
        assert episode.length == COUNTER_TIME_LIMIT
    assert episode.actions.dtype == np.int64 and episode.actions.shape == (episode.length,)


def random_episode(rng: np.random.Generator, kind: str, length: int, terminated: bool = True) -> Episode:
    if kind == "discrete":
        observations = rng.normal(size=(length + 1, 4)).astype(np.float32)
        actions = rng.integers(0, 2, size=length)
    elif kind == "box":
        observations = rng.normal(size=(length + 1, 3)).astype(np.float32)
        actions = rng.uniform(-2, 2, size=(length, 1)).astype(np.float32)
    else:
        observations = rng.integers(0, 256, size=(length + 1, 6, 5, 3), dtype=np.uint8)
        actions = rng.integers(0, 3, size=length)
    rewards = rng.normal(size=length).astype(np.float32)
    return Episode(observations, actions, rewards, terminated=terminated, truncated=not terminated)


def assert_same_observations(got, want) -> None:
    """Equal arrays of the same dtype, or dicts of them with the same keys."""
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            assert_same_observations(got[key], want[key])
        return
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


def assert_same_episodes(loaded: list[Episode], expected: list[Episode]) -> None:
    assert len(loaded) == len(expected)
    for got, want in zip(loaded, expected):
        assert_same_observations(got.observations, want.observations)
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_allclose(got.rewards, want.rewards, rtol=1e-6)
        assert (got.terminated, got.truncated) == (want.terminated, want.truncated)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def cartpole_episodes(rng) -> list[Episode]:
    return [random_episode(rng, "discrete", 5), random_episode(rng, "discrete", 3, terminated=False)]


# ------------------------------------------------------------------------------------------------------
# Episode
# ------------------------------------------------------------------------------------------------------


def test_episode_properties(rng):
    episode = Episode(np.zeros((4, 2)), np.array([0, 1, 1]), [1.0, 2.0, 0.5], terminated=True, truncated=False)
    assert episode.length == 3
    assert episode.episode_return == pytest.approx(3.5)
    assert episode.rewards.dtype == np.float32


@pytest.mark.parametrize(
    "observations, actions, rewards, message",
    [
        (np.zeros((3, 2)), np.zeros(3), np.zeros(3), r"'observations' has length 3 but 'actions' has length 3"),
        (np.zeros((4, 2)), np.zeros(3), np.zeros(2), r"'rewards' has length 2 but 'actions' has length 3"),
        (np.zeros((1, 2)), np.zeros(0), np.zeros(0), r"'actions' has length 0"),
    ],
)
def test_episode_rejects_inconsistent_lengths(observations, actions, rewards, message):
    with pytest.raises(ValueError, match=message):
        Episode(observations, actions, rewards, terminated=True, truncated=False)


# ------------------------------------------------------------------------------------------------------
# .npz format
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["discrete", "box", "image"])
def test_npz_round_trip(tmp_path, rng, kind):
    episodes = [random_episode(rng, kind, 4), random_episode(rng, kind, 1, terminated=False)]
    path = tmp_path / "nested" / "dir" / "demos.npz"
    save_episodes(episodes, path)
    loaded = load_episodes_npz(path)
    assert_same_episodes(loaded, episodes)
    assert loaded[0].actions.dtype == episodes[0].actions.dtype
    assert sorted(p.name for p in path.parent.iterdir()) == ["demos.npz"]


def test_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_episodes_npz(tmp_path / "nothing.npz")


def test_npz_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"\x00garbage, not a zip archive" * 10)
    with pytest.raises(ValueError, match=r"corrupt\.npz.*collect_episodes"):
        load_episodes_npz(path)


def test_npz_missing_key(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, observations=np.zeros((3, 2)), actions=np.zeros(2), episode_lengths=np.array([2]))
    with pytest.raises(ValueError, match=r"partial\.npz.*'rewards'"):
        load_episodes_npz(path)


def test_npz_inconsistent_lengths(tmp_path, cartpole_episodes):
    path = tmp_path / "demos.npz"
    save_episodes(cartpole_episodes, path)
    arrays = dict(np.load(path))
    arrays["rewards"] = arrays["rewards"][:-1]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"demos\.npz is inconsistent: rewards has length 7, expected 8"):
        load_episodes_npz(path)


def test_npz_failed_save_leaves_no_file(tmp_path, monkeypatch, cartpole_episodes):
    target = tmp_path / "demos.npz"
    save_episodes(cartpole_episodes[:1], target)
    old_bytes = target.read_bytes()

    def crash_midway(file, **arrays):
        file.write(b"half of an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_episodes(cartpole_episodes, target)
    with pytest.raises(KeyboardInterrupt):
        save_episodes(cartpole_episodes, tmp_path / "new.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demos.npz"]
    assert target.read_bytes() == old_bytes


@pytest.mark.skipif(os.name != "posix", reason="POSIX file permissions")
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_file_has_the_permissions_of_a_new_file(tmp_path, cartpole_episodes, umask):
    previous = os.umask(umask)
    try:
        save_episodes(cartpole_episodes[:1], tmp_path / "demos.npz")
        save_episodes(cartpole_episodes[:1], tmp_path / "demos.npz")  # overwriting too
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "demos.npz").stat().st_mode) == 0o666 & ~umask


def test_save_no_episodes(tmp_path):
    with pytest.raises(ValueError, match="No episodes"):
        save_episodes([], tmp_path / "demos.npz")
    assert not (tmp_path / "demos.npz").exists()


# ------------------------------------------------------------------------------------------------------
# Minari and imitation formats
# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari_datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def create_minari_dataset(
    dataset_id: str, episodes: list[Any], data_format: str, observation_space: spaces.Space | None = None
) -> None:
    minari = pytest.importorskip("minari")
    buffers = [
        minari.data_collector.EpisodeBuffer(
            observations=episode.observations,
            actions=episode.actions,
            rewards=list(episode.rewards),
            terminations=[False] * (len(episode.actions) - 1) + [episode.terminated],
            truncations=[False] * (len(episode.actions) - 1) + [episode.truncated],
            infos={},
        )
        for episode in episodes
    ]
    if observation_space is None:
        minari.create_dataset_from_buffers(dataset_id, buffers, env="CartPole-v1", data_format=data_format)
    else:
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            observation_space=observation_space,
            action_space=spaces.Discrete(2),
            data_format=data_format,
        )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("data_format", ["arrow", "hdf5"])
def test_minari_round_trip(minari_root, cartpole_episodes, data_format):
    dataset_id = f"rate/cartpole-{data_format}-v0"
    create_minari_dataset(dataset_id, cartpole_episodes, data_format)
    dataset_dir = minari_root / dataset_id
    assert_same_episodes(load_minari(dataset_id), cartpole_episodes)
    assert_same_episodes(load_minari(dataset_dir), cartpole_episodes)
    assert_same_episodes(load_minari(dataset_dir / "data"), cartpole_episodes)
    assert_same_episodes(load_demonstrations(dataset_id), cartpole_episodes)
    assert_same_episodes(load_demonstrations(str(dataset_dir)), cartpole_episodes)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("data_format", ["arrow", "hdf5"])
def test_minari_dict_observations_round_trip(minari_root, cartpole_episodes, data_format):
    # a flat Dict observation (an image beside a vector, MiniGrid's {"image", "direction"}) loads as a dict
    space = spaces.Dict(
        {"cart": spaces.Box(-np.inf, np.inf, (2,), np.float32), "pole": spaces.Box(-np.inf, np.inf, (2,), np.float32)}
    )
    episodes = [
        Episode(
            {"cart": e.observations[:, :2].copy(), "pole": e.observations[:, 2:].copy()},
            e.actions,
            e.rewards,
            e.terminated,
            e.truncated,
        )
        for e in cartpole_episodes
    ]
    create_minari_dataset(f"rate/dict-{data_format}-v0", episodes, data_format, space)
    assert_same_episodes(load_minari(f"rate/dict-{data_format}-v0"), episodes)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_minari_nested_dict_observations_are_refused_with_the_fix(minari_root, cartpole_episodes):
    # not an Episode (which refuses nested dicts itself): the fields Minari records
    nested = [
        SimpleNamespace(**{**vars(e), "observations": {"inner": {"x": e.observations}}}) for e in cartpole_episodes
    ]
    box = spaces.Box(-np.inf, np.inf, (4,), np.float32)
    create_minari_dataset("rate/nested-v0", nested, "hdf5", spaces.Dict({"inner": spaces.Dict({"x": box})}))
    with pytest.raises(ValueError, match=r"nested dict .*FlattenObservation on them\) and re-record"):
        load_minari("rate/nested-v0")


def test_minari_missing_id_never_downloads(minari_root):
    with pytest.raises(FileNotFoundError, match=r"'rate/absent-v0'.*minari_datasets.*MINARI_DATASETS_PATH.*never"):
        load_minari("rate/absent-v0")


def test_minari_directory_without_metadata(tmp_path):
    with pytest.raises(ValueError, match="not a Minari dataset directory"):
        load_minari(tmp_path)


def save_imitation_dataset(directory: Path, episodes: list[Episode], with_rewards: bool = True) -> None:
    datasets = pytest.importorskip("datasets")
    columns = {
        "obs": [episode.observations.tolist() for episode in episodes],
        "acts": [episode.actions.tolist() for episode in episodes],
        "infos": [[json.dumps({})] * episode.length for episode in episodes],
        "terminal": [episode.terminated for episode in episodes],
    }
    if with_rewards:
        columns["rews"] = [episode.rewards.tolist() for episode in episodes]
    datasets.Dataset.from_dict(columns).save_to_disk(str(directory))


def test_imitation_round_trip(tmp_path, cartpole_episodes):
    directory = tmp_path / "imitation_demos"
    save_imitation_dataset(directory, cartpole_episodes)
    loaded = load_imitation(directory)
    assert_same_episodes(loaded, cartpole_episodes)
    assert loaded[1].truncated and not loaded[1].terminated
    assert_same_episodes(load_demonstrations(directory), cartpole_episodes)


def test_imitation_without_rewards(tmp_path, cartpole_episodes):
    directory = tmp_path / "no_rewards"
    save_imitation_dataset(directory, cartpole_episodes, with_rewards=False)
    with pytest.raises(ValueError, match="RATE needs rewards for return-to-go"):
        load_demonstrations(directory)


# ------------------------------------------------------------------------------------------------------
# load_demonstrations dispatch
# ------------------------------------------------------------------------------------------------------


def test_load_demonstrations_list_and_npz(tmp_path, cartpole_episodes):
    assert load_demonstrations(cartpole_episodes) == cartpole_episodes
    assert load_demonstrations(tuple(cartpole_episodes)) == cartpole_episodes
    save_episodes(cartpole_episodes, tmp_path / "demos.npz")
    assert_same_episodes(load_demonstrations(tmp_path / "demos.npz"), cartpole_episodes)
    assert_same_episodes(load_demonstrations(str(tmp_path / "demos.npz")), cartpole_episodes)


@pytest.mark.parametrize("source", ["missing_demos.npz", "./missing_dir", "demos.pkl"])
def test_load_demonstrations_missing_path(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=source.lstrip("./").replace(".", r"\.")):
        load_demonstrations(source)


def test_load_demonstrations_rejects_empty_and_foreign(tmp_path):
    with pytest.raises(ValueError, match=r"no episodes in \[\]"):
        load_demonstrations([])
    with pytest.raises(TypeError, match="Demonstration 0 is a dict"):
        load_demonstrations([{"observations": []}])
    with pytest.raises(ValueError, match="Cannot tell the demonstration format"):
        load_demonstrations(tmp_path)


# ------------------------------------------------------------------------------------------------------
# validate_episodes
# ------------------------------------------------------------------------------------------------------

CARTPOLE_OBS = spaces.Box(-np.inf, np.inf, (4,), np.float32)
IMAGE_OBS = spaces.Box(0, 255, (6, 5, 3), np.uint8)


def test_validate_accepts_matching_episodes(rng, cartpole_episodes):
    validate_episodes(cartpole_episodes, CARTPOLE_OBS, spaces.Discrete(2))
    validate_episodes([random_episode(rng, "image", 3)], IMAGE_OBS, spaces.Discrete(3))
    validate_episodes([random_episode(rng, "box", 3)], spaces.Box(-5, 5, (3,)), spaces.Box(-2, 2, (1,)))
    integer_observations = Episode(np.ones((3, 4), np.int64), np.array([0, 1]), np.ones(2), True, False)
    validate_episodes([integer_observations], CARTPOLE_OBS, spaces.Discrete(2))


def with_field(episode: Episode, **fields) -> Episode:
    values = dict(vars(episode))
    values.update(fields)
    return Episode(**values)


@pytest.mark.parametrize(
    "change, observation_space, action_space, message",
    [
        ({"observations": np.zeros((6, 3), np.float32)}, CARTPOLE_OBS, spaces.Discrete(2), r"shape \(3,\)"),
        ({"actions": np.array([0, 1, 2, 0, 1])}, CARTPOLE_OBS, spaces.Discrete(2), "'actions' is outside"),
        ({"actions": np.array([0, 1, 1, 0, 1]) + 3}, CARTPOLE_OBS, spaces.Discrete(2, start=3), None),
        ({"actions": np.full(5, 0.5)}, CARTPOLE_OBS, spaces.Discrete(2), "'actions' has dtype float64"),
        ({"rewards": np.array([0, 1, np.nan, 0, 0])}, CARTPOLE_OBS, spaces.Discrete(2), "'rewards'.*step 2"),
        ({"observations": np.full((6, 4), np.inf)}, CARTPOLE_OBS, spaces.Discrete(2), "NaN or inf at step 0"),
        ({}, spaces.Box(-1, 1, (4,)), spaces.Discrete(2), "'observations' is outside"),
        ({"actions": np.zeros((5, 2))}, CARTPOLE_OBS, spaces.Box(-1, 1, (1,)), r"'actions' has per-step shape"),
        ({"actions": np.full((5, 1), np.nan)}, CARTPOLE_OBS, spaces.Box(-1, 1, (1,)), "'actions' holds NaN"),
    ],
)
def test_validate_names_episode_and_field(rng, change, observation_space, action_space, message):
    action_space.seed(0)
    valid_actions = np.stack([action_space.sample() for _ in range(5)])
    episodes = [random_episode(rng, "discrete", 5), random_episode(rng, "discrete", 5)]
    episodes[0] = with_field(episodes[0], observations=np.clip(episodes[0].observations, -1, 1))
    episodes[0] = with_field(episodes[0], actions=valid_actions)
    episodes[1] = with_field(episodes[1], **{"actions": valid_actions, **change})
    if message is None:
        validate_episodes(episodes[1:], observation_space, action_space)
        return
    with pytest.raises(ValueError, match=f"my demos: episode 1 field .*{message}"):
        validate_episodes(episodes, observation_space, action_space, source="my demos")


def test_validate_wrong_dtype_for_image_space(rng):
    episode = random_episode(rng, "image", 3)
    scaled = with_field(episode, observations=episode.observations / 255.0)
    with pytest.raises(ValueError, match=r"episode 0 field 'observations' has dtype float64.*not scaled"):
        validate_episodes([scaled], IMAGE_OBS, spaces.Discrete(3))


def test_validate_out_of_range_image_values(rng):
    episode = random_episode(rng, "image", 3)
    too_bright = with_field(episode, observations=episode.observations.astype(np.int64) + 300)
    with pytest.raises(ValueError, match="'observations' is outside"):
        validate_episodes([too_bright], IMAGE_OBS, spaces.Discrete(3))


def test_validate_names_the_key_of_dict_observations():
    space = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)})
    observations = {"a": np.zeros((3, 2), np.float32), "b": np.array([0, 2, 3])}
    with pytest.raises(ValueError, match=r"episode 0 field 'observations\['b'\]' is outside"):
        validate_episodes([Episode(observations, np.array([0, 1]), np.ones(2), True, False)], space, spaces.Discrete(2))


def test_validate_unsupported_spaces_and_empty(cartpole_episodes):
    nested = spaces.Dict({"position": spaces.Dict({"x": CARTPOLE_OBS})})
    with pytest.raises(ValueError, match="cannot encode the key 'position' of the Dict observation"):
        validate_episodes(cartpole_episodes, nested, spaces.Discrete(2))
    with pytest.raises(ValueError, match=r"'observations' must be a dict with the keys \['position'\]"):
        validate_episodes(cartpole_episodes, spaces.Dict({"position": CARTPOLE_OBS}), spaces.Discrete(2))
    with pytest.raises(ValueError, match="does not support the action space Tuple"):
        validate_episodes(cartpole_episodes, CARTPOLE_OBS, spaces.Tuple([spaces.Discrete(2)]))
    with pytest.raises(ValueError, match="no episodes in demonstrations"):
        validate_episodes([], CARTPOLE_OBS, spaces.Discrete(2))


# ------------------------------------------------------------------------------------------------------
# collect_episodes
# ------------------------------------------------------------------------------------------------------


def test_collect_with_ppo_on_three_envs():
    vec_env = DummyVecEnv([make_counter_env] * 3)
    model = PPO("MlpPolicy", vec_env, n_steps=8, batch_size=8, policy_kwargs={"net_arch": [8]}, seed=0)
    calls = []
    original_predict = model.predict

    def spy_predict(observation, state=None, episode_start=None, deterministic=False):
        calls.append(episode_start.copy())
        return original_predict(observation, state=state, episode_start=episode_start, deterministic=deterministic)

    model.predict = spy_predict
    episodes = collect_episodes(model, vec_env, n_episodes=7, seed=1)
    assert len(episodes) == 7
    for episode in episodes:
        assert_counter_episode(episode)
    assert calls[0].all() and not calls[1].any()
    assert sum(call.sum() for call in calls[1:]) >= 7 - 3
    validate_episodes(episodes, vec_env.observation_space, vec_env.action_space)


def test_collect_with_ppo_box_actions_from_env_id():
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=8, batch_size=8, policy_kwargs={"net_arch": [8]}, seed=0)
    (episode,) = collect_episodes(model.policy, "Pendulum-v1", n_episodes=1, seed=0, deterministic=False)
    assert episode.length == 200 and episode.truncated and not episode.terminated
    assert episode.actions.shape == (200, 1) and episode.actions.dtype == np.float32
    assert np.all(np.abs(episode.actions) <= 2.0)
    assert episode.observations.shape == (201, 3)


def test_collect_with_privileged_expert_gives_each_env_its_own_expert():
    expert = ParityExpert()
    episodes = collect_episodes(expert, make_counter_env, n_episodes=9, n_envs=3, seed=0)
    assert len(episodes) == 9
    for episode in episodes:
        assert_counter_episode(episode)
        expected_parity = 0 if episode.truncated else episode.length % 2
        np.testing.assert_array_equal(episode.actions, expected_parity)


def test_collect_with_expert_requires_dummy_vec_env():
    vec_env = SubprocVecEnv([make_counter_env], start_method="fork")
    try:
        with pytest.raises(TypeError, match="needs a DummyVecEnv; got SubprocVecEnv"):
            collect_episodes(ParityExpert(), vec_env, n_episodes=1)
    finally:
        vec_env.close()


def test_collect_with_callable_is_reproducible():
    def always_one(observations: np.ndarray) -> np.ndarray:
        return np.ones(len(observations), dtype=np.int32)

    first = collect_episodes(always_one, make_counter_env(), n_episodes=4, seed=3, progress_bar=True)
    second = collect_episodes(always_one, make_counter_env(), n_episodes=4, seed=3)
    assert_same_episodes(first, second)
    for episode in first:
        assert_counter_episode(episode)
        np.testing.assert_array_equal(episode.actions, 1)


def test_collect_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_episodes must be at least 1"):
        collect_episodes(lambda obs: obs, make_counter_env(), n_episodes=0)
    with pytest.raises(TypeError, match="Cannot collect episodes from a int"):
        collect_episodes(3, make_counter_env(), n_episodes=1)
    with pytest.raises(ValueError, match="n_envs=2 only applies"):
        collect_episodes(lambda obs: obs, make_counter_env(), n_episodes=1, n_envs=2)
    dict_env = gym.make("CartPole-v1")
    dict_env.observation_space = spaces.Dict({"state": spaces.Dict({"x": dict_env.observation_space})})
    with pytest.raises(ValueError, match="cannot encode the key 'state'"):
        collect_episodes(lambda obs: obs, dict_env, n_episodes=1)


def test_collected_episodes_round_trip_through_npz(tmp_path):
    episodes = collect_episodes(lambda obs: np.zeros(len(obs), int), "CartPole-v1", n_episodes=2, seed=0)
    save_episodes(episodes, tmp_path / "cartpole.npz")
    assert_same_episodes(load_demonstrations(tmp_path / "cartpole.npz"), episodes)
    env = gym.make("CartPole-v1")
    validate_episodes(episodes, env.observation_space, env.action_space)
    assert data.Episode is Episode
