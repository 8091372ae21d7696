"""Memory environments and privileged experts; importing this package registers ``TMaze-v0``, the Memory Maze ids
(``MemoryMaze-9x9-v0`` to ``MemoryMaze-15x15-v0``), ``ViZDoomTwoColors-v0`` and the D4RL-style MuJoCo pair ids; the
packages of Memory Maze, ViZDoom and MuJoCo are imported only when one of their envs is made."""

import gymnasium as gym

from rate_sb3.envs.atari import PongExpert
from rate_sb3.envs.expert_registry import EXPERTS, make_expert
from rate_sb3.envs.experts import CartPoleController, PendulumController, PrivilegedExpert, TMazeOracle
from rate_sb3.envs.memory_maze import MAZE_SIZES, MemoryMazeEnv, MemoryMazeExpert
from rate_sb3.envs.minigrid_memory import MiniGridMemoryOracle
from rate_sb3.envs.mujoco import register_pair_envs
from rate_sb3.envs.tmaze import TMazeEnv
from rate_sb3.envs.vizdoom_two_colors import TwoColorsExpert, ViZDoomTwoColorsEnv

TMAZE_ID = "TMaze-v0"
MEMORY_MAZE_IDS = {f"MemoryMaze-{size}x{size}-v0": size for size in MAZE_SIZES}
VIZDOOM_TWO_COLORS_ID = "ViZDoomTwoColors-v0"


def register_envs() -> None:
    """Register ``TMaze-v0``, the Memory Maze ids and ``ViZDoomTwoColors-v0`` (idempotent), without
    ``max_episode_steps``: the envs truncate themselves; and the MuJoCo env ids of the D4RL-style datasets
    (``rate_sb3/hopper-medium-v0``, ...)."""
    if TMAZE_ID not in gym.registry:
        gym.register(id=TMAZE_ID, entry_point="rate_sb3.envs.tmaze:TMazeEnv")
    for env_id, size in MEMORY_MAZE_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="rate_sb3.envs.memory_maze:MemoryMazeEnv", kwargs={"size": size})
    if VIZDOOM_TWO_COLORS_ID not in gym.registry:
        gym.register(id=VIZDOOM_TWO_COLORS_ID, entry_point="rate_sb3.envs.vizdoom_two_colors:ViZDoomTwoColorsEnv")
    register_pair_envs()


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` that first registers the envs it may need: ours, rl_zoo3's NoVel envs, MiniGrid, Atari."""
    register_env_id(env_id)
    if env_id not in gym.registry:
        raise ValueError(
            f"unknown env id {env_id!r}: import the package that registers it first "
            "(with the zoo: --gym-packages PACKAGE)"
        )
    return gym.make(env_id, **kwargs)


ALE_PY_FOR_OLD_GYMNASIUM = (
    "ale-py 0.11 and newer need gymnasium>=1.1, and d3rlpy (of the 'mujoco' extra) pins gymnasium 1.0.0: "
    "pip install 'ale-py<0.11', or a newer gymnasium without d3rlpy"
)


def register_env_id(env_id: str) -> None:
    """Import the package that registers ``env_id`` unless it is registered: minigrid for ``MiniGrid-*`` ids,
    ale-py for Atari ids (``ALE/*``, ``*NoFrameskip-v4``), rl_zoo3's envs (the NoVel envs) for any other.

    :param env_id: a gymnasium env id
    :raises ValueError: when that package is not installed, or is installed but registers nothing, with the command
        that installs a working one
    """
    import importlib

    if env_id in gym.registry:
        return
    module, install = _registering_module(env_id)
    try:
        importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        if package == "ale_py" and error.name != "ale_py":  # installed, but not for this gymnasium
            install = ALE_PY_FOR_OLD_GYMNASIUM
        raise ValueError(f"env id {env_id!r} needs the package {package!r} ({error}): {install}") from error
    if module == "ale_py" and not any(registered.startswith("ALE/") for registered in gym.registry):
        # some ale-py releases swallow the ImportError of their gymnasium wrappers and then register nothing
        from importlib.metadata import version

        raise ValueError(
            f"env id {env_id!r}: ale-py {version('ale-py')} registered no envs with gymnasium {gym.__version__}: "
            + ALE_PY_FOR_OLD_GYMNASIUM
        )


def _registering_module(env_id: str) -> tuple[str, str]:
    """The module whose import registers ``env_id``, and the command that installs it."""
    if env_id.startswith("MiniGrid"):
        return "minigrid", "pip install 'rate_sb3[minigrid]'"
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        return "ale_py", "pip install 'rate_sb3[atari]'"  # ale-py registers its envs when imported
    return "rl_zoo3.import_envs", "pip install rl_zoo3"


register_envs()

__all__ = [
    "EXPERTS",
    "MEMORY_MAZE_IDS",
    "TMAZE_ID",
    "CartPoleController",
    "MemoryMazeEnv",
    "MemoryMazeExpert",
    "MiniGridMemoryOracle",
    "PendulumController",
    "PongExpert",
    "PrivilegedExpert",
    "TMazeEnv",
    "TMazeOracle",
    "TwoColorsExpert",
    "VIZDOOM_TWO_COLORS_ID",
    "ViZDoomTwoColorsEnv",
    "make_env",
    "make_expert",
    "register_env_id",
    "register_envs",
]
