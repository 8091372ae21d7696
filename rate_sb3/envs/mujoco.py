"""Env ids for the D4RL-style MuJoCo datasets made here (:mod:`rate_sb3.d4rl`).

As D4RL did with ``hopper-medium-v2``, each env-dataset pair has its own env id, so that a zoo entry can name the
dataset it trains on: ``rate_sb3/hopper-medium-v0`` is Gymnasium's ``Hopper-v5`` (same entry point, kwargs and
1,000-step limit), and its entry in ``hyperparams/rate.yml`` reads the Minari dataset ``rate_sb3/hopper/medium-v0``.
"""

from __future__ import annotations

import gymnasium as gym

MUJOCO_ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
"""D4RL's short env names and the Gymnasium MuJoCo envs that stand in for D4RL's (gym v3, mujoco-py) ones."""

DATASET_KINDS = ("medium", "medium-replay", "expert", "medium-expert")


def pair_env_id(name: str, kind: str) -> str:
    """The env id of an env-dataset pair, e.g. ``rate_sb3/hopper-medium-v0``."""
    return f"rate_sb3/{name}-{kind}-v0"


def register_pair_envs() -> None:
    """Register the env id of every env-dataset pair (idempotent; nothing of MuJoCo is imported)."""
    for name, env_id in MUJOCO_ENV_IDS.items():
        spec = gym.spec(env_id)
        for kind in DATASET_KINDS:
            if pair_env_id(name, kind) not in gym.registry:
                gym.register(
                    id=pair_env_id(name, kind),
                    entry_point=spec.entry_point,
                    max_episode_steps=spec.max_episode_steps,
                    kwargs=dict(spec.kwargs),
                )
