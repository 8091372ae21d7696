"""The return-conditioned half of RATE: the policy built from the architecture, the trajectory buffer, the
conditioning returns, one gradient step of the window loss, and offline pretraining."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import configure_logger

from rate_sb3.architecture import RATEConfig
from rate_sb3.arguments import require_at_least
from rate_sb3.buffers import TrajectoryBuffer
from rate_sb3.critic import AdvantageWeighting
from rate_sb3.data import Episode
from rate_sb3.demonstrations import DemonstrationSource, resolve_demonstrations
from rate_sb3.importing import import_callable
from rate_sb3.objective import EntropyMask, check_finite, window_loss
from rate_sb3.policies import RATEPolicy
from rate_sb3.schedules import warmup_then_linear_decay
from rate_sb3.wrappers import env_observation_space

SelfAlgorithm = TypeVar("SelfAlgorithm", bound="ReturnConditionedAlgorithm")
PretrainHook = Callable[[int, int], bool]
"""``on_pretrain_step(step, n_steps) -> bool`` of a callback given to ``learn``: called after each pretraining step
(``step`` from 1 to ``n_steps``), False stops ``learn`` (how a pruned Optuna trial stops before acting online)."""


class ReturnConditionedAlgorithm(BaseAlgorithm):
    """A BaseAlgorithm that trains a :class:`RATEPolicy` on whole episodes with hindsight returns-to-go.

    It holds what offline pretraining and online fine-tuning share: the architecture and the policy built from it,
    the trajectory buffer (demonstrations first; saved and loaded on request), the returns the policy is
    conditioned on (target, scale, cap), one gradient step of the window loss, and the offline loop of
    :meth:`pretrain`. :class:`rate_sb3.RATE` documents the hyperparameters and their defaults.

    :param config: the transformer's architecture (the policy's, which ``policy_kwargs`` may not change)
    :param base_kwargs: ``BaseAlgorithm``'s own arguments (``policy_kwargs``, ``seed``, ``device``, ...)
    """

    policy: RATEPolicy

    def __init__(
        self,
        policy: str | type[RATEPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule,
        *,
        demonstrations: DemonstrationSource,
        config: RATEConfig,
        n_segments: int,
        batch_size: int,
        n_pretrain_steps: int,
        warmup_steps: int,
        lr_end_factor: float,
        weight_decay: float,
        max_grad_norm: float,
        mixed_precision: bool,
        curriculum: bool,
        burn_in_segments: int,
        target_return: float | None,
        online_target_return: float | None,
        return_scale: float | None,
        cap_return_to_go: bool,
        buffer_size: int,
        demo_fraction: float,
        entropy_mask: str | EntropyMask | None,
        action_mse_coef: float,
        advantage_temperature: float | None,
        max_advantage_weight: float,
        vf_coef: float,
        advantage_gamma: float,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(policy, env, learning_rate, **base_kwargs)
        require_at_least(1, n_segments=n_segments, batch_size=batch_size, buffer_size=buffer_size)
        require_at_least(0, n_pretrain_steps=n_pretrain_steps, warmup_steps=warmup_steps)
        _check_burn_in(burn_in_segments)
        if return_scale is not None and return_scale <= 0:
            raise ValueError(f"RATE: return_scale={return_scale} must be > 0")
        if not action_mse_coef >= 0:
            raise ValueError(f"RATE: action_mse_coef={action_mse_coef} must be >= 0")
        _check_policy_kwargs(self.policy_kwargs)
        if self.policy_kwargs.get("standardize_observations") and demonstrations is None:
            observation_statistics([])  # its error says what to do
        self.demonstrations, self.config = demonstrations, config
        self.n_segments, self.batch_size = n_segments, batch_size
        self.n_pretrain_steps, self.warmup_steps, self.lr_end_factor = n_pretrain_steps, warmup_steps, lr_end_factor
        self.weight_decay = weight_decay
        self.max_grad_norm, self.curriculum, self.burn_in_segments = max_grad_norm, curriculum, burn_in_segments
        self.mixed_precision = mixed_precision
        _check_mixed_precision(mixed_precision, self.device)
        self.target_return, self.online_target_return = target_return, online_target_return
        self.return_scale, self.cap_return_to_go = return_scale, cap_return_to_go
        self.buffer_size, self.demo_fraction = buffer_size, demo_fraction
        self.entropy_mask, self.action_mse_coef = entropy_mask, action_mse_coef
        self.advantage_temperature, self.max_advantage_weight = advantage_temperature, max_advantage_weight
        self.vf_coef, self.advantage_gamma = vf_coef, advantage_gamma
        self.replay_buffer: TrajectoryBuffer | None = None
        self.return_to_go_cap: float | None = None
        self._demonstration_episodes: list[Episode] | None = None
        self._pretrained = False
        self._pretrain_steps_done = 0
        self._entropy_mask_function()  # a bad import path or weighting fails here, not at the first gradient step
        self._advantage_weighting()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        kwargs = {**asdict(self.config), "weight_decay": self.weight_decay, **self.policy_kwargs}
        if self.target_return is not None:
            kwargs.update(target_return=self.target_return, return_scale=self._return_scale())
        kwargs.update(return_to_go_cap=self.return_to_go_cap)
        kwargs.setdefault("critic", self.advantage_temperature is not None)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **kwargs)
        self.policy = self.policy.to(self.device)

    def _excluded_save_params(self) -> list[str]:
        excluded = ["_demonstration_episodes", "replay_buffer"]  # a zip must load without the demonstrations
        if not isinstance(self.demonstrations, (str, dict, type(None))):
            excluded.append("demonstrations")
        return super()._excluded_save_params() + excluded

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    def demonstration_episodes(self) -> list[Episode]:
        """The demonstrations, loaded (or collected) and validated against the env on first use."""
        if self._demonstration_episodes is None:
            self._demonstration_episodes = resolve_demonstrations(
                self.demonstrations,
                self.env,
                env_observation_space(self.observation_space),
                self.action_space,
                self.verbose,
            )
        return self._demonstration_episodes

    def _prepare_buffer(self) -> TrajectoryBuffer:
        episodes = self.demonstration_episodes() if self.demonstrations is not None else []
        if self.target_return is None:
            if not episodes:
                raise ValueError("RATE: set target_return (the return to ask for) when there are no demonstrations")
            self.target_return = float(max(ep.episode_return for ep in episodes))
        self.return_scale = self._return_scale()
        self.policy.target_return, self.policy.return_scale = self.target_return, self.return_scale
        if self.policy.standardize_observations and not self.policy.observation_statistics_set:
            self.policy.set_observation_statistics(*observation_statistics(episodes))
        if self.replay_buffer is None:
            self.replay_buffer = TrajectoryBuffer(
                self.buffer_size, self.config.segment_len, self.return_scale, self.demo_fraction, seed=self.seed
            )
            self.replay_buffer.add_demonstrations(episodes)
        self._update_return_to_go_cap()
        return self.replay_buffer

    def _update_return_to_go_cap(self) -> None:
        if not self.cap_return_to_go or len(self.replay_buffer) == 0:
            return
        asked = [r for r in (self.target_return, self.online_target_return) if r is not None]
        self.return_to_go_cap = max(self.replay_buffer.max_return_to_go, *asked)
        self.policy.return_to_go_cap = self.return_to_go_cap

    def save_replay_buffer(self, path) -> None:
        """Save the trajectory buffer (demonstrations and online episodes) to continue training later."""
        if self.replay_buffer is None:
            raise ValueError("RATE has no trajectory buffer yet: call learn() or pretrain() first")
        save_to_pkl(path, self.replay_buffer, self.verbose)

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:
        """Load a buffer saved by :meth:`save_replay_buffer` (whole episodes, so nothing needs truncating)."""
        buffer = load_from_pkl(path, self.verbose)
        if not isinstance(buffer, TrajectoryBuffer):
            raise ValueError(f"{path} does not hold a RATE TrajectoryBuffer (got {type(buffer).__name__})")
        self.replay_buffer = buffer

    def _return_scale(self) -> float:
        if self.return_scale is not None:
            return float(self.return_scale)
        return 1.0 / max(1.0, abs(float(self.target_return)))

    def _entropy_mask_function(self) -> EntropyMask | None:
        if self.entropy_mask is None:
            return None
        return import_callable(self.entropy_mask, "entropy_mask", "rate_sb3.envs.tmaze.junction_steps")

    def _advantage_weighting(self) -> AdvantageWeighting | None:
        if self.advantage_temperature is None:
            return None
        return AdvantageWeighting(
            self.advantage_temperature, self.max_advantage_weight, self.vf_coef, self.advantage_gamma
        )

    def _gradient_step(self, n_segments: int, entropy_weight: th.Tensor | float, step: int, phase: str) -> dict:
        weighting = self._advantage_weighting()
        value_gamma = 1.0 if weighting is None else weighting.gamma
        burn_in = 0 if self.config.mode == "dt" else self.burn_in_segments  # dt has no memory to warm
        batch = self.replay_buffer.sample(self.batch_size, n_segments, self.device, value_gamma, burn_in)
        self.policy.set_training_mode(True)
        with th.autocast(self.device.type, th.bfloat16, enabled=self.mixed_precision):
            terms = window_loss(
                self.policy, batch, entropy_weight, self.action_mse_coef, self._entropy_mask_function(), weighting
            )
        check_finite(terms, step, phase)
        self.policy.optimizer.zero_grad()
        terms.loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        stats = {"loss": terms.loss.item(), "nll": terms.nll.item(), "entropy": terms.entropy.item()}
        stats["entropy_steps"] = terms.entropy_steps
        stats["action_accuracy" if terms.action_accuracy is not None else "action_mse"] = (
            terms.action_accuracy if terms.action_accuracy is not None else terms.action_mse
        )
        stats["demo_share"] = batch.from_demonstrations.float().mean().item()
        if terms.value_loss is not None:
            stats["value_loss"], stats["max_advantage_weight"] = terms.value_loss.item(), terms.max_weight
        return stats

    def pretrain(
        self: SelfAlgorithm,
        n_steps: int | None = None,
        log_interval: int = 100,
        progress_bar: bool = False,
        tb_log_name: str = "RATE",
    ) -> SelfAlgorithm:
        """Offline training on the demonstrations: ``n_steps`` gradient steps (default ``n_pretrain_steps``).

        Logs ``pretrain/loss``, ``pretrain/action_accuracy`` (or ``action_mse``) and ``pretrain/learning_rate``
        against the pretraining step.
        """
        self._run_pretraining(n_steps, log_interval, progress_bar, tb_log_name)
        return self

    def _run_pretraining(
        self,
        n_steps: int | None,
        log_interval: int,
        progress_bar: bool,
        tb_log_name: str,
        hooks: Sequence[PretrainHook] = (),
    ) -> bool:
        """:meth:`pretrain`, telling ``hooks`` of each step; False when a hook stopped it."""
        n_steps = self.n_pretrain_steps if n_steps is None else int(n_steps)
        if self.demonstrations is None:
            raise ValueError("RATE.pretrain needs demonstrations: pass demonstrations= to the constructor")
        if n_steps < 1:
            raise ValueError(f"RATE.pretrain: n_steps={n_steps} must be >= 1")
        self._prepare_buffer()
        if not hasattr(self, "_logger"):
            self._logger = configure_logger(self.verbose, self.tensorboard_log, tb_log_name, True)
        return self._offline_steps(n_steps, log_interval, progress_bar, hooks=hooks)

    def _offline_steps(
        self,
        n_steps: int,
        log_interval: int,
        progress_bar: bool = False,
        callback: BaseCallback | None = None,
        hooks: Sequence[PretrainHook] = (),
    ) -> bool:
        """Gradient steps on the demonstrations; with a callback, each step counts as one timestep; ``hooks`` are
        told of each step without counting it. False when the callback or a hook stopped them."""
        base_lr = self.lr_schedule(1.0)
        bar = _progress(progress_bar and callback is None, n_steps, "pretrain")
        window_stats: list[dict] = []
        carry_on = True
        for step in range(n_steps):
            factor = warmup_then_linear_decay(step, self.warmup_steps, n_steps, self.lr_end_factor)
            for group in self.policy.optimizer.param_groups:
                group["lr"] = base_lr * factor
            n_segments = self._curriculum_segments(step, n_steps)
            window_stats.append(self._gradient_step(n_segments, 0.0, step, "pretrain"))
            self._pretrain_steps_done += 1
            bar.update(1)
            if (step + 1) % log_interval == 0 or step + 1 == n_steps:
                self._log_stats("pretrain", window_stats, base_lr * factor, self._pretrain_steps_done)
                window_stats = []
            carry_on = all([hook(step + 1, n_steps) for hook in hooks])  # a list: every hook hears of the step
            if callback is not None:
                self.num_timesteps += 1
                callback.update_locals(locals())
                carry_on = callback.on_step() and carry_on
            if not carry_on:
                break
        bar.close()
        self._pretrained = True
        return carry_on

    def _curriculum_segments(self, step: int, n_steps: int) -> int:
        if not self.curriculum or self.config.mode == "dt":
            return 1 if self.config.mode == "dt" else self.n_segments
        return min(self.n_segments, 1 + step * self.n_segments // n_steps)

    def _log_stats(self, prefix: str, stats: list[dict], lr: float, step: int) -> None:
        for key in stats[0]:
            self.logger.record(f"{prefix}/{key}", float(np.mean([s[key] for s in stats])))
        self.logger.record(f"{prefix}/learning_rate", lr)
        self.logger.dump(step=step)


def observation_statistics(episodes: Sequence[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every step's observation (a standard deviation under 1e-6, a constant
    dimension, counts as 1: it is only shifted)."""
    if not episodes:
        raise ValueError(
            "RATE: standardize_observations takes its statistics from the demonstrations; pass demonstrations= or "
            "drop standardize_observations from policy_kwargs"
        )
    observations = np.concatenate([np.asarray(episode.observations[:-1], dtype=np.float64) for episode in episodes])
    std = observations.std(axis=0)
    return observations.mean(axis=0), np.where(std < 1e-6, 1.0, std)


