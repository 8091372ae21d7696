"""One episode of a demonstration or of online collection: the container every other module passes around."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rate_sb3.lazy_frames import LazyFrames
from rate_sb3.observations import arrays, leading_length, map_observations


@dataclass(eq=False)
class Episode:
    """
    One episode of a demonstration.

    :param observations: Shape (T + 1, *obs_shape), including the observation after the last step; for a Dict
        observation space, a dict of such arrays, one per key.
    :param actions: Shape (T, *act_shape); Discrete actions are int64 of shape (T,).
    :param rewards: Shape (T,), stored as float32.
    :param terminated: The episode ended in a terminal state (no reward follows).
    :param truncated: The episode was cut short (e.g. by a time limit).
    """

    observations: np.ndarray | dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        self.observations = map_observations(self.observations, _in_memory_unless_lazy)
        self.actions = np.asarray(self.actions)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminated, self.truncated = bool(self.terminated), bool(self.truncated)
        observation_shapes = map_observations(self.observations, np.shape)
        if self.actions.ndim == 0 or self.rewards.ndim != 1 or any(a.ndim == 0 for a in arrays(self.observations)):
            raise ValueError(
                "Episode fields need a leading time axis: got observations of shape "
                f"{observation_shapes}, actions {self.actions.shape}, rewards {self.rewards.shape}."
            )
        n_steps = len(self.actions)
        if n_steps < 1:
            raise ValueError("Episode field 'actions' has length 0: an episode needs at least one step.")
        n_observations = leading_length(self.observations)
        if n_observations != n_steps + 1:
            raise ValueError(
                f"Episode field 'observations' has length {n_observations} but 'actions' has length "
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


def _in_memory_unless_lazy(values: object) -> np.ndarray | LazyFrames:
    """An array of the values; frames read lazily from disk stay there."""
    return values if isinstance(values, LazyFrames) else np.asarray(values)
