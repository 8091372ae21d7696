"""Memory Maze (MemoryMaze-9x9-v0): the gymnasium env over memory_maze's dm_env task, its privileged expert, and RATE
pretraining and predicting on it (a few dozen env steps each; MuJoCo renders headless through EGL)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from test_zoo import TINY_RATE, predict_steps

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.envs import EXPERTS, MemoryMazeEnv, MemoryMazeExpert, make_env, make_expert
from rate_sb3.envs.memory_maze import FORWARD, FORWARD_LEFT, LEFT, RIGHT, shortest_path

pytest.importorskip("memory_maze", reason="pip install 'rate_sb3[memorymaze]'")

MAZE = "MemoryMaze-9x9-v0"


def rollout(env: gym.Env, seed: int, actions: list[int]) -> tuple[np.ndarray, list[float]]:
    """The frames and rewards of ``actions`` played from ``reset(seed=seed)``."""
    frames, rewards = [env.reset(seed=seed)[0]], []
    for action in actions:
        frame, reward, *_ = env.step(action)
        frames.append(frame)
        rewards.append(reward)
    return np.stack(frames), rewards


@pytest.fixture(scope="module")
def maze() -> Iterator[gym.Env]:
    env = make_env(MAZE)
    yield env
    env.close()


def test_spaces_and_registration(maze: gym.Env) -> None:
    assert isinstance(maze.unwrapped, MemoryMazeEnv) and maze.unwrapped.size == 9
    assert maze.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert maze.action_space == gym.spaces.Discrete(6)
    observation, info = maze.reset(seed=0)
    assert maze.observation_space.contains(observation) and info == {}
    assert observation.std() > 10  # a rendered view, not a blank frame
    observation, reward, terminated, truncated, _ = maze.step(FORWARD)
    assert maze.observation_space.contains(observation) and reward == 0.0 and not (terminated or truncated)
    assert gym.spec(MAZE).max_episode_steps is None  # the task truncates itself after 1,000 steps
    assert EXPERTS[MAZE] is MemoryMazeExpert


def test_seeded_resets_are_reproducible(maze: gym.Env) -> None:
    actions = [FORWARD, LEFT, FORWARD_LEFT, RIGHT, FORWARD]
    first, _ = rollout(maze, 3, actions)
    layout = maze.unwrapped.privileged["maze_layout"].copy()
    again, _ = rollout(maze, 3, actions)
    np.testing.assert_array_equal(first, again)
    other, _ = rollout(maze, 4, actions[:1])
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(layout, maze.unwrapped.privileged["maze_layout"])


def test_bad_input_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"size must be one of \(9, 11, 13, 15\), got 10"):
        MemoryMazeEnv(size=10)
    with pytest.raises(TypeError, match="MemoryMazeExpert needs a MemoryMazeEnv .* got CartPoleEnv"):
        MemoryMazeExpert().act(gym.make("CartPole-v1"))
    with pytest.raises(TypeError, match="needs a reset MemoryMazeEnv"):
        MemoryMazeExpert().act(MemoryMazeEnv())
    with pytest.raises(TypeError, match=r"Unknown keyword argument\(s\) \['noise'\] for MemoryMazeExpert"):
        make_expert(MAZE, noise=0.1)
    monkeypatch.setitem(sys.modules, "memory_maze", None)  # as if memory-maze were not installed
    with pytest.raises(ImportError, match=r"pip install 'rate_sb3\[memorymaze\]'"):
        MemoryMazeEnv()


def test_shortest_path_follows_free_cells() -> None:
    layout = np.array([[1, 1, 1], [0, 0, 1], [1, 1, 1]])  # layout[y, x]: a Z-shaped corridor
    assert shortest_path(layout, (0, 0), (0, 2)) == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (1, 2), (0, 2)]
    assert shortest_path(np.array([[1, 0, 1]]), (0, 0), (2, 0)) == [(0, 0)]  # walled off: stay


def test_the_expert_touches_targets_and_random_play_does_not(maze: gym.Env) -> None:
    """Over the first 90 steps (of 1,000) of seed 2, the planner touches objects (measured: 3), random play none."""
    expert = make_expert(MAZE, seed=0)
    maze.reset(seed=2)
    expert.reset(maze)
    expert_return = sum(maze.step(expert.act(maze))[1] for _ in range(90))
    rng = np.random.default_rng(0)
    _, rewards = rollout(maze, 2, list(rng.integers(6, size=90)))
    assert expert_return >= 2 and sum(rewards) == 0, (expert_return, sum(rewards))


def test_rate_pretrains_on_expert_episodes_and_predicts() -> None:
    env = make_vec_env(make_env, env_kwargs={"env_id": MAZE, "max_episode_steps": 12}, wrapper_class=PrevRewardWrapper)
    spec = {"expert": "privileged", "n_episodes": 2, "expert_kwargs": {"error_rate": 0.3, "seed": 0}}
    model = RATE("RATEPolicy", env, demonstrations=spec, online=False, seed=0, device="cpu", **TINY_RATE)
    model.pretrain(2)
    demonstrations = model.replay_buffer.demonstrations
    assert [(len(episode.actions), episode.truncated) for episode in demonstrations] == [(12, True), (12, True)]
    predict_steps(model, env, 5)
    env.close()
