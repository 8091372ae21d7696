"""The default privileged expert of each env id, and :func:`make_expert` that builds it from its keyword arguments.

Kept out of :mod:`rate_sb3.envs.experts` because it lists the MiniGrid oracle and the Pong, Memory Maze and ViZDoom
experts, which subclass the base class defined there: the registry imports those modules, and none of them imports it.
"""

from __future__ import annotations

import inspect
from typing import Any

from rate_sb3.envs.atari import PongExpert
from rate_sb3.envs.experts import CartPoleController, PendulumController, PrivilegedExpert, TMazeOracle
from rate_sb3.envs.memory_maze import MAZE_SIZES, MemoryMazeExpert
from rate_sb3.envs.minigrid_memory import MiniGridMemoryOracle
from rate_sb3.envs.vizdoom_two_colors import TwoColorsExpert

MINIGRID_MEMORY_IDS = (
    "MiniGrid-MemoryS7-v0",
    "MiniGrid-MemoryS9-v0",
    "MiniGrid-MemoryS11-v0",
    "MiniGrid-MemoryS13-v0",
    "MiniGrid-MemoryS13Random-v0",
    "MiniGrid-MemoryS17Random-v0",
)

EXPERTS: dict[str, type[PrivilegedExpert]] = {
    "TMaze-v0": TMazeOracle,
    "CartPoleNoVel-v1": CartPoleController,
    "CartPole-v1": CartPoleController,
    "PendulumNoVel-v1": PendulumController,
    "Pendulum-v1": PendulumController,
    **dict.fromkeys(MINIGRID_MEMORY_IDS, MiniGridMemoryOracle),
    "PongNoFrameskip-v4": PongExpert,  # tuned for SB3's AtariWrapper (frame skip 4)
    **{f"MemoryMaze-{size}x{size}-v0": MemoryMazeExpert for size in MAZE_SIZES},
    "ViZDoomTwoColors-v0": TwoColorsExpert,
}
"""Default privileged expert class of each env id."""


def make_expert(env_id: str, **kwargs: Any) -> PrivilegedExpert:
    """
    Create the default privileged expert of an env.

    :param env_id: Gymnasium env id, optionally with a ``module:`` prefix (e.g. ``rate_sb3.envs:TMaze-v0``).
    :param kwargs: Keyword arguments of the expert's constructor (e.g. ``error_rate=0.3, seed=0``).
    :return: The expert.
    """
    name = env_id.split(":")[-1]
    if name not in EXPERTS:
        known = ", ".join(EXPERTS)
        raise ValueError(f"No privileged expert for env id {env_id!r}; experts exist for: {known}")
    expert_class = EXPERTS[name]
    accepted = [p for p in inspect.signature(expert_class).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"Unknown keyword argument(s) {unknown} for {expert_class.__name__} (expert of {env_id!r}); "
            f"accepted: {accepted}"
        )
    return expert_class(**kwargs)
