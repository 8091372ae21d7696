"""Learning-rate schedules: the pretraining factor and the online schedule saved with a model."""

from __future__ import annotations

from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import ConstantSchedule, LinearSchedule


def warmup_then_linear_decay(step: int, warmup_steps: int, total_steps: int, end_factor: float) -> float:
    """Learning-rate factor: linear warm-up to 1, then linear decay to ``end_factor`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 1.0 + (end_factor - 1.0) * min(1.0, progress)


def plain_schedule(learning_rate: float | Schedule) -> float | Schedule:
    """Replace rl_zoo3's schedule objects with SB3's, so that saved zips load without rl_zoo3 installed."""
    if type(learning_rate).__module__.startswith("rl_zoo3") and hasattr(learning_rate, "initial_value"):
        initial = float(learning_rate.initial_value)
        linear = "Linear" in type(learning_rate).__name__
        return LinearSchedule(initial, 0.0, 1.0) if linear else ConstantSchedule(initial)
    return learning_rate
