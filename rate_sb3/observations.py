"""Observations that are one array, or a dict of arrays (an env's Dict observation), handled alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Observations = Any  # np.ndarray | th.Tensor, or a dict of them


def map_observations(observations: Observations, function: Callable[[Any], Any]) -> Observations:
    """``function`` applied to an observation array, or to each array of a dict of them."""
    if isinstance(observations, dict):
        return {key: function(value) for key, value in observations.items()}
    return function(observations)


def arrays(observations: Observations) -> list[Any]:
    """The arrays of an observation: itself, or a dict's values."""
    return list(observations.values()) if isinstance(observations, dict) else [observations]


def slice_observations(observations: Observations, steps: slice) -> Observations:
    """The steps ``steps`` of an observation array (per key for dicts)."""
    return map_observations(observations, lambda values: values[steps])


def window_steps(observations: Observations, steps: slice) -> Observations:
    """The steps ``steps`` of batched windows (B, W, *shape) (per key for dicts)."""
    return map_observations(observations, lambda values: values[:, steps])


def env_row(observations: Observations, index: int) -> Observations:
    """A copy of env ``index``'s observation in a VecEnv's batch (per key for dicts)."""
    return map_observations(observations, lambda values: np.array(values[index]))


def stack_observations(observations: Sequence[Observations]) -> Observations:
    """Per-step observations stacked along a new first axis (per key for dicts)."""
    if isinstance(observations[0], dict):
        return {key: np.stack([step[key] for step in observations]) for key in observations[0]}
    return np.stack(observations)


def concatenate_observations(observations: Sequence[Observations]) -> Observations:
    """Observation arrays concatenated along their first axis (per key for dicts)."""
    if isinstance(observations[0], dict):
        return {key: np.concatenate([part[key] for part in observations]) for key in observations[0]}
    return np.concatenate(observations)


def leading_length(observations: Observations) -> int:
    """Length of the first axis (the steps); a dict's arrays must all have it."""
    if not isinstance(observations, dict):
        return len(observations)
    lengths = {key: len(value) for key, value in observations.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the observation arrays of a Dict observation differ in length: {lengths}")
    return next(iter(lengths.values()))