def _check_mixed_precision(mixed_precision: bool, device: th.device) -> None:
    if mixed_precision and device.type == "cuda" and not th.cuda.is_bf16_supported():
        raise ValueError(
            f"RATE: mixed_precision=True needs bfloat16, which {th.cuda.get_device_name(device)} does not support: "
            "pass mixed_precision=False (or train on a GPU with bfloat16 units)"
        )


def pretrain_hooks(callback: BaseCallback) -> list[PretrainHook]:
    """The ``on_pretrain_step(step, n_steps) -> bool`` methods of ``callback`` and of the callbacks it lists."""
    if isinstance(callback, CallbackList):
        return [hook for child in callback.callbacks for hook in pretrain_hooks(child)]
    hook = getattr(callback, "on_pretrain_step", None)
    return [] if hook is None else [hook]


def _check_policy_kwargs(policy_kwargs: dict[str, Any]) -> None:
    """The policy's architecture is the algorithm's config: none of it may come through ``policy_kwargs``."""
    architecture = sorted(set(policy_kwargs) & {field.name for field in fields(RATEConfig)})
    if architecture:
        raise ValueError(
            f"RATE: policy_kwargs {architecture} are architecture arguments: pass them to RATE itself, which "
            "builds the policy from its config"
        )


def _check_burn_in(burn_in: Any) -> None:
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(
            f"RATE: burn_in_segments={burn_in!r} must be an integer >= 0 (the segments run without gradient "
            "before each training window; 0 starts the memory fresh at the window)"
        )


def _progress(enabled: bool, total: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not enabled)
