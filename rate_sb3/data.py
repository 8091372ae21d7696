"""Demonstrations for RATE: the :class:`Episode` container, loading, validation and collection.

Demonstrations come from our ``.npz`` files (:func:`save_episodes`), local Minari datasets,
imitation-library datasets, or are collected by running a policy or a privileged expert
(:func:`collect_episodes`). :func:`load_demonstrations` picks the right loader.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm.auto import tqdm

from rate_sb3.demo_formats import (
    load_demonstrations,
    load_episodes_npz,
    load_imitation,
    load_minari,
    save_episodes,
)
from rate_sb3.envs.experts import PrivilegedExpert

__all__ = [
    "Episode",
    "collect_episodes",
    "load_demonstrations",
    "load_episodes_npz",
    "load_imitation",
    "load_minari",
    "save_episodes",
    "validate_episodes",
]

PolicySource = BaseAlgorithm | BasePolicy | PrivilegedExpert | Callable[[np.ndarray], Any]
EnvSource = VecEnv | gym.Env | str | Callable[[], gym.Env]
SUPPORTED_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
# Observations larger than this many elements are bounds-checked on a strided sample of steps.
MAX_BOUNDS_CHECKED_ELEMENTS = 4_000_000
_DIFFERENT_ENV_HINT = (
    "The demonstrations were probably recorded on a different env or wrapper: "
    "re-collect them on the training env with rate_sb3.data.collect_episodes."
)


@dataclass(eq=False)
class Episode:
    """
    One episode of a demonstration.

    :param observations: Shape (T + 1, *obs_shape), including the observation after the last step.
    :param actions: Shape (T, *act_shape); Discrete actions are int64 of shape (T,).
    :param rewards: Shape (T,), stored as float32.
    :param terminated: The episode ended in a terminal state (no reward follows).
    :param truncated: The episode was cut short (e.g. by a time limit).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations)
        self.actions = np.asarray(self.actions)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminated, self.truncated = bool(self.terminated), bool(self.truncated)
        if self.actions.ndim == 0 or self.observations.ndim == 0 or self.rewards.ndim != 1:
            raise ValueError(
                "Episode fields need a leading time axis: got observations of shape "
                f"{self.observations.shape}, actions {self.actions.shape}, rewards {self.rewards.shape}."
            )
        n_steps = len(self.actions)
        if n_steps < 1:
            raise ValueError("Episode field 'actions' has length 0: an episode needs at least one step.")
        if len(self.observations) != n_steps + 1:
            raise ValueError(
                f"Episode field 'observations' has length {len(self.observations)} but 'actions' has length "
                f"{n_steps}: observations must hold T + 1 = {n_steps + 1} entries, the final one included."
            )
        if len(self.rewards) != n_steps:
            raise ValueError(
                f"Episode field 'rewards' has length {len(self.rewards)} but 'actions' has length {n_steps}."
            )

    @property
    def length(self) -> int:
        """Number of steps T."""
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        """Undiscounted sum of rewards."""
        return float(self.rewards.sum(dtype=np.float64))


# --------------------------------------------------------------------------------------------------------
# Validation against the env's spaces
# --------------------------------------------------------------------------------------------------------


def check_supported_space(space: spaces.Space, role: str) -> None:
    """
    Raise a ValueError when RATE cannot handle ``space``.

    :param space: The observation or action space.
    :param role: ``"observation"`` or ``"action"``, used in the message.
    """
    if not isinstance(space, SUPPORTED_SPACES):
        raise ValueError(
            f"RATE does not support the {role} space {space} ({type(space).__name__}); it supports Box, "
            "Discrete, MultiDiscrete and MultiBinary. Flatten Dict/Tuple spaces first, "
            "e.g. with gymnasium.wrappers.FlattenObservation."
        )


