"""Passive T-Maze: a long-term memory task where the only useful information is shown at the first step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    import torch as th

# Action index -> (dx, dy)
_MOVES: dict[int, tuple[int, int]] = {0: (1, 0), 1: (0, 1), 2: (-1, 0), 3: (0, -1)}
_GOALS = (-1, 1)


def _validate_lengths(corridor_length: int | Sequence[int]) -> tuple[int, ...]:
    """Return ``corridor_length`` as a non-empty tuple of ints >= 1, or raise a ``ValueError``."""
    lengths = (corridor_length,) if isinstance(corridor_length, (int, np.integer)) else corridor_length
    if not isinstance(lengths, (Sequence, np.ndarray)) or isinstance(lengths, str) or len(lengths) == 0:
        raise ValueError(
            f"corridor_length must be an int >= 1 or a non-empty sequence of them, got {corridor_length!r}"
        )
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"corridor_length items must be ints >= 1, got {length!r} in {corridor_length!r}")
    return tuple(int(length) for length in lengths)


class TMazeEnv(gym.Env[np.ndarray, np.integer]):
    """
    Passive T-Maze (Ni et al., 2023): walk down a corridor, then turn towards the side shown at the start.

    The corridor spans ``x`` in ``[0, L]`` at ``y = 0``; the two goal cells are ``(L, +1)`` and ``(L, -1)``.
    The agent starts at ``(0, 0)``. Actions: 0 = right (+x), 1 = up (+y), 2 = left (-x), 3 = down (-y);
    a move that would leave the maze is a no-op (the agent can only leave the corridor at ``x = L``).

    Observation ``[y, clue, junction_flag, noise]`` (float32 in ``[-1, 1]``): ``clue`` is the goal side
    ``g`` in the reset observation only (0 afterwards), ``junction_flag`` is 1 iff ``x == L``, ``noise`` is
    drawn uniformly from ``{-1, 0, 1}`` at every observation. ``x`` is hidden, so the agent has to
    remember the clue for ``L`` steps.

    Reaching a goal cell terminates the episode with reward 1.0 if it is the goal side, else 0.0; all other
    rewards are 0. The episode is truncated (and not terminated) when the step count reaches ``L + 2``;
    the optimal episode takes ``L + 1`` steps. At the final step ``info["is_success"]`` is set.

    Goal side at reset (a contract the evaluation relies on):

    - ``reset(options={"goal": g})`` with ``g`` in ``{-1, +1}`` forces the goal;
    - otherwise ``reset(seed=s)`` sets ``g = +1`` if ``s`` is even, else ``-1``, so consecutive seeds
      alternate goal sides and evaluating over an even number of consecutive seeds is exactly balanced;
    - otherwise the goal is drawn from ``self.np_random``.

    :param corridor_length: Length ``L`` of the corridor, or a sequence of lengths: one is then drawn
        uniformly (from ``self.np_random``) at every reset, e.g. to train on a mixture of lengths.
    :param render_mode: ``None``, ``"ansi"`` (a text map) or ``"rgb_array"`` (a 3 x (L + 1) image:
        corridor grey, goal arm green, wrong arm red, agent white)
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"]}

    def __init__(self, corridor_length: int | Sequence[int] = 148, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"TMazeEnv render_mode must be None, 'ansi' or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.corridor_lengths = _validate_lengths(corridor_length)
        self.observation_space = spaces.Box(low=-1.0, high=1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        # Hidden state, public for privileged experts (meaningful after the first reset)
        self.corridor_length = max(self.corridor_lengths)
        self.goal = 1
        self.x = 0
        self.y = 0
        self.num_steps = 0
        self._done = True

    @property
    def max_steps(self) -> int:
        """Time limit of the current episode, ``L + 2``."""
        return self.corridor_length + 2

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Start a new episode; see the class docstring for how the goal side is chosen.

        :param seed: Seeds ``self.np_random``; its parity also sets the goal side.
        :param options: Optionally ``{"goal": +1 or -1}`` to force the goal side.
        :return: The first observation (the only one with the clue) and an empty info dict.
        """
        super().reset(seed=seed)
        forced_goal = self._parse_options(options)
        index = int(self.np_random.integers(len(self.corridor_lengths)))
        self.corridor_length = self.corridor_lengths[index]
        if forced_goal is not None:
            self.goal = forced_goal
        elif seed is not None:
            self.goal = 1 if seed % 2 == 0 else -1
        else:
            self.goal = int(self.np_random.choice(_GOALS))
        self.x, self.y, self.num_steps = 0, 0, 0
        self._done = False
        return self._observation(clue=self.goal), {}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """
        Move the agent (blocked moves are no-ops).

        :param action: 0 = right, 1 = up, 2 = left, 3 = down.
        :return: observation, reward, terminated, truncated, info
        """
        if self._done:
            raise RuntimeError("TMazeEnv.step() called on a finished episode: call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"Invalid action {action!r}: expected an int in [0, 3]")
        self._move(int(action))
        self.num_steps += 1
        terminated = self.y != 0
        reward = 1.0 if terminated and self.y == self.goal else 0.0
        truncated = not terminated and self.num_steps >= self.max_steps
        info: dict[str, Any] = {}
        if terminated or truncated:
            info["is_success"] = bool(reward == 1.0)
            self._done = True
        return self._observation(clue=0), reward, terminated, truncated, info

    def _move(self, action: int) -> None:
        """Apply ``action`` unless it leads outside the maze."""
        dx, dy = _MOVES[action]
        x, y = self.x + dx, self.y + dy
        in_corridor = y == 0 and 0 <= x <= self.corridor_length
        in_goal = x == self.corridor_length and y in _GOALS
        if in_corridor or in_goal:
            self.x, self.y = x, y

    def _observation(self, clue: int) -> np.ndarray:
        junction = 1.0 if self.x == self.corridor_length else 0.0
        noise = float(self.np_random.integers(-1, 2))
        return np.array([self.y, clue, junction, noise], dtype=np.float32)

    @staticmethod
    def _parse_options(options: dict[str, Any] | None) -> int | None:
        """Return the forced goal side from the reset options, if any."""
        if not options:
            return None
        unknown = set(options) - {"goal"}
        if unknown:
            raise ValueError(f"Unknown TMazeEnv reset option(s) {sorted(unknown)}: only 'goal' is supported")
        goal = options["goal"]
        if isinstance(goal, bool) or goal not in _GOALS:
            raise ValueError(f"options['goal'] must be +1 or -1, got {goal!r}")
        return int(goal)

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            return None
        length = self.corridor_length
        image = np.zeros((3, length + 1, 3), dtype=np.uint8)
        image[1, :] = 128
        image[1 - self.goal, length] = (0, 200, 0)
        image[1 + self.goal, length] = (200, 0, 0)
        image[1 - self.y, self.x] = 255
        if self.render_mode == "rgb_array":
            return image
        symbols = {(0, 0, 0): " ", (128, 128, 128): "-", (0, 200, 0): "G", (200, 0, 0): "X", (255, 255, 255): "A"}
        return "\n".join("".join(symbols[tuple(pixel)] for pixel in row) for row in image)


def junction_steps(observations: th.Tensor) -> th.Tensor:
    """The steps at the junction (the observation's junction flag), where the agent chooses an arm.

    As RATE's ``entropy_mask``, online exploration happens there only: one wasted move in the corridor makes
    the episode time out.
    """
    return observations[..., 2] > 0.5
