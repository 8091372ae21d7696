"""Collecting demonstrations: run a policy, an SB3 model or an env's privileged expert over a VecEnv."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm.auto import tqdm

from rate_sb3.data import Episode
from rate_sb3.encoders import check_spaces
from rate_sb3.envs.experts import PrivilegedExpert
from rate_sb3.observations import env_row, map_observations, stack_observations

PolicySource = BaseAlgorithm | BasePolicy | PrivilegedExpert | Callable[[np.ndarray], Any]
EnvSource = VecEnv | gym.Env | str | Callable[[], gym.Env]


class _PolicyRunner:
    """Chooses actions for every sub-env of a VecEnv from a policy, an expert or a callable."""

    def episode_started(self, env_index: int) -> None:
        """Called after sub-env ``env_index`` was reset."""

    def act(self, observations: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _SB3Runner(_PolicyRunner):
    def __init__(self, model: BaseAlgorithm | BasePolicy, n_envs: int, deterministic: bool) -> None:
        self.model, self.deterministic = model, deterministic
        self.state: tuple[np.ndarray, ...] | None = None
        self.episode_start = np.ones(n_envs, dtype=bool)

    def episode_started(self, env_index: int) -> None:
        self.episode_start[env_index] = True

    def act(self, observations: np.ndarray) -> np.ndarray:
        actions, self.state = self.model.predict(
            observations, state=self.state, episode_start=self.episode_start, deterministic=self.deterministic
        )
        self.episode_start[:] = False
        return actions


class _ExpertRunner(_PolicyRunner):
    def __init__(self, expert: PrivilegedExpert, vec_env: VecEnv) -> None:
        dummy_vec_env = vec_env.unwrapped
        if not isinstance(dummy_vec_env, DummyVecEnv):
            raise TypeError(
                f"A PrivilegedExpert reads the sub-envs' hidden state, which needs a DummyVecEnv; got "
                f"{type(dummy_vec_env).__name__}. Pass a DummyVecEnv, a gym.Env or an env id."
            )
        self.sub_envs = dummy_vec_env.envs
        # Each sub-env gets its own expert so per-episode expert state does not leak between envs.
        self.experts = [expert] + [copy.deepcopy(expert) for _ in self.sub_envs[1:]]

    def episode_started(self, env_index: int) -> None:
        self.experts[env_index].reset(self.sub_envs[env_index])

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.array([expert.act(env) for expert, env in zip(self.experts, self.sub_envs)])


class _CallableRunner(_PolicyRunner):
    def __init__(self, policy: Callable[[np.ndarray], Any]) -> None:
        self.policy = policy

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy(observations))


def _make_runner(source: PolicySource, vec_env: VecEnv, deterministic: bool) -> _PolicyRunner:
    if isinstance(source, PrivilegedExpert):
        return _ExpertRunner(source, vec_env)
    if isinstance(source, (BaseAlgorithm, BasePolicy)):
        return _SB3Runner(source, vec_env.num_envs, deterministic)
    if callable(source):
        return _CallableRunner(source)
    raise TypeError(
        f"Cannot collect episodes from a {type(source).__name__}: pass a Stable-Baselines3 model or policy, "
        "a rate_sb3.envs.experts.PrivilegedExpert, or a callable mapping an observation batch to actions."
    )


def _as_vec_env(env: EnvSource, n_envs: int | None) -> tuple[VecEnv, bool]:
    """Return the VecEnv to run and whether it was built here (and so must be closed here)."""
    if isinstance(env, (VecEnv, gym.Env)) and n_envs not in (None, getattr(env, "num_envs", 1)):
        raise ValueError(f"n_envs={n_envs} only applies to env ids and env factories, got {env}.")
    if isinstance(env, VecEnv):
        return env, False
    if isinstance(env, gym.Env):
        return DummyVecEnv([lambda: env]), False
    if isinstance(env, str):
        return DummyVecEnv([functools.partial(gym.make, env)] * (n_envs or 1)), True
    if callable(env):
        return DummyVecEnv([env] * (n_envs or 1)), True
    raise TypeError(f"env must be a VecEnv, a gym.Env, an env id or an env factory, got {type(env).__name__}.")


class _EpisodeRecorder:
    """Accumulates one sub-env's current episode."""

    def __init__(self, first_observation: np.ndarray) -> None:
        self.observations = [first_observation]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []

    def add_step(self, action: np.ndarray, reward: float, next_observation: np.ndarray) -> None:
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.observations.append(next_observation)

    def to_episode(self, info: dict[str, Any]) -> Episode:
        truncated = bool(info.get("TimeLimit.truncated", False))
        return Episode(
            observations=stack_observations(self.observations),
            actions=np.stack(self.actions),
            rewards=np.asarray(self.rewards, dtype=np.float32),
            terminated=not truncated,
            truncated=truncated,
        )


