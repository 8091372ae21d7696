"""Privileged experts: scripted policies that read an env's hidden state to produce demonstrations."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rate_sb3.envs.tmaze import TMazeEnv


class PrivilegedExpert:
    """An expert that acts from the unwrapped env's hidden state (e.g. the T-Maze goal side).

    Collection calls :meth:`reset` after every env reset and :meth:`act` before every step.
    """

    def reset(self, env: gym.Env) -> None:
        """Called after ``env`` was reset; override to draw per-episode randomness."""

    def act(self, env: gym.Env) -> Any:
        """Return the action to take in ``env`` now (a valid element of its action space)."""
        raise NotImplementedError


def check_probability(name: str, value: float) -> float:
    """Return ``value`` as a float if it is in ``[0, 1]``, else raise a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _unwrapped_state(env: gym.Env, expert: str, env_kind: str, size: int) -> np.ndarray:
    """Return ``env.unwrapped.state`` as a float array of length ``size``, or raise a clear ``TypeError``."""
    state = getattr(env.unwrapped, "state", None)
    if state is None:
        raise TypeError(f"{expert} needs a reset {env_kind} env (with `unwrapped.state`), got {env!r}")
    state = np.asarray(state, dtype=np.float64)
    if state.shape != (size,):
        raise TypeError(f"{expert} needs a {env_kind} state of shape ({size},), got shape {state.shape}")
    return state


class TMazeOracle(PrivilegedExpert):
    """
    Optimal T-Maze policy: go right until the junction (``x == L``), then turn towards the goal.

    Its episodes take ``L + 1`` steps, one less than the time limit, so random actions (``error_rate``)
    quickly make it time out on long corridors: measured success over 100 episodes with L = 148 is 1.0 at
    ``error_rate=0``, 0.0 at ``error_rate=0.1``; ``ignore_clue=True`` succeeds on 0.5.

    :param ignore_clue: If True, always turn towards ``fixed_turn`` whatever the goal (~50% success).
    :param fixed_turn: Turn direction used when ``ignore_clue`` is True: +1 (up) or -1 (down).
    :param error_rate: Probability, at every step, of taking a uniformly random action instead.
    :param seed: Seed of the expert's own random generator (used for the random actions).
    """

    def __init__(
        self, ignore_clue: bool = False, fixed_turn: int = 1, error_rate: float = 0.0, seed: int | None = None
    ) -> None:
        if isinstance(fixed_turn, bool) or fixed_turn not in (-1, 1):
            raise ValueError(f"fixed_turn must be +1 (up) or -1 (down), got {fixed_turn!r}")
        self.ignore_clue = ignore_clue
        self.fixed_turn = int(fixed_turn)
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)

    def act(self, env: gym.Env) -> int:
        maze = env.unwrapped
        if not isinstance(maze, TMazeEnv):
            raise TypeError(f"TMazeOracle needs a TMazeEnv, got {type(maze).__name__}")
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(4))
        if maze.x < maze.corridor_length:
            return 0
        turn = self.fixed_turn if self.ignore_clue else maze.goal
        return 1 if turn == 1 else 3


class CartPoleController(PrivilegedExpert):
    """
    Linear state-feedback controller for ``CartPoleNoVel-v1`` / ``CartPole-v1``, acting on the full hidden
    state ``(x, x_dot, theta, theta_dot)``: push right iff ``gains @ state > 0``.

    Measured mean returns over 50 episodes of ``CartPole-v1`` (env seeds 0..49, expert seed 0; the same on
    ``CartPoleNoVel-v1``): ``error_rate=0``: 500.0 (every episode). ``error_rate=0.51``
    (:attr:`MEDIOCRE_ERROR_RATE`) gives a mediocre expert with a mean return of about 150: 142.2 with
    expert seed 0, 154.0 averaged over expert seeds 0..4 (127 to 170). For reference, 0.48: 196,
    0.5: 168, 0.52: 146 (averages over expert seeds 0..4).

    :param error_rate: Probability, at every step, of taking a uniformly random action instead.
    :param seed: Seed of the expert's own random generator (used for the random actions).
    :param gains: Feedback gains on ``(x, x_dot, theta, theta_dot)``.
    """

    MEDIOCRE_ERROR_RATE = 0.51

    def __init__(
        self,
        error_rate: float = 0.0,
        seed: int | None = None,
        gains: tuple[float, float, float, float] = (1.0, 1.5, 20.0, 3.0),
    ) -> None:
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)
        self.gains = np.asarray(gains, dtype=np.float64)
        if self.gains.shape != (4,):
            raise ValueError(f"gains must have 4 values (x, x_dot, theta, theta_dot), got {gains!r}")

    def act(self, env: gym.Env) -> int:
        state = _unwrapped_state(env, "CartPoleController", "CartPole", 4)
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(2))
        return int(self.gains @ state > 0)


class PendulumController(PrivilegedExpert):
    """
    Swing-up and balance controller for ``PendulumNoVel-v1`` / ``Pendulum-v1`` on the full hidden state
    ``(theta, theta_dot)`` (``theta = 0`` is upright).

    Far from the top it pumps energy, ``u = k_energy * (E_top - E) * theta_dot`` with
    ``E = theta_dot^2 / 2 + 15 cos(theta)`` (the pendulum's dynamics are
    ``theta_ddot = 15 sin(theta) + 3 u``); within ``balance_angle`` of the top a PD law
    ``u = -(kp * theta + kd * theta_dot)`` holds it up. The torque is clipped to ``[-2, 2]``.

    Measured mean return over 20 episodes of ``Pendulum-v1`` (env seeds 0..19, ``noise_std=0``): -137.5
    (worst episode -329.5, starting near the bottom almost at rest); -137.9 with ``noise_std=0.5``.

    :param noise_std: Standard deviation of Gaussian noise added to the torque (before clipping).
    :param seed: Seed of the expert's own random generator (used for the noise).
    :param kp: Proportional gain of the balance controller.
    :param kd: Derivative gain of the balance controller.
    :param balance_angle: Angle from the top (radians) under which the balance controller is used.
    :param k_energy: Gain of the energy-pumping swing-up controller.
    """

    max_torque = 2.0

    def __init__(
        self,
        noise_std: float = 0.0,
        seed: int | None = None,
        kp: float = 10.0,
        kd: float = 2.0,
        balance_angle: float = 0.5,
        k_energy: float = 10.0,
    ) -> None:
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)
        self.kp, self.kd, self.balance_angle, self.k_energy = kp, kd, balance_angle, k_energy

    def act(self, env: gym.Env) -> np.ndarray:
        theta, theta_dot = _unwrapped_state(env, "PendulumController", "Pendulum", 2)
        torque = self.torque(theta, theta_dot)
        if self.noise_std > 0:
            torque += self.noise_std * self.rng.standard_normal()
        return np.array([np.clip(torque, -self.max_torque, self.max_torque)], dtype=np.float32)

    def torque(self, theta: float, theta_dot: float) -> float:
        """Noise-free torque (unclipped) for the state ``(theta, theta_dot)``."""
        theta = (theta + np.pi) % (2 * np.pi) - np.pi
        if abs(theta) < self.balance_angle:
            return -(self.kp * theta + self.kd * theta_dot)
        gravity = 15.0  # 3 g / (2 l) in Pendulum-v1's dynamics
        energy = 0.5 * theta_dot**2 + gravity * np.cos(theta)
        return self.k_energy * (gravity - energy) * theta_dot
