"""TrajectoryBuffer: whole episodes, hindsight returns-to-go, segment-aligned training windows."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import torch as th

from rate_sb3.data import Episode
from rate_sb3.observations import Observations, map_observations


@dataclass
class WindowBatch:
    """Segment-aligned training windows, right-padded; the first ``burn_in_segments`` carry no gradient."""

    observations: th.Tensor | dict[str, th.Tensor]  # (B, W, *obs_shape), or a dict of them (Dict observations)
    actions: th.Tensor  # (B, W, *act_shape) env actions
    returns_to_go: th.Tensor  # (B, W) scaled hindsight returns-to-go
    value_targets: th.Tensor  # (B, W) scaled discounted returns-to-go (the returns-to-go when undiscounted)
    valid: th.Tensor  # (B, W) bool, False on padding
    burn_in_segments: int
    from_demonstrations: th.Tensor  # (B,) bool


class TrajectoryBuffer:
    """Whole episodes for return-conditioned training.

    Demonstrations are kept apart and never evicted; online episodes fill a FIFO of ``capacity`` episodes.
    A batch draws ``demo_fraction`` of its windows from demonstrations when both kinds are present.
    Returns-to-go are relabelled from the rewards actually obtained (hindsight).

    :param capacity: maximum number of online episodes
    :param segment_len: K, env steps per segment
    :param return_scale: factor applied to returns-to-go
    :param demo_fraction: share of each batch drawn from demonstrations (when there are online episodes)
    :param start_at_zero: probability that a window starts at the episode start; otherwise a later
        segment-aligned start is drawn and the preceding segments are replayed as memory burn-in
    :param max_burn_in_segments: cap on the burn-in, in segments
    :param seed: seed of the sampling generator
    """

    def __init__(
        self,
        capacity: int = 1000,
        segment_len: int = 50,
        return_scale: float = 1.0,
        demo_fraction: float = 0.5,
        start_at_zero: float = 0.5,
        max_burn_in_segments: int = 16,
        seed: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity={capacity} must be >= 1 episode")
        if not 0.0 <= demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction={demo_fraction} must be in [0, 1]")
        self.capacity, self.segment_len, self.return_scale = capacity, segment_len, return_scale
        self.demo_fraction, self.start_at_zero = demo_fraction, start_at_zero
        self.max_burn_in_segments = max_burn_in_segments
        self.demonstrations: list[Episode] = []
        self.online: deque[Episode] = deque(maxlen=capacity)
        self.rng = np.random.default_rng(seed)
        self.max_return_to_go = -np.inf  # over every episode ever added, in raw reward units

    def __len__(self) -> int:
        return len(self.demonstrations) + len(self.online)

    def add_demonstrations(self, episodes: list[Episode]) -> None:
        self.demonstrations.extend(episodes)
        for episode in episodes:
            self._track_return_to_go(episode)

    def add(self, episode: Episode) -> None:
        self.online.append(episode)
        self._track_return_to_go(episode)

    def _track_return_to_go(self, episode: Episode) -> None:
        self.max_return_to_go = max(self.max_return_to_go, float(hindsight_returns(episode.rewards).max()))

    def sample(
        self, batch_size: int, n_segments: int, device: th.device | str = "cpu", value_gamma: float = 1.0
    ) -> WindowBatch:
        """Draw ``batch_size`` windows of ``n_segments`` segments, all with the same start segment; the value
        targets are the returns-to-go discounted by ``value_gamma``."""
        if len(self) == 0:
            raise ValueError("the trajectory buffer is empty: give demonstrations or collect episodes first")
        start = self._start_segment(n_segments)
        min_length = start * self.segment_len + 1
        chosen = self._choose_episodes(batch_size, min_length)
        window = n_segments * self.segment_len
        end = start * self.segment_len + window
        return self._collate(chosen, end, start, device, value_gamma)

    def _start_segment(self, n_segments: int) -> int:
        longest = max(ep.length for ep in (*self.demonstrations, *self.online))
        last_start = min((longest - 1) // self.segment_len, self.max_burn_in_segments)
        if last_start == 0 or self.rng.random() < self.start_at_zero:
            return 0
        return int(self.rng.integers(1, last_start + 1))

    def _choose_episodes(self, batch_size: int, min_length: int) -> list[tuple[Episode, bool]]:
        pools = [(list(self.demonstrations), True), (list(self.online), False)]
        pools = [([ep for ep in pool if ep.length >= min_length], is_demo) for pool, is_demo in pools]
        pools = [(pool, is_demo) for pool, is_demo in pools if pool]
        if len(pools) == 1:  # a lone pool (demonstrations only, or online episodes only) gives the whole batch
            counts = [batch_size]
        else:
            n_demo = int(round(self.demo_fraction * batch_size))
            counts = [n_demo, batch_size - n_demo]  # pools keep their order: demonstrations first
        chosen = []
        for (pool, is_demo), count in zip(pools, counts):
            weights = np.array([np.ceil(ep.length / self.segment_len) for ep in pool], dtype=float)
            picks = self.rng.choice(len(pool), size=count, p=weights / weights.sum())
            chosen += [(pool[i], is_demo) for i in picks]
        return chosen

    def _collate(
        self, chosen: list[tuple[Episode, bool]], end: int, start: int, device, value_gamma: float
    ) -> WindowBatch:
        first = chosen[0][0]
        batch = len(chosen)
        observations = padded_observations([episode.observations for episode, _ in chosen], end)
        actions = np.zeros((batch, end, *first.actions.shape[1:]), dtype=first.actions.dtype)
        returns = np.zeros((batch, end), dtype=np.float32)
        value_targets = returns if value_gamma == 1.0 else np.zeros_like(returns)
        valid = np.zeros((batch, end), dtype=bool)
        for row, (episode, _) in enumerate(chosen):
            n = min(episode.length, end)
            actions[row, :n] = episode.actions[:n]
            returns[row, :n] = hindsight_returns(episode.rewards)[:n] * self.return_scale
            if value_gamma != 1.0:
                value_targets[row, :n] = hindsight_returns(episode.rewards, value_gamma)[:n] * self.return_scale
            valid[row, :n] = True
        as_tensor = lambda x: th.as_tensor(x, device=device)  # noqa: E731
        return WindowBatch(
            observations=map_observations(observations, as_tensor),
            actions=as_tensor(actions),
            returns_to_go=as_tensor(returns),
            value_targets=as_tensor(value_targets),
            valid=as_tensor(valid),
            burn_in_segments=start,
            from_demonstrations=as_tensor(np.array([is_demo for _, is_demo in chosen])),
        )


def padded_observations(observations: list[Observations], end: int) -> Observations:
    """The first ``end`` steps (at most each episode's length T) of episodes' observations (T + 1, *shape),
    stacked (B, end, *shape) and zero-padded; per key for dicts."""
    first = observations[0]
    if isinstance(first, dict):
        return {key: padded_observations([steps[key] for steps in observations], end) for key in first}
    padded = np.zeros((len(observations), end, *first.shape[1:]), dtype=first.dtype)
    for row, steps in enumerate(observations):
        n = min(len(steps) - 1, end)
        padded[row, :n] = steps[:n]
    return padded


def hindsight_returns(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Return-to-go at each step: ``sum_k gamma**k * rewards[t + k]`` up to the episode end."""
    if gamma == 1.0:
        return np.cumsum(rewards[::-1], dtype=np.float64)[::-1].astype(np.float32)
    backwards = accumulate(rewards[::-1].astype(np.float64), lambda later, reward: reward + gamma * later)
    return np.fromiter(backwards, np.float64, len(rewards))[::-1].astype(np.float32)
