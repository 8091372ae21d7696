"""Memory Maze (Pasukonis et al., 2022) as a gymnasium env, and a privileged expert that plans on the maze layout.

The ``memory-maze`` package (``pip install "rate_sb3[memorymaze]"``) builds its tasks as dm_env environments that
render through MuJoCo; this module wraps its dm_env task (not its old-``gym`` registration) and imports it only
when an env is made. Off-screen rendering without a display uses EGL (``MUJOCO_GL=egl``, set here unless the user
chose another backend); on a machine without a GPU, Mesa's software EGL does it (Debian:
``apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0``).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rate_sb3.envs.experts import PrivilegedExpert, check_probability

MAZE_SIZES = (9, 11, 13, 15)
INSTALL = "pip install 'rate_sb3[memorymaze]'"
HEADLESS = (
    "MuJoCo renders Memory Maze off-screen with MUJOCO_GL=egl (the default here; MUJOCO_GL={backend} now), which "
    "without a GPU needs Mesa's software EGL: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 "
    "(MUJOCO_GL=osmesa needs libosmesa6)"
)
NOOP, FORWARD, LEFT, RIGHT, FORWARD_LEFT, FORWARD_RIGHT = range(6)  # the task's discrete action set; LEFT turns
# counter-clockwise in the layout's (x, y) frame


def _memory_maze_tasks() -> Any:
    """Import ``memory_maze.tasks``, or raise an ``ImportError`` that names the fix."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # memory_maze defaults to it too, but only if dm_control is not loaded
    try:
        from memory_maze import tasks  # its __init__ imports the old `gym` to register envs there, or fails
    except ImportError as error:
        raise ImportError(f"Memory Maze needs the package 'memory-maze' and old 'gym' ({error}): {INSTALL}") from error
    except Exception as error:  # PyOpenGL fails with AttributeError or OSError when the GL library is missing
        headless = HEADLESS.format(backend=os.environ["MUJOCO_GL"])
        raise RuntimeError(f"MuJoCo rendering failed to load ({error!r}): {headless}") from error
    return tasks