def _format_action(action: Any, space: spaces.Space) -> np.ndarray:
    dtype = np.int64 if isinstance(space, spaces.Discrete) else space.dtype
    return np.asarray(action).reshape(space.shape).astype(dtype)


def _run_episodes(
    runner: _PolicyRunner, vec_env: VecEnv, n_episodes: int, seed: int | None, progress_bar: bool
) -> list[Episode]:
    n_envs = vec_env.num_envs
    # Fixed per-env quotas (as in SB3's evaluate_policy) so short episodes are not over-represented.
    quotas = [(n_episodes + env_index) // n_envs for env_index in range(n_envs)]
    if seed is not None:
        vec_env.seed(seed)
    observations = vec_env.reset()
    recorders = [_EpisodeRecorder(env_row(observations, env_index)) for env_index in range(n_envs)]
    for env_index in range(n_envs):
        runner.episode_started(env_index)
    episodes: list[Episode] = []
    with tqdm(total=n_episodes, disable=not progress_bar, unit="episode") as bar:
        while len(episodes) < n_episodes:
            actions = runner.act(observations)
            observations, rewards, dones, infos = vec_env.step(actions)
            for env_index in range(n_envs):
                action = _format_action(actions[env_index], vec_env.action_space)
                if not dones[env_index]:
                    recorders[env_index].add_step(action, rewards[env_index], env_row(observations, env_index))
                    continue
                if "terminal_observation" not in infos[env_index]:
                    raise KeyError(f"{type(vec_env).__name__} did not put 'terminal_observation' in infos.")
                terminal_observation = infos[env_index]["terminal_observation"]
                recorders[env_index].add_step(
                    action, rewards[env_index], map_observations(terminal_observation, np.array)
                )
                if quotas[env_index] > 0:
                    quotas[env_index] -= 1
                    episodes.append(recorders[env_index].to_episode(infos[env_index]))
                    bar.update(1)
                recorders[env_index] = _EpisodeRecorder(env_row(observations, env_index))
                runner.episode_started(env_index)
    return episodes


def collect_episodes(
    source: PolicySource,
    env: EnvSource,
    n_episodes: int,
    *,
    deterministic: bool = True,
    seed: int | None = None,
    progress_bar: bool = False,
    n_envs: int | None = None,
) -> list[Episode]:
    """
    Run a policy until exactly ``n_episodes`` complete episodes are gathered.

    Each sub-env contributes whole episodes (a fixed share of ``n_episodes``); unfinished episodes
    are discarded. Observations are stored as the VecEnv returns them (after any VecEnv wrapper,
    before any policy preprocessing), the final one taken from ``infos[i]["terminal_observation"]``,
    and truncation from ``infos[i]["TimeLimit.truncated"]``.

    :param source: A Stable-Baselines3 model or policy (recurrent state is passed through ``predict``),
        a :class:`~rate_sb3.envs.experts.PrivilegedExpert` (needs a DummyVecEnv; each sub-env
        gets its own copy of the expert), or a callable mapping an observation batch to an action batch.
    :param env: A VecEnv, a gym.Env, an env id or a callable returning an env.
    :param n_episodes: Number of complete episodes to return.
    :param deterministic: Passed to ``predict`` of SB3 models and policies.
    :param seed: Seed for the VecEnv's first reset (``env.seed(seed)``).
    :param progress_bar: Show a tqdm progress bar over episodes.
    :param n_envs: Number of sub-envs to build when ``env`` is an id or a callable (default 1).
    :return: The episodes, in the order they finished.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}.")
    if isinstance(env, gym.Env):  # before SB3's DummyVecEnv refuses a nested Dict with less to go on
        check_spaces(env.observation_space, env.action_space)
    vec_env, built_here = _as_vec_env(env, n_envs)
    try:
        check_spaces(vec_env.observation_space, vec_env.action_space)
        runner = _make_runner(source, vec_env, deterministic)
        return _run_episodes(runner, vec_env, n_episodes, seed, progress_bar)
    finally:
        if built_here:
            vec_env.close()
