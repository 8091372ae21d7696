"""Privileged expert for Atari Pong (``PongNoFrameskip-v4`` wrapped by SB3's ``AtariWrapper``), reading the RAM.

ale-py is an optional dependency (``pip install "rate_sb3[atari]"``): it is only imported when the expert acts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rate_sb3.envs.experts import PrivilegedExpert, check_probability

# RAM bytes, found by stepping PongNoFrameskip-v4 with random actions and comparing each of the 128 bytes with the
# rendered frame (3,000 frames): the ball's top row is byte 54 minus 14 or 15 (0 while no ball is in play), the top
# row of the player's paddle (right, green) byte 51 minus 13 or 14; both correlate with the frame at 0.9996 or more.
BALL_Y, PADDLE_Y = 54, 51
# The paddle's centre minus the ball's centre is ``paddle - ball + 6`` in these units (the paddle is 16 rows high,
# the ball 4); RIGHT moves the paddle up (``paddle`` decreases), LEFT down.
ACTION_NAMES = ("NOOP", "RIGHT", "LEFT")


class PongExpert(PrivilegedExpert):
    """
    Pong from the emulator's RAM: moves the right paddle towards where the ball is heading.

    At each step (4 frames under ``AtariWrapper``) it compares the paddle, a fraction ``paddle_lead`` of its last
    move ahead, with the ball, ``ball_lead`` of its last move ahead, and moves the paddle up or down when they are
    more than ``dead_zone`` apart (a pressed paddle keeps moving for a few steps). The paddle moves in steps of about
    20 rows and a hit needs the centres within 10, so the four values, found by a random search on 5 seeded episodes,
    are brittle: on env seeds 0..5, ``aim`` 0 or 4 instead of 2 gives a mean return of 8.0 or 6.5, and 6 (the
    paddle level with the ball) endless rallies that nobody wins.

    Measured with ``AtariWrapper`` (noop starts, frame skip 4) over whole episodes, env seeds 0..5, expert seed 0:
    returns 21, 19, 19, 19, 19, 19 (mean 19.3; a random policy: -21) in about 6,300 steps an episode;
    ``error_rate=0.03``: 15, 18, 13, 11, 5, 7 (mean 11.5) in about 7,400 steps.

    :param error_rate: Probability, at every step, of taking a uniformly random action instead.
    :param seed: Seed of the expert's own random generator (used for the random actions).
    """

    aim = 2.0  # added to paddle - ball: the paddle's centre ends up 6 - aim rows below the ball's
    dead_zone = 11.0
    paddle_lead = 0.75
    ball_lead = 2.0

    def __init__(self, error_rate: float = 0.0, seed: int | None = None) -> None:
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)
        self.previous: tuple[int, int] | None = None  # (ball, paddle) at the last step of this episode

    def reset(self, env: gym.Env) -> None:
        self.previous = None

    def act(self, env: gym.Env) -> int:
        atari_env = _pong_env(env)
        ram = atari_env.ale.getRAM()
        ball, paddle = int(ram[BALL_Y]), int(ram[PADDLE_Y])
        previous_ball, previous_paddle = self.previous or (ball, paddle)
        self.previous = (ball, paddle)
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(atari_env.action_space.n))
        noop, up, down = (atari_env.get_action_meanings().index(name) for name in ACTION_NAMES)
        if ball == 0:  # between points
            return noop
        ball_move = ball - previous_ball if previous_ball else 0
        gap = paddle + self.paddle_lead * (paddle - previous_paddle) - ball - self.ball_lead * ball_move + self.aim
        if abs(gap) <= self.dead_zone:
            return noop
        return up if gap > 0 else down


def _pong_env(env: gym.Env) -> Any:
    """Return the unwrapped ale-py ``AtariEnv`` of ``env`` if it plays Pong, or raise a ``TypeError``."""
    from ale_py import AtariEnv

    unwrapped = env.unwrapped
    if not isinstance(unwrapped, AtariEnv):
        raise TypeError(
            f"PongExpert needs an Atari Pong env (e.g. gym.make('PongNoFrameskip-v4') in SB3's AtariWrapper), "
            f"got {type(unwrapped).__name__}"
        )
    game = Path(unwrapped.ale.getString("rom_file")).stem
    if game != "pong":
        raise TypeError(f"PongExpert reads Pong's RAM, got the Atari game {game!r}: use PongNoFrameskip-v4")
    return unwrapped
