"""D4RL's MuJoCo datasets by D4RL's recipe, made here: reference scores, normalised scores, and the episodes of an
SB3 agent's rollouts and of its replay buffer.

D4RL (Fu et al., 2020) trains Soft Actor-Critic online per env and keeps: "medium", rollouts of the agent stopped
at about a third of the expert's return; "medium-replay", that agent's replay buffer up to the stop; "expert",
rollouts of the fully trained agent; "medium-expert", medium and expert together. ``benchmarks/mujoco_datasets.py``
runs the recipe; this module holds the parts the benchmarks, the zoo and the tests share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer

from rate_sb3.collect import collect_episodes
from rate_sb3.envs.mujoco import DATASET_KINDS, MUJOCO_ENV_IDS
from rate_sb3.episode import Episode

MEDIUM_FRACTION = 1 / 3
"""The "medium" agent is the first checkpoint whose return reaches this fraction of the expert reference return."""


@dataclass(frozen=True)
class ReferenceScores:
    """Returns that map to normalised scores 0 (``random``) and 100 (``expert``)."""

    random: float
    expert: float


D4RL_REFERENCE_SCORES = {
    "halfcheetah": ReferenceScores(random=-280.178953, expert=12135.0),
    "hopper": ReferenceScores(random=-20.272305, expert=3234.3),
    "walker2d": ReferenceScores(random=1.629008, expert=4592.3),
}
"""D4RL's published reference returns. They were measured on gym's v3 envs under mujoco-py; on Gymnasium's v5 envs
(same bodies and rewards, a newer simulator) normalised scores are approximate."""


def _short_name(env_id: str) -> str:
    return env_id.split(":")[-1].split("/")[-1].split("-")[0].lower()


def is_d4rl_env(env_id: str) -> bool:
    """Whether D4RL has reference scores for the env (``Hopper-v5``, ``rate_sb3/hopper-medium-v0``, ...)."""
    return _short_name(env_id) in MUJOCO_ENV_IDS


def env_name(env_id: str) -> str:
    """D4RL's short name of a MuJoCo env id (``"Hopper-v5"`` or ``"rate_sb3/hopper-medium-v0"`` -> ``"hopper"``)."""
    if is_d4rl_env(env_id):
        return _short_name(env_id)
    raise ValueError(f"{env_id!r} is not one of D4RL's MuJoCo envs: {', '.join(MUJOCO_ENV_IDS.values())}")


def normalized_score(env_id: str, returns: float | np.ndarray) -> float | np.ndarray:
    """
    D4RL's normalised score: 100 * (return - random) / (expert - random).

    :param env_id: A MuJoCo env id or D4RL short name (``"Hopper-v5"`` or ``"hopper"``).
    :param returns: Undiscounted episode returns.
    """
    scores = D4RL_REFERENCE_SCORES[env_name(env_id)]
    return 100.0 * (np.asarray(returns, dtype=np.float64) - scores.random) / (scores.expert - scores.random)


def dataset_id(name: str, kind: str, version: int = 0) -> str:
    """The Minari id of a dataset made here, e.g. ``rate_sb3/hopper/medium-v0``."""
    if name not in MUJOCO_ENV_IDS:
        raise ValueError(f"unknown env name {name!r}; known: {', '.join(MUJOCO_ENV_IDS)}")
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {', '.join(DATASET_KINDS)}")
    return f"rate_sb3/{name}/{kind}-v{version}"


def record_transitions(
    model: BaseAlgorithm, env_id: str, n_transitions: int, seed: int, deterministic: bool = False, n_envs: int = 4
) -> list[Episode]:
    """
    Whole episodes of ``model`` on ``env_id``, gathered until they hold at least ``n_transitions`` steps.

    :param model: The generating agent; D4RL sampled its SAC agents' stochastic actions (``deterministic=False``).
    :param env_id: The env to run.
    :param n_transitions: The least number of steps to gather; the last episode is kept whole.
    :param seed: Seed of the first batch of episodes; each batch of ``n_envs`` episodes uses the next seeds.
    :param deterministic: Take the mean action instead of sampling.
    :param n_envs: Episodes run side by side.
    """
    if n_transitions < 1:
        raise ValueError(f"n_transitions must be at least 1, got {n_transitions}")
    episodes: list[Episode] = []
    while sum(episode.length for episode in episodes) < n_transitions:
        batch_seed = seed + len(episodes)
        episodes += collect_episodes(model, env_id, n_envs, deterministic=deterministic, seed=batch_seed, n_envs=n_envs)
    return episodes


def replay_buffer_episodes(buffer: ReplayBuffer, n_transitions: int, model: BaseAlgorithm) -> list[Episode]:
    """
    The episodes in the first ``n_transitions`` steps of a single-env replay buffer, in the order they were played.

    An episode ends at a done flag, or where the next step does not start from this step's next observation (a
    training run that was resumed from a checkpoint reset its env there; that piece counts as truncated). A final
    piece with neither is dropped: it is unfinished.

    :param buffer: SB3's ``ReplayBuffer`` of an off-policy agent trained with one env, never wrapped around.
    :param n_transitions: How many of its first steps to read.
    :param model: The agent that filled it: actions are stored in the policy's [-1, 1] scale and mapped back.
    """
    if buffer.n_envs != 1:
        raise ValueError(f"replay_buffer_episodes reads single-env buffers; this one has {buffer.n_envs} envs")
    stored = buffer.buffer_size if buffer.full else buffer.pos
    if not 0 < n_transitions <= stored or (buffer.full and buffer.pos != 0):
        raise ValueError(
            f"asked for the first {n_transitions} steps of a replay buffer that holds {stored} in playing order "
            f"(full={buffer.full}, pos={buffer.pos}); make buffer_size larger than the training run"
        )
    observations = buffer.observations[:n_transitions, 0]
    next_observations = buffer.next_observations[:n_transitions, 0]
    actions = model.policy.unscale_action(buffer.actions[:n_transitions, 0])
    rewards = buffer.rewards[:n_transitions, 0]
    dones = buffer.dones[:n_transitions, 0].astype(bool)
    timeouts = buffer.timeouts[:n_transitions, 0].astype(bool)
    jumps = np.zeros(n_transitions, dtype=bool)
    jumps[:-1] = np.any(observations[1:] != next_observations[:-1], axis=1)
    jumps &= ~dones
    episodes, start = [], 0
    for end in np.flatnonzero(dones | jumps):
        steps = slice(start, end + 1)
        episodes.append(
            Episode(
                observations=np.concatenate([observations[steps], next_observations[end : end + 1]]),
                actions=actions[steps],
                rewards=rewards[steps],
                terminated=bool(dones[end] and not timeouts[end]),
                truncated=bool(timeouts[end] or jumps[end]),
            )
        )
        start = end + 1
    return episodes
