"""Turning the ``demonstrations=`` argument of RATE into validated episodes (loading or collecting them)."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from rate_sb3.data import Episode, collect_episodes, load_demonstrations, save_episodes, validate_episodes
from rate_sb3.envs import make_env, make_expert

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

    Spec keys: ``expert`` (``"privileged"``), ``n_episodes``, ``expert_kwargs``, ``env_id`` (default: the
    training env's id), ``env_kwargs`` (default: the training env's), ``cache`` (an ``.npz`` path),
    ``n_envs`` and ``seed``.
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
    env_id, env_kwargs = _env_id_and_kwargs(spec, env)
    expert = make_expert(env_id, **spec.get("expert_kwargs", {}))
    episodes = collect_episodes(
        expert,
        functools.partial(make_env, env_id, **env_kwargs),
        n_episodes,
        seed=spec.get("seed", 0),
        progress_bar=verbose > 0,
        n_envs=spec.get("n_envs", 4),
    )
    if cache is not None:
        save_episodes(episodes, cache)
    return episodes


def _env_id_and_kwargs(spec: dict[str, Any], env: VecEnv | None) -> tuple[str, dict[str, Any]]:
    if "env_id" in spec:
        return spec["env_id"], dict(spec.get("env_kwargs", {}))
    if env is None:
        raise ValueError("demonstrations spec needs env_id when the model has no env")
    env_spec = env.get_attr("spec")[0]
    if env_spec is None:
        raise ValueError("the training env has no registered id: put env_id in the demonstrations spec")
    return env_spec.id, dict(spec.get("env_kwargs", env_spec.kwargs))
