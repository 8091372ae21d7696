"""Demonstrations for RATE: the :class:`Episode` container, loading and validation.

Demonstrations come from our ``.npz`` files (:func:`save_episodes`), local Minari datasets,
imitation-library datasets, or are collected by running a policy or a privileged expert
(:func:`rate_sb3.collect.collect_episodes`). :func:`load_demonstrations` picks the right loader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from rate_sb3.demo_formats import (
    load_demonstrations,
    load_episodes_npz,
    load_imitation,
    load_minari,
    save_episodes,
)
from rate_sb3.image_datasets import LazyFrames

__all__ = [
    "Episode",
    "load_demonstrations",
    "load_episodes_npz",
    "load_imitation",
    "load_minari",
    "save_episodes",
    "validate_episodes",
]

SUPPORTED_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
# Observations larger than this many elements are bounds-checked on a strided sample of steps.
MAX_BOUNDS_CHECKED_ELEMENTS = 4_000_000
# Frames read lazily from disk are checked (NaN, bounds) on this many evenly spaced steps, not all of them.
LAZY_CHECKED_STEPS = 16
_DIFFERENT_ENV_HINT = (
    "The demonstrations were probably recorded on a different env or wrapper: "
    "re-collect them on the training env with rate_sb3.collect_episodes."
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
        if not isinstance(self.observations, LazyFrames):  # frames read from disk stay there
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
    sample_stride = -(-len(values) // LAZY_CHECKED_STEPS) if isinstance(values, LazyFrames) else 1
    values = values[::sample_stride]
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        step = sample_stride * _first_bad_step(~np.isfinite(values))
        raise fail(f"holds NaN or inf at step {step}", "Drop or fix that episode.")
    if not check_bounds:
        return
    stride = max(1, values.size // MAX_BOUNDS_CHECKED_ELEMENTS)
    outside = _out_of_bounds(values[::stride], space)
    if np.any(outside):
        raise fail(f"is outside the space {space} at step {sample_stride * stride * _first_bad_step(outside)}")


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
    observations inside a Box's finite bounds (a strided sample for very large data; for observations read
    lazily from an image dataset, NaN and bounds on 16 evenly spaced steps, so validation never reads them all) and
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
