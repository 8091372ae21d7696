"""RATE (Recurrent Action Transformer with Memory) as a Stable-Baselines3 agent."""

import rate_sb3.envs  # noqa: F401  (registers TMaze-v0)
from rate_sb3.collect import collect_episodes
from rate_sb3.data import Episode, load_demonstrations, save_episodes
from rate_sb3.policies import RATEPolicy
from rate_sb3.rate import RATE
from rate_sb3.wrappers import PrevRewardWrapper

__all__ = [
    "RATE",
    "Episode",
    "PrevRewardWrapper",
    "RATEPolicy",
    "collect_episodes",
    "load_demonstrations",
    "save_episodes",
]
