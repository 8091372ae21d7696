"""Privileged oracle for MiniGrid's Memory envs (``MiniGrid-MemoryS7-v0``, ``MiniGrid-MemoryS13Random-v0``).

minigrid is an optional dependency: it is only imported when the oracle acts.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from rate_sb3.envs.experts import PrivilegedExpert, check_probability

# MiniGrid actions used by the oracle
LEFT, RIGHT, FORWARD = 0, 1, 2
# MiniGrid directions: 0 = +x, 1 = +y, 2 = -x, 3 = -y
_DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
_CUE_TYPES = ("key", "ball")

Pose = tuple[int, int, int]  # (x, y, direction)


class MiniGridMemoryOracle(PrivilegedExpert):
    """
    Oracle for MiniGrid's ``MemoryEnv``: reads the grid to find the object shown in the start room and the
    matching object at the end of the hallway, then walks (shortest path over left/right/forward) to the
    cell next to it on the hallway side, which is where the env counts a success.

    Only the actions left (0), right (1) and forward (2) are used. The path is re-planned at every step
    from the current pose, so the oracle recovers from its own random actions.

    :param error_rate: Probability, at every step, of taking a uniformly random action among
        left/right/forward instead.
    :param seed: Seed of the expert's own random generator (used for the random actions).
    """

    def __init__(self, error_rate: float = 0.0, seed: int | None = None) -> None:
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)

    def act(self, env: gym.Env) -> int:
        memory_env = _memory_env(env)
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(3))
        target, avoid = find_target_cells(memory_env)
        x, y = (int(v) for v in memory_env.agent_pos)
        path = shortest_actions(memory_env.grid, (x, y, int(memory_env.agent_dir)), target, avoid)
        if not path:
            raise RuntimeError(f"MiniGridMemoryOracle found no path from {(x, y)} to the cell {target}")
        return path[0]


def _memory_env(env: gym.Env) -> Any:
    """Return the unwrapped ``MemoryEnv`` of ``env``, or raise a ``TypeError``."""
    from minigrid.envs.memory import MemoryEnv

    unwrapped = env.unwrapped
    if not isinstance(unwrapped, MemoryEnv):
        raise TypeError(f"MiniGridMemoryOracle needs a MiniGrid MemoryEnv, got {type(unwrapped).__name__}")
    if getattr(unwrapped, "grid", None) is None or unwrapped.agent_pos is None:
        raise TypeError("MiniGridMemoryOracle needs a reset MemoryEnv: call env.reset() first")
    return unwrapped


def find_target_cells(memory_env: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """
    Find where to go in a reset ``MemoryEnv``.

    The cue is the key/ball closest to the left wall (in the start room); the two others are at the end of
    the hallway, above and below its row. The goal cell is the one between the hallway row and the object
    of the cue's type.

    :param memory_env: The unwrapped ``MemoryEnv``.
    :return: The success cell and the failure cell, as ``(x, y)``.
    """
    grid = memory_env.grid
    objects = []
    for index, obj in enumerate(grid.grid):
        if obj is not None and obj.type in _CUE_TYPES:
            objects.append((index % grid.width, index // grid.width, obj.type))
    if len(objects) != 3:
        raise RuntimeError(f"Expected 3 keys/balls in the MemoryEnv grid, found {objects}")
    objects.sort()
    (_, _, cue), *ends = objects
    hallway_y = grid.height // 2
    cells = {kind: (x, y + int(np.sign(hallway_y - y))) for x, y, kind in ends}
    if set(cells) != set(_CUE_TYPES):
        raise RuntimeError(f"Expected one key and one ball at the end of the hallway, found {ends}")
    other = next(kind for kind in cells if kind != cue)
    return cells[cue], cells[other]


def shortest_actions(grid: Any, start: Pose, target: tuple[int, int], avoid: tuple[int, int]) -> list[int]:
    """
    Breadth-first search over poses for the shortest left/right/forward sequence reaching ``target``.

    :param grid: The MiniGrid ``Grid``.
    :param start: The agent's ``(x, y, direction)``.
    :param target: The cell to reach.
    :param avoid: A cell never to enter (the failure cell, which ends the episode).
    :return: The actions, empty if the agent is already on ``target`` or it cannot be reached.
    """
    parents: dict[Pose, tuple[Pose, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        pose = queue.popleft()
        if pose[:2] == target:
            return _actions_to(pose, parents)
        for action, next_pose in _successors(grid, pose, avoid):
            if next_pose not in parents:
                parents[next_pose] = (pose, action)
                queue.append(next_pose)
    return []


def _successors(grid: Any, pose: Pose, avoid: tuple[int, int]) -> list[tuple[int, Pose]]:
    x, y, direction = pose
    successors = [(LEFT, (x, y, (direction - 1) % 4)), (RIGHT, (x, y, (direction + 1) % 4))]
    dx, dy = _DIR_TO_VEC[direction]
    nx, ny = x + dx, y + dy
    if 0 <= nx < grid.width and 0 <= ny < grid.height and (nx, ny) != avoid:
        cell = grid.get(nx, ny)
        if cell is None or cell.can_overlap():
            successors.append((FORWARD, (nx, ny, direction)))
    return successors


def _actions_to(pose: Pose, parents: dict[Pose, tuple[Pose, int] | None]) -> list[int]:
    actions = []
    link = parents[pose]
    while link is not None:
        pose, action = link
        actions.append(action)
        link = parents[pose]
    return actions[::-1]
