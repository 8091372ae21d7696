"""Privileged oracle for MiniGrid's Memory envs (``MiniGrid-MemoryS7-v0``, ``MiniGrid-MemoryS13Random-v0``).

minigrid is an optional dependency: it is only imported when the oracle acts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
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

    The agent starts facing away from the cue, so a shortcut to the goal never shows it, and a policy
    imitating that shortcut cannot tell which object to choose. With ``look_first`` the oracle first takes
    the shortest way to a pose from which it sees the cue, as an agent without the privileged view must.

    Only the actions left (0), right (1) and forward (2) are used. The path is re-planned at every step
    from the current pose, so the oracle recovers from its own random actions.

    :param error_rate: Probability, at every step, of taking a uniformly random action among
        left/right/forward instead.
    :param seed: Seed of the expert's own random generator (used for the random actions).
    :param look_first: Bring the cue into view before heading for the goal.
    """

    def __init__(self, error_rate: float = 0.0, seed: int | None = None, look_first: bool = True) -> None:
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)
        self.look_first = bool(look_first)
        self.cue_seen = False  # in the current episode: it is over when the env's step count is back to 0

    def act(self, env: gym.Env) -> int:
        memory_env = _memory_env(env)
        cue, target, avoid = find_cells(memory_env)
        if self.look_first:
            self.cue_seen = (self.cue_seen and memory_env.step_count > 0) or bool(memory_env.agent_sees(*cue))
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(3))
        pose = (*(int(v) for v in memory_env.agent_pos), int(memory_env.agent_dir))
        if self.look_first and not self.cue_seen:
            path = shortest_actions(memory_env.grid, pose, lambda p: _sees_from(memory_env, p, cue), {target, avoid})
        else:
            path = shortest_actions(memory_env.grid, pose, lambda p: p[:2] == target, {avoid})
        if not path:
            raise RuntimeError(f"MiniGridMemoryOracle found no path from {pose[:2]} (cue seen: {self.cue_seen})")
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


def find_cells(memory_env: Any) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """
    Find where the cue is and where to go in a reset ``MemoryEnv``.

    The cue is the key/ball closest to the left wall (in the start room); the two others are at the end of
    the hallway, above and below its row. The goal cell is the one between the hallway row and the object
    of the cue's type.

    :param memory_env: The unwrapped ``MemoryEnv``.
    :return: The cue's cell, the success cell and the failure cell, as ``(x, y)``.
    """
    grid = memory_env.grid
    objects = []
    for index, obj in enumerate(grid.grid):
        if obj is not None and obj.type in _CUE_TYPES:
            objects.append((index % grid.width, index // grid.width, obj.type))
    if len(objects) != 3:
        raise RuntimeError(f"Expected 3 keys/balls in the MemoryEnv grid, found {objects}")
    objects.sort()
    (cue_x, cue_y, cue), *ends = objects
    hallway_y = grid.height // 2
    cells = {kind: (x, y + int(np.sign(hallway_y - y))) for x, y, kind in ends}
    if set(cells) != set(_CUE_TYPES):
        raise RuntimeError(f"Expected one key and one ball at the end of the hallway, found {ends}")
    other = next(kind for kind in cells if kind != cue)
    return (cue_x, cue_y), cells[cue], cells[other]


def _sees_from(memory_env: Any, pose: Pose, cell: tuple[int, int]) -> bool:
    """Whether the agent would see ``cell`` from ``pose`` (its view is computed for the pose, then restored)."""
    position, direction = memory_env.agent_pos, memory_env.agent_dir
    try:
        memory_env.agent_pos, memory_env.agent_dir = np.array(pose[:2]), pose[2]
        return bool(memory_env.agent_sees(*cell))
    finally:
        memory_env.agent_pos, memory_env.agent_dir = position, direction


def shortest_actions(grid: Any, start: Pose, reached: Callable[[Pose], bool], avoid: set[tuple[int, int]]) -> list[int]:
    """
    Breadth-first search over poses for the shortest left/right/forward sequence to a pose where ``reached``.

    :param grid: The MiniGrid ``Grid``.
    :param start: The agent's ``(x, y, direction)``.
    :param reached: Whether a pose ends the search.
    :param avoid: Cells never to enter (those that end the episode).
    :return: The actions, empty if ``start`` is already reached or no reached pose can be reached.
    """
    parents: dict[Pose, tuple[Pose, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        pose = queue.popleft()
        if reached(pose):
            return _actions_to(pose, parents)
        for action, next_pose in _successors(grid, pose, avoid):
            if next_pose not in parents:
                parents[next_pose] = (pose, action)
                queue.append(next_pose)
    return []


def _successors(grid: Any, pose: Pose, avoid: set[tuple[int, int]]) -> list[tuple[int, Pose]]:
    x, y, direction = pose
    successors = [(LEFT, (x, y, (direction - 1) % 4)), (RIGHT, (x, y, (direction + 1) % 4))]
    dx, dy = _DIR_TO_VEC[direction]
    nx, ny = x + dx, y + dy
    if 0 <= nx < grid.width and 0 <= ny < grid.height and (nx, ny) not in avoid:
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
