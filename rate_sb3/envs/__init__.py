"""Memory environments and privileged experts; importing this package registers ``TMaze-v0``."""

import gymnasium as gym

from rate_sb3.envs.expert_registry import EXPERTS, make_expert
from rate_sb3.envs.experts import CartPoleController, PendulumController, PrivilegedExpert, TMazeOracle
from rate_sb3.envs.minigrid_memory import MiniGridMemoryOracle
from rate_sb3.envs.tmaze import TMazeEnv

TMAZE_ID = "TMaze-v0"


def register_envs() -> None:
    """Register ``TMaze-v0`` (idempotent), without ``max_episode_steps``: the env truncates itself."""
    if TMAZE_ID not in gym.registry:
        gym.register(id=TMAZE_ID, entry_point="rate_sb3.envs.tmaze:TMazeEnv")


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` that first registers the envs it may need: ours, rl_zoo3's NoVel envs, MiniGrid."""
    if env_id not in gym.registry:
        _import_registering_modules(env_id)
    if env_id not in gym.registry:
        raise ValueError(
            f"unknown env id {env_id!r}: import the package that registers it first "
            "(with the zoo: --gym-packages PACKAGE)"
        )
    return gym.make(env_id, **kwargs)


def _import_registering_modules(env_id: str) -> None:
    import importlib

    modules = ["minigrid"] if env_id.startswith("MiniGrid") else ["rl_zoo3.import_envs"]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"env id {env_id!r} needs the package {module.split('.')[0]!r}: {error}") from error


register_envs()

__all__ = [
    "EXPERTS",
    "TMAZE_ID",
    "CartPoleController",
    "MiniGridMemoryOracle",
    "PendulumController",
    "PrivilegedExpert",
    "TMazeEnv",
    "TMazeOracle",
    "make_env",
    "make_expert",
    "register_envs",
]