class MemoryMazeEnv(gym.Env):
    """
    Memory Maze: a 64x64 RGB first-person view of a random maze with 3 (9x9) to 6 (15x15) coloured objects; the
    frame's border shows the colour of the object to touch next (+1 reward, then a new colour is drawn). Six
    actions (noop, forward, left, right, forward+left, forward+right) at 4 Hz; episodes are truncated after
    1,000 steps (9x9; 2,000 to 4,000 for the larger mazes) and never terminate.

    The maze layout, the agent's position and heading and the current target's position are kept in
    :attr:`privileged` for :class:`MemoryMazeExpert`; they are not part of the observation.

    ``reset(seed=s)`` rebuilds the task from ``s``, so its maze, objects and start are reproducible; a reset
    without a seed draws the next maze of the current task.

    :param size: The maze's side, without outer walls: 9, 11, 13 or 15.
    :param render_mode: ``"rgb_array"`` (the observation) or None.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: int = 9, render_mode: str | None = None) -> None:
        if size not in MAZE_SIZES:
            raise ValueError(f"Memory Maze size must be one of {MAZE_SIZES}, got {size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self._make_task = getattr(_memory_maze_tasks(), f"memory_maze_{size}x{size}")
        self.size, self.render_mode = size, render_mode
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(6)
        self._task: Any = None
        self.privileged: dict[str, np.ndarray] = {}
        self._image = np.zeros(self.observation_space.shape, np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or self._task is None:
            self.close()
            task_seed = int(self.np_random.integers(2**31 - 1))
            self._task = self._make_task(global_observables=True, seed=task_seed)
        return self._observe(self._task.reset().observation), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._task is None:
            raise RuntimeError("MemoryMazeEnv.step before reset: call env.reset() first")
        step = self._task.step(int(action))
        ended = step.last()
        terminated = bool(ended and step.discount == 0)
        return self._observe(step.observation), float(step.reward), terminated, ended and not terminated, {}

    def _observe(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        keys = ("maze_layout", "agent_pos", "agent_dir", "target_pos")
        self.privileged = {key: np.array(observation[key]) for key in keys}
        self._image = np.array(observation["image"], dtype=np.uint8)  # a copy: callers may keep frames
        return self._image

    def render(self) -> np.ndarray | None:
        return self._image.copy() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None


class MemoryMazeExpert(PrivilegedExpert):
    """
    Memory Maze from the env's privileged state: a breadth-first search over the maze's free cells from the
    agent's cell to the current target's, then steering towards the centre of the next cell on that path (the
    target itself in its cell): turn in place when the heading is off by more than ``turn_angle`` degrees,
    forward and turn when off by more than ``steer_angle``, else forward. The path is re-planned at every step.

    ``error_rate`` mixes in a uniformly random action at each step, to make a dataset of middling quality (the
    paper's Dreamer data averaged a return of 4.69 per 1,000-step episode of the 9x9 maze). Measured mean returns
    on ``MemoryMaze-9x9-v0``: ``error_rate=0.75``: 4.8 +- 0.42 (sem) over 10 episodes, env and expert seeds 100 to
    109 (``python benchmarks/memory_maze_9x9.py --expert 0.75 --episodes 10``); by hand, 0: 21 and 24 (seeds 0, 1),
    0.6: 10.0 and 0.8: 4.25 (4 episodes each).

    :param error_rate: Probability, at every step, of taking a uniformly random action instead.
    :param seed: Seed of the expert's own random generator (used for the random actions).
    :param steer_angle: Heading error (degrees) above which it turns while moving forward.
    :param turn_angle: Heading error (degrees) above which it turns in place.
    """

    def __init__(
        self, error_rate: float = 0.0, seed: int | None = None, steer_angle: float = 15.0, turn_angle: float = 60.0
    ) -> None:
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)
        if not 0 <= steer_angle <= turn_angle <= 180:
            raise ValueError(f"need 0 <= steer_angle <= turn_angle <= 180, got {steer_angle!r}, {turn_angle!r}")
        self.steer_angle, self.turn_angle = float(steer_angle), float(turn_angle)

    def act(self, env: gym.Env) -> int:
        state = _privileged_state(env)
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(6))
        return self.steer(state["agent_pos"], state["agent_dir"], self.waypoint(state))

    @staticmethod
    def waypoint(state: dict[str, np.ndarray]) -> np.ndarray:
        """Where to head now: the centre of the next cell on a shortest path to the target, or the target."""
        start, goal = _cell(state["agent_pos"]), _cell(state["target_pos"])
        path = shortest_path(state["maze_layout"], start, goal)
        if len(path) < 2:
            return state["target_pos"]
        return np.asarray(path[1], dtype=np.float64) + 0.5

    def steer(self, position: np.ndarray, heading: np.ndarray, waypoint: np.ndarray) -> int:
        """The action that turns ``heading`` towards ``waypoint`` and moves when roughly facing it."""
        to_go = waypoint - position
        error = np.degrees(np.arctan2(to_go[1], to_go[0]) - np.arctan2(heading[1], heading[0]))
        error = (error + 180.0) % 360.0 - 180.0  # positive: the waypoint is to the left
        if abs(error) > self.turn_angle:
            return LEFT if error > 0 else RIGHT
        if abs(error) > self.steer_angle:
            return FORWARD_LEFT if error > 0 else FORWARD_RIGHT
        return FORWARD


def _cell(position: np.ndarray) -> tuple[int, int]:
    """The ``(x, y)`` cell of a position in grid units (cell ``(x, y)`` spans ``[x, x + 1) x [y, y + 1)``)."""
    return int(np.floor(position[0])), int(np.floor(position[1]))


def shortest_path(layout: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """
    Breadth-first search over the free cells of a Memory Maze layout (4-connected).

    :param layout: ``layout[y, x]`` is 1 where cell ``(x, y)`` is free, 0 for a wall.
    :param start: The ``(x, y)`` cell to start from.
    :param goal: The ``(x, y)`` cell to reach.
    :return: The cells from ``start`` to ``goal`` included; ``[start]`` if no path exists.
    """
    parents: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = []
            while cell is not None:
                path.append(cell)
                cell = parents[cell]
            return path[::-1]
        x, y = cell
        for neighbour in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            inside = 0 <= neighbour[0] < layout.shape[1] and 0 <= neighbour[1] < layout.shape[0]
            if inside and neighbour not in parents and layout[neighbour[1], neighbour[0]]:
                parents[neighbour] = cell
                queue.append(neighbour)
    return [start]


def _privileged_state(env: gym.Env) -> dict[str, np.ndarray]:
    """The privileged state of a reset :class:`MemoryMazeEnv` under ``env``, or a ``TypeError``."""
    maze = env.unwrapped
    if not isinstance(maze, MemoryMazeEnv):
        raise TypeError(f"MemoryMazeExpert needs a MemoryMazeEnv (e.g. MemoryMaze-9x9-v0), got {type(maze).__name__}")
    if not maze.privileged:
        raise TypeError("MemoryMazeExpert needs a reset MemoryMazeEnv: call env.reset() first")
    return maze.privileged
