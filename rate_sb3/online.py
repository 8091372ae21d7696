"""The online half of RATE, the Online Decision Transformer recipe: a stochastic policy acts, the episodes it ends
join the trajectory buffer, and rounds of gradient steps follow, with an entropy temperature learned against a
target entropy. :meth:`OnlineAlgorithm.learn` pretrains first, or trains offline alone."""

from __future__ import annotations

import sys
import time
from typing import Any, TypeVar

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutReturn, Schedule
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import VecEnv

from rate_sb3.arguments import require_at_least
from rate_sb3.buffers import TrajectoryBuffer
from rate_sb3.policies import RATEPolicy
from rate_sb3.return_conditioned import ReturnConditionedAlgorithm, pretrain_hooks
from rate_sb3.rollout import OpenEpisodes
from rate_sb3.temperature import EntropyTemperature, parse_ent_coef, parse_target_entropy

SelfOnlineAlgorithm = TypeVar("SelfOnlineAlgorithm", bound="OnlineAlgorithm")


class OnlineAlgorithm(ReturnConditionedAlgorithm):
    """A :class:`ReturnConditionedAlgorithm` that also fine-tunes online, and whose :meth:`learn` runs either.

    :class:`rate_sb3.RATE` documents the hyperparameters (``online`` to ``temperature_lr`` here) and their defaults.

    :param kwargs: :class:`ReturnConditionedAlgorithm`'s arguments
    """

    def __init__(
        self,
        policy: str | type[RATEPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule,
        *,
        online: bool,
        train_freq: int,
        gradient_steps: int,
        ent_coef: str | float,
        target_entropy: str | float,
        temperature_lr: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(policy, env, learning_rate, **kwargs)
        require_at_least(1, train_freq=train_freq, gradient_steps=gradient_steps)
        parse_ent_coef(ent_coef)
        parse_target_entropy(target_entropy, action_space=None)  # validates only
        self.online, self.train_freq, self.gradient_steps = online, train_freq, gradient_steps
        self.ent_coef, self.target_entropy, self.temperature_lr = ent_coef, target_entropy, temperature_lr
        self._n_updates = 0
        self._open_episodes: OpenEpisodes | None = None  # kept so that learn(reset_num_timesteps=False) continues

    def _setup_model(self) -> None:
        super()._setup_model()
        self.entropy_temperature = EntropyTemperature(
            self.ent_coef, self.target_entropy, self.action_space, self.temperature_lr
        ).to(self.device)

    def _excluded_save_params(self) -> list[str]:
        return super()._excluded_save_params() + ["_open_episodes"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        modules, tensors = super()._get_torch_save_params()
        return modules + ["entropy_temperature", "entropy_temperature.optimizer"], tensors

    def train(self, gradient_steps: int) -> None:
        """Online gradient steps: NLL minus the learned temperature times the entropy, then dual ascent."""
        self._update_learning_rate(self.policy.optimizer)
        stats = []
        n_segments = 1 if self.config.mode == "dt" else self.n_segments
        for _ in range(gradient_steps):
            step_stats = self._gradient_step(n_segments, self.entropy_temperature.value, self._n_updates, "train")
            if step_stats["entropy_steps"]:  # else the batch has no step under the entropy mask
                self.entropy_temperature.update(step_stats["entropy"])
            self._n_updates += 1
            stats.append(step_stats)
        for key in stats[0]:
            self.logger.record(f"train/{key}", float(np.mean([s[key] for s in stats])))
        self._update_return_to_go_cap()
        self.logger.record("train/temperature", self.entropy_temperature.value.item())
        self.logger.record("train/target_entropy", self.entropy_temperature.target)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(
        self: SelfOnlineAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "RATE",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOnlineAlgorithm:
        """Pretrain on the demonstrations if that has not run, then fine-tune online for ``total_timesteps``.

        Callbacks are called once per env step. Pretraining takes no env step: a callback that defines
        ``on_pretrain_step(step, n_steps) -> bool`` is called after each pretraining step instead, and returning
        False stops ``learn`` (:class:`rate_sb3.zoo_sweeps.PretrainingTrialEvalCallback` reports to Optuna so).
        """
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if not self.online:
            if self.demonstrations is None:
                raise ValueError("RATE(online=False) trains on demonstrations only: pass demonstrations=")
            self._prepare_buffer()
            callback.on_training_start(locals(), globals())
            self._offline_steps(total_timesteps - self.num_timesteps, log_interval=100, callback=callback)
            callback.on_training_end()
            return self
        # an expert spec without env_id records its demonstrations on the training env (first use only)
        spec = self.demonstrations
        records_on_env = isinstance(spec, dict) and "env_id" not in spec and self._demonstration_episodes is None
        if self.demonstrations is not None and not self._pretrained and self.n_pretrain_steps > 0:
            hooks = pretrain_hooks(callback)
            if not self._run_pretraining(self.n_pretrain_steps, 100, progress_bar, tb_log_name, hooks):
                return self  # a callback stopped learn during pretraining (e.g. a pruned Optuna trial)
        self._prepare_buffer()
        if records_on_env:  # the recording left the envs mid-episode: start the rollouts from fresh, seeded episodes
            self.env.seed(self.seed)
            self._last_obs = self.env.reset()
            self._last_episode_starts = np.ones((self.env.num_envs,), dtype=bool)
        callback.on_training_start(locals(), globals())
        since_train = 0
        while self.num_timesteps < total_timesteps:
            # up to the next round of gradient steps; once it is due, one step at a time until an episode has ended
            n_steps = min(max(self.train_freq - since_train, 1), total_timesteps - self.num_timesteps)
            rollout = self.collect_rollouts(self.env, callback, n_steps, self.replay_buffer)
            if not rollout.continue_training:
                break
            since_train += rollout.episode_timesteps
            if since_train >= self.train_freq and len(self.replay_buffer) > 0:  # else no finished episode yet
                since_train = 0
                self.train(self.gradient_steps)
                if log_interval and (self._n_updates // max(1, self.gradient_steps)) % log_interval == 0:
                    self.dump_logs()
        callback.on_training_end()
        return self

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, n_steps: int, replay_buffer: TrajectoryBuffer
    ) -> RolloutReturn:
        """Step ``env`` with the stochastic policy for ``n_steps`` env steps (summed over envs, rounded up to whole
        steps of every env), and add each episode that ends to ``replay_buffer``.

        The unfinished episodes are kept, so that the next call continues them. Exploration asks for
        ``online_target_return``; the policy's own target return (evaluation callbacks use it in between) is
        restored after every step.

        :param env: the training VecEnv (``self._last_obs`` holds its observations)
        :param callback: called once per env step; returning False stops the collection
        :param n_steps: env steps to collect, summed over envs
        :param replay_buffer: where the ended episodes go
        :return: env steps collected, episodes ended, and whether to continue training
        """
        episodes = self._open_episodes
        if episodes is None or episodes.observations is not self._last_obs:  # the envs were reset since
            episodes = self._open_episodes = OpenEpisodes(self._last_obs)
        n_collected, n_ended = 0, 0
        callback.on_rollout_start()
        while n_collected < n_steps:
            actions, episodes.policy_state = self._explore(episodes.policy_state)
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            n_collected += env.num_envs
            self._update_info_buffer(infos, dones)
            for episode in episodes.add_step(actions, rewards, new_obs, dones, infos):
                replay_buffer.add(episode)
                n_ended += 1
            self._last_obs, self._last_episode_starts = new_obs, dones
            callback.update_locals(locals())
            if not callback.on_step():  # after the bookkeeping: a later learn() continues from this step
                return RolloutReturn(n_collected, n_ended, continue_training=False)
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
        callback.on_rollout_end()
        return RolloutReturn(n_collected, n_ended, continue_training=True)

    def _explore(self, policy_state: Any) -> tuple[np.ndarray, Any]:
        """The stochastic policy's actions for ``self._last_obs``, asking for ``online_target_return``."""
        policy = self.policy
        eval_target = policy.target_return
        if self.online_target_return is not None:
            policy.target_return = self.online_target_return
        try:
            return policy.predict(self._last_obs, policy_state, self._last_episode_starts, deterministic=False)
        finally:
            policy.target_return = eval_target

    def dump_logs(self) -> None:
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / elapsed)
        if len(self.ep_info_buffer) > 0:
            self.logger.record("rollout/ep_rew_mean", safe_mean([ep["r"] for ep in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([ep["l"] for ep in self.ep_info_buffer]))
        if len(self.ep_success_buffer) > 0:
            self.logger.record("rollout/success_rate", safe_mean(self.ep_success_buffer))
        self.logger.record("time/fps", fps)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)
