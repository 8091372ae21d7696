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
    """Segment-aligned training windows, one start per row.

    The first ``burn_in_segments`` segments are burn-in: they warm the memory and carry no gradient. A row whose
    window starts nearer the episode start has fewer earlier segments, and is left-padded with invalid steps;
    a window that runs past its episode's end is right-padded.
    """

    observations: th.Tensor | dict[str, th.Tensor]  # (B, W, *obs_shape) in the episodes' dtype, or a dict of them
    actions: th.Tensor  # (B, W, *act_shape) env actions
    returns_to_go: th.Tensor  # (B, W) scaled hindsight returns-to-go
    value_targets: th.Tensor  # (B, W) scaled discounted returns-to-go (the returns-to-go when undiscounted)
    valid: th.Tensor  # (B, W) bool, False on padding
    burn_in_segments: int
    from_demonstrations: th.Tensor  # (B,) bool


@dataclass
class WindowSpan:
    """Where one row of a batch comes from: its episode, the window's first segment and its burn-in."""

    episode: Episode
    from_demonstrations: bool
    start_segment: int
    burn_in_segments: int


class TrajectoryBuffer:
    """Whole episodes for return-conditioned training.

    Demonstrations are kept apart and never evicted; online episodes fill a FIFO of ``capacity`` episodes.
    A batch draws ``demo_fraction`` of its windows from demonstrations when both kinds are present.
    Returns-to-go are relabelled from the rewards actually obtained (hindsight).

    A window may start at any segment of its episode: episodes are drawn in proportion to their number of
    segments, then the start segment uniformly, so that every (episode, segment) pair is equally likely.

    :param capacity: maximum number of online episodes
    :param segment_len: K, env steps per segment
    :param return_scale: factor applied to returns-to-go
    :param demo_fraction: share of each batch drawn from demonstrations (when there are online episodes)
    :param start_at_zero: probability that a window starts at its episode's first segment instead of a uniform one
    :param seed: seed of the sampling generator
    """

    def __init__(
        self,
        capacity: int = 1000,
        segment_len: int = 50,
        return_scale: float = 1.0,
        demo_fraction: float = 0.5,
        start_at_zero: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity={capacity} must be >= 1 episode")
        if not 0.0 <= demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction={demo_fraction} must be in [0, 1]")
        if not 0.0 <= start_at_zero <= 1.0:
            raise ValueError(f"start_at_zero={start_at_zero} must be in [0, 1]")
        self.capacity, self.segment_len, self.return_scale = capacity, segment_len, return_scale
        self.demo_fraction, self.start_at_zero = demo_fraction, start_at_zero
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

    def n_segments_of(self, episode: Episode) -> int:
        return -(-episode.length // self.segment_len)

    def sample(
        self,
        batch_size: int,
        n_segments: int,
        device: th.device | str = "cpu",
        value_gamma: float = 1.0,
        burn_in_segments: int = 0,
    ) -> WindowBatch:
        """Draw ``batch_size`` windows of ``n_segments`` segments, each from its own start segment, with up to
        ``burn_in_segments`` earlier segments before it; the value targets are the returns-to-go discounted by
        ``value_gamma``. Only the steps of the windows and their burn-in are copied."""
        if len(self) == 0:
            raise ValueError("the trajectory buffer is empty: give demonstrations or collect episodes first")
        if burn_in_segments < 0:
            raise ValueError(f"burn_in_segments={burn_in_segments} must be >= 0")
        spans = []
        for episode, is_demo in self._choose_episodes(batch_size):
            start = self._start_segment(episode)
            spans.append(WindowSpan(episode, is_demo, start, min(start, burn_in_segments)))
        return self._collate(spans, n_segments, device, value_gamma)

    def _start_segment(self, episode: Episode) -> int:
        if self.start_at_zero and self.rng.random() < self.start_at_zero:
            return 0
        return int(self.rng.integers(self.n_segments_of(episode)))

    def _choose_episodes(self, batch_size: int) -> list[tuple[Episode, bool]]:
        pools = [(list(self.demonstrations), True), (list(self.online), False)]
        pools = [(pool, is_demo) for pool, is_demo in pools if pool]
        if len(pools) == 1:  # a lone pool (demonstrations only, or online episodes only) gives the whole batch
            counts = [batch_size]
        else:
            n_demo = int(round(self.demo_fraction * batch_size))
            counts = [n_demo, batch_size - n_demo]  # pools keep their order: demonstrations first
        chosen = []
        for (pool, is_demo), count in zip(pools, counts):
            weights = np.array([self.n_segments_of(ep) for ep in pool], dtype=float)  # one per possible start
            picks = self.rng.choice(len(pool), size=count, p=weights / weights.sum())
            chosen += [(pool[i], is_demo) for i in picks]
        return chosen

    def _collate(self, spans: list[WindowSpan], n_segments: int, device, value_gamma: float) -> WindowBatch:
        k = self.segment_len
        burn_in = max(span.burn_in_segments for span in spans)
        width = (burn_in + n_segments) * k
        first = spans[0].episode
        batch = len(spans)
        actions = np.zeros((batch, width, *first.actions.shape[1:]), dtype=first.actions.dtype)
        returns = np.zeros((batch, width), dtype=np.float32)
        value_targets = returns if value_gamma == 1.0 else np.zeros_like(returns)
        valid = np.zeros((batch, width), dtype=bool)
        windows = []  # (steps in the episode, columns in the batch) of each row
        for row, span in enumerate(spans):
            episode = span.episode
            first_step = (span.start_segment - span.burn_in_segments) * k  # in the episode
            end_step = min(episode.length, (span.start_segment + n_segments) * k)
            offset = (burn_in - span.burn_in_segments) * k  # left padding of a shorter burn-in
            steps, columns = slice(first_step, end_step), slice(offset, offset + end_step - first_step)
            windows.append((steps, columns))
            actions[row, columns] = episode.actions[steps]
            returns[row, columns] = hindsight_returns(episode.rewards)[steps] * self.return_scale
            if value_gamma != 1.0:
                value_targets[row, columns] = hindsight_returns(episode.rewards, value_gamma)[steps] * self.return_scale
            valid[row, columns] = True
        observations = padded_observations([span.episode.observations for span in spans], windows, width)
        as_tensor = lambda x: th.as_tensor(x, device=device)  # noqa: E731
        return WindowBatch(
            observations=map_observations(observations, as_tensor),
            actions=as_tensor(actions),
            returns_to_go=as_tensor(returns),
            value_targets=as_tensor(value_targets),
            valid=as_tensor(valid),
            burn_in_segments=burn_in,
            from_demonstrations=as_tensor(np.array([span.from_demonstrations for span in spans])),
        )


def padded_observations(
    observations: list[Observations], windows: list[tuple[slice, slice]], width: int
) -> Observations:
    """Each episode's observations at its window's steps, placed at its columns of a zero-padded (B, width, *shape)
    array in the episodes' dtype; per key for dicts. ``windows`` holds (steps, columns) per row."""
    first = observations[0]
    if isinstance(first, dict):
        return {key: padded_observations([steps[key] for steps in observations], windows, width) for key in first}
    padded = np.zeros((len(observations), width, *first.shape[1:]), dtype=first.dtype)
    for row, (values, (steps, columns)) in enumerate(zip(observations, windows)):
        padded[row, columns] = values[steps]
    return padded


def hindsight_returns(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Return-to-go at each step: ``sum_k gamma**k * rewards[t + k]`` up to the episode end."""
    if gamma == 1.0:
        return np.cumsum(rewards[::-1], dtype=np.float64)[::-1].astype(np.float32)
    backwards = accumulate(rewards[::-1].astype(np.float64), lambda later, reward: reward + gamma * later)
    return np.fromiter(backwards, np.float64, len(rewards))[::-1].astype(np.float32)