def _integer_range(space: spaces.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive (low, high) of an integer space, or None for Box."""
    if isinstance(space, spaces.Discrete):
        return np.asarray(space.start), np.asarray(space.start + space.n - 1)
    if isinstance(space, spaces.MultiDiscrete):
        return space.start, space.start + space.nvec - 1
    if isinstance(space, spaces.MultiBinary):
        return np.zeros(space.shape), np.ones(space.shape)
    return None


def _dtype_fits(data_dtype: np.dtype, space: spaces.Space) -> bool:
    """Integer data fits any numeric space; float data fits only float Box spaces."""
    if data_dtype.kind in "biu":
        return True
    return isinstance(space, spaces.Box) and data_dtype.kind == "f" and space.dtype.kind == "f"


def _first_bad_step(mask: np.ndarray) -> int:
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def _out_of_bounds(values: np.ndarray, space: spaces.Space) -> np.ndarray:
    """Per-element mask of values outside the space (with a small tolerance for Box bounds)."""
    integer_range = _integer_range(space)
    if integer_range is not None:
        low, high = integer_range
        return (values < low) | (values > high)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return (values < low - _bound_tolerance(low)) | (values > high + _bound_tolerance(high))


def _bound_tolerance(bound: np.ndarray) -> np.ndarray:
    """Slack allowed past a Box bound, for float rounding (infinite bounds never bind)."""
    return 1e-6 + 1e-5 * np.abs(np.where(np.isfinite(bound), bound, 0.0))


def _check_field(
    values: np.ndarray, space: spaces.Space, field: str, index: int, source: str, check_bounds: bool
) -> None:
    def fail(problem: str, fix: str = _DIFFERENT_ENV_HINT) -> ValueError:
        return ValueError(f"{source}: episode {index} field '{field}' {problem}. {fix}")

    if values.shape[1:] != space.shape:
        raise fail(f"has per-step shape {values.shape[1:]} but the space {space} expects {space.shape}")
    if not _dtype_fits(values.dtype, space):
        raise fail(
            f"has dtype {values.dtype}, which cannot be cast safely to the space {space}",
            "Store raw env data, not scaled or normalized values: integers for image, Discrete and "
            "MultiDiscrete spaces (e.g. values.astype(np.int64)).",
        )
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise fail(f"holds NaN or inf at step {_first_bad_step(~np.isfinite(values))}", "Drop or fix that episode.")
    if not check_bounds:
        return
    stride = max(1, values.size // MAX_BOUNDS_CHECKED_ELEMENTS)
    outside = _out_of_bounds(values[::stride], space)
    if np.any(outside):
        raise fail(f"is outside the space {space} at step {stride * _first_bad_step(outside)}")


def validate_episodes(
    episodes: Sequence[Episode],
    observation_space: spaces.Space,
    action_space: spaces.Space,
    source: str = "demonstrations",
) -> None:
    """
    Check that demonstrations match an env's spaces, raising a ValueError that names the episode and field.

    Checked: observation and action shapes, dtypes that cast safely (integer data may fill float Box
    spaces, float data may not fill integer spaces), NaN/inf in observations, actions and rewards,
    observations inside a Box's finite bounds (a strided sample for very large data) and
    integer actions/observations inside Discrete, MultiDiscrete and MultiBinary ranges.
    Continuous actions are not bounds-checked.

    :param episodes: The demonstrations.
    :param observation_space: The env's observation space.
    :param action_space: The env's action space.
    :param source: Where the episodes come from, used in error messages.
    """
    check_supported_space(observation_space, "observation")
    check_supported_space(action_space, "action")
    if len(episodes) == 0:
        raise ValueError(f"no episodes in {source}")
    for index, episode in enumerate(episodes):
        if not isinstance(episode, Episode):
            raise ValueError(f"{source}: episode {index} is a {type(episode).__name__}, not an Episode.")
        _check_field(episode.observations, observation_space, "observations", index, source, True)
        check_action_bounds = not isinstance(action_space, spaces.Box)
        _check_field(episode.actions, action_space, "actions", index, source, check_action_bounds)
        if not np.all(np.isfinite(episode.rewards)):
            step = _first_bad_step(~np.isfinite(episode.rewards))
            raise ValueError(
                f"{source}: episode {index} field 'rewards' holds NaN or inf at step {step}. Drop or fix that episode."
            )


# --------------------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------------------


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
        self.observations = [np.array(first_observation)]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []

    def add_step(self, action: np.ndarray, reward: float, next_observation: np.ndarray) -> None:
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.observations.append(np.array(next_observation))

    def to_episode(self, info: dict[str, Any]) -> Episode:
        truncated = bool(info.get("TimeLimit.truncated", False))
        return Episode(
            observations=np.stack(self.observations),
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
    recorders = [_EpisodeRecorder(observations[env_index]) for env_index in range(n_envs)]
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
                    recorders[env_index].add_step(action, rewards[env_index], observations[env_index])
                    continue
                if "terminal_observation" not in infos[env_index]:
                    raise KeyError(f"{type(vec_env).__name__} did not put 'terminal_observation' in infos.")
                terminal_observation = infos[env_index]["terminal_observation"]
                recorders[env_index].add_step(action, rewards[env_index], terminal_observation)
                if quotas[env_index] > 0:
                    quotas[env_index] -= 1
                    episodes.append(recorders[env_index].to_episode(infos[env_index]))
                    bar.update(1)
                recorders[env_index] = _EpisodeRecorder(observations[env_index])
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
    vec_env, built_here = _as_vec_env(env, n_envs)
    try:
        check_supported_space(vec_env.observation_space, "observation")
        check_supported_space(vec_env.action_space, "action")
        runner = _make_runner(source, vec_env, deterministic)
        return _run_episodes(runner, vec_env, n_episodes, seed, progress_bar)
    finally:
        if built_here:
            vec_env.close()
