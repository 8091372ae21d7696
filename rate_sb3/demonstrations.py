"""Turning the ``demonstrations=`` argument of RATE into validated episodes (loading or collecting them)."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from rate_sb3.collect import collect_episodes
from rate_sb3.data import Episode, load_demonstrations, save_episodes, validate_episodes
from rate_sb3.envs import make_env, make_expert
from rate_sb3.wrappers import VecObservationOnly

DemonstrationSource = Sequence[Episode] | str | os.PathLike | dict[str, Any] | None
EXPERT_SPEC_KEYS = {"expert", "n_episodes", "expert_kwargs", "env_id", "env_kwargs", "cache", "n_envs", "seed"}


def resolve_demonstrations(
    source: DemonstrationSource,
    env: VecEnv | None,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    verbose: int = 0,
) -> list[Episode]:
    """Load, or collect with an expert spec, the demonstrations and check them against the env's spaces."""
    if source is None:
        return []
    if isinstance(source, dict):
        episodes = collect_from_spec(source, env, verbose)
        name = f"expert spec {source}"
    else:
        episodes = load_demonstrations(source)
        name = str(source) if isinstance(source, (str, os.PathLike)) else "demonstrations"
    if not episodes:
        raise ValueError(f"no episodes in {name}")
    validate_episodes(episodes, observation_space, action_space, source=name)
    return episodes


def collect_from_spec(spec: dict[str, Any], env: VecEnv | None, verbose: int = 0) -> list[Episode]:
    """Collect episodes with the env's privileged expert, reusing (or writing) the ``cache`` file.

    Spec keys: ``expert`` (``"privileged"``), ``n_episodes``, ``expert_kwargs``, ``cache`` (an ``.npz``
    path), ``seed``; by default the episodes are recorded on the training env itself (its wrappers and
    kwargs); ``env_id`` with ``env_kwargs`` and ``n_envs`` records them on a separate raw env instead.
    """
    unknown = set(spec) - EXPERT_SPEC_KEYS
    if unknown:
        raise ValueError(
            f"unknown key(s) {sorted(unknown)} in the demonstrations spec; accepted: {sorted(EXPERT_SPEC_KEYS)}"
        )
    if spec.get("expert", "privileged") != "privileged":
        raise ValueError(f"demonstrations spec: expert={spec['expert']!r}; only 'privileged' experts are supported")
    n_episodes = spec.get("n_episodes")
    if not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"demonstrations spec: n_episodes={n_episodes!r} must be a positive integer")
    cache = spec.get("cache")
    if cache is not None and Path(cache).exists():
        return load_demonstrations(cache)
    if "env_id" in spec:
        env_id, n_envs = spec["env_id"], spec.get("n_envs", 4)
        collection_env = functools.partial(make_env, env_id, **spec.get("env_kwargs", {}))
    elif env is not None and "env_kwargs" not in spec:
        env_id, n_envs = env.get_attr("spec")[0].id, None
        collection_env = VecObservationOnly(env)  # the training env itself: same wrappers and kwargs
    else:
        raise ValueError("demonstrations spec: give env_id (with env_kwargs) to collect on another env")
    expert = make_expert(env_id, **spec.get("expert_kwargs", {}))
    episodes = collect_episodes(
        expert, collection_env, n_episodes, seed=spec.get("seed", 0), progress_bar=verbose > 0, n_envs=n_envs
    )
    if cache is not None:
        save_episodes(episodes, cache)
    return episodes
