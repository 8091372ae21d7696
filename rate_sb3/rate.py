"""RATE, the algorithm as users make it: its hyperparameters, their defaults and documentation, the env given
reward feedback, and the :class:`RATEConfig` made from the architecture's arguments. The training it runs is
:mod:`rate_sb3.return_conditioned`'s (offline) and :mod:`rate_sb3.online`'s."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from rate_sb3.architecture import RATEConfig
from rate_sb3.arguments import require_at_least
from rate_sb3.demonstrations import DemonstrationSource
from rate_sb3.encoders import check_spaces
from rate_sb3.objective import EntropyMask
from rate_sb3.online import OnlineAlgorithm
from rate_sb3.policies import RATEPolicy
from rate_sb3.schedules import plain_schedule
from rate_sb3.wrappers import env_observation_space, with_reward_feedback

# RATE takes each field of RATEConfig under its own name, but for the two it derives (see _window_architecture)
ARCHITECTURE_KEYS = tuple(field.name for field in fields(RATEConfig) if field.name not in ("segment_len", "mem_len"))
ARCHITECTURE_ARGUMENTS = (*ARCHITECTURE_KEYS, "context_len", "mem_len")  # RATE's arguments that make its config


class RATE(OnlineAlgorithm):
    """Recurrent Action Transformer with Memory (Cherepanov et al., arXiv 2306.09459).

    A return-conditioned memory transformer, pretrained offline on demonstrations (:meth:`pretrain`) and
    fine-tuned online with the Online Decision Transformer recipe (:meth:`learn`): a stochastic policy,
    an entropy temperature learned against a target entropy, and replay of whole episodes with hindsight
    returns-to-go. Observations carry the previous reward (:class:`rate_sb3.wrappers.PrevRewardWrapper`,
    applied automatically to env ids and gym envs) so that ``predict`` can track the return-to-go.

    The architecture's arguments (``d_model`` to ``shared_mem_init``, documented by
    :class:`rate_sb3.architecture.RATEConfig`) make :attr:`config`, with the segment length from ``context_len``,
    ``n_segments`` and ``mode``, and the cache length from ``mem_len``; the policy is built from it.

    :param policy: ``"RATEPolicy"`` or the policy class
    :param env: env id, gym env or VecEnv (a VecEnv must already carry PrevRewardWrapper)
    :param learning_rate: peak learning rate (float or schedule of the remaining progress)
    :param online: ``True``: :meth:`learn` pretrains (``n_pretrain_steps``) then acts for ``total_timesteps``
        env steps; ``False``: :meth:`learn` trains offline for ``total_timesteps`` gradient steps, calling the
        callbacks after each (so evaluation, checkpoints, pruning and progress bars work offline)
    :param demonstrations: Episode list, ``.npz`` path, Minari id or dir, imitation dataset dir, or an expert
        spec ``{"expert": "privileged", "n_episodes": N, "expert_kwargs": {...}, "env_kwargs": {...},
        "cache": "demos/x.npz"}`` collected on first use
    :param context_len: K, env steps per segment
    :param n_segments: segments per training window (the window is ``n_segments * context_len`` steps)
    :param mem_len: hidden-state cache length in tokens (default: 0, or three segments in ``trxl`` mode)
    :param batch_size: windows per gradient step
    :param n_pretrain_steps: gradient steps of offline pretraining run by :meth:`learn` before acting
    :param warmup_steps: linear learning-rate warm-up, in pretraining steps
    :param lr_end_factor: pretraining learning rate decays linearly to this fraction
    :param weight_decay: AdamW weight decay on weight matrices
    :param max_grad_norm: gradient clipping norm
    :param mixed_precision: run the training forward under bfloat16 autocast (``torch.autocast`` on the model's
        device); parameters, optimizer state, gradients and ``predict`` stay float32. Pays off on GPUs with
        bfloat16 units; on a CPU without them it is slower
    :param curriculum: pretrain on 1, then 2, ... ``n_segments`` segments (equal shares of the steps)
    :param burn_in_segments: a training window starts at any segment of its episode; up to this many earlier
        segments are run before it without gradient, to warm the memory (0: the memory starts fresh at the window,
        as in the paper). Ignored in ``dt`` mode, which has no memory
    :param target_return: return the policy asks for at evaluation (default: best demonstration return)
    :param online_target_return: return asked for while exploring online (default: ``target_return``)
    :param return_scale: factor applied to returns before embedding (default: ``1 / |target_return|``)
    :param cap_return_to_go: keep the return-to-go the policy conditions on at or below the highest one in the
        trajectory buffer (or the target return, if higher); with negative rewards a bad start would otherwise
        ask, a few steps in, for more than any trajectory achieved (an out-of-distribution return)
    :param buffer_size: online episodes kept for replay
    :param demo_fraction: share of each online batch drawn from demonstrations
    :param train_freq: env steps (summed over envs) between rounds of gradient steps online
    :param gradient_steps: gradient steps per round
    :param ent_coef: entropy temperature: ``"auto"`` / ``"auto_0.05"`` (learned, with its initial value) or a float
    :param target_entropy: ``"auto"`` or a float (nats per step)
    :param temperature_lr: learning rate of the temperature's optimizer
    :param entropy_mask: the steps the entropy bonus and its target cover (default: all), as a function of the
        observations ``(batch, step, *obs_shape) -> (batch, step)`` bool tensor, or its dotted import path: a
        task whose choices are made at few, observable steps explores there and not where a slip is fatal
        (``rate_sb3.envs.tmaze.junction_steps``)
    :param advantage_temperature: learn a value function of the history (:class:`rate_sb3.critic.HistoryCritic`)
        and weight each step's likelihood by ``exp(advantage / advantage_temperature)``, normalised over the batch
        (None: no critic). Return conditioning learns from a rare success only as fast as the rare success
        turns up in batches; the weights let the steps that did better than the critic expected count for more
    :param max_advantage_weight: cap on a step's weight before normalisation
    :param vf_coef: weight of the critic's squared error in the loss
    :param advantage_gamma: discount of the returns the critic learns and the advantages compare (1: the
        undiscounted return-to-go). Below 1 each action is credited with the rewards that soon follow it, not
        with the whole rest of the episode: the choice for dense rewards and long episodes (CartPole: 0.99)
    :param action_mse_coef: Box actions: weight of the squared error of the deterministic action, added to the
        likelihood (which alone fits actions at the bounds of the box by widening the Gaussian)
    :param policy_kwargs: extra arguments of the policy
    :param stats_window_size: episodes averaged in the ``rollout/`` logs
    :param tensorboard_log: tensorboard directory (pretraining and online curves go to one run)
    :param verbose: 0 silent, 1 info
    :param seed: random seed
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"RATEPolicy": RATEPolicy}

    def __init__(
        self,
        policy: str | type[RATEPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 3e-4,
        demonstrations: DemonstrationSource = None,
        online: bool = True,
        context_len: int = 50,
        n_segments: int = 3,
        d_model: int = 64,
        n_layers: int = 3,
        n_heads: int = 4,
        d_head: int | None = None,
        d_inner: int = 0,
        dropout: float = 0.1,
        dropatt: float = 0.0,
        n_mem_tokens: int = 8,
        mem_len: int | None = None,
        n_heads_mrv: int = 2,
        mrv_act: str = "relu",
        mode: str = "rate",
        memory_grad: str = "bptt",
        double_residual: bool = False,
        shared_mem_init: bool = False,
        batch_size: int = 64,
        n_pretrain_steps: int = 0,
        warmup_steps: int = 200,
        lr_end_factor: float = 0.1,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
        mixed_precision: bool = False,
        curriculum: bool = False,
        burn_in_segments: int = 2,
        target_return: float | None = None,
        online_target_return: float | None = None,
        return_scale: float | None = None,
        cap_return_to_go: bool = True,
        buffer_size: int = 1000,
        demo_fraction: float = 0.5,
        train_freq: int = 1000,
        gradient_steps: int = 50,
        ent_coef: str | float = "auto",
        target_entropy: str | float = "auto",
        temperature_lr: float = 1e-3,
        entropy_mask: str | EntropyMask | None = None,
        advantage_temperature: float | None = None,
        max_advantage_weight: float = 20.0,
        vf_coef: float = 0.5,
        advantage_gamma: float = 1.0,
        action_mse_coef: float = 10.0,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        # first, while the arguments are all there is: the signature documents the architecture, RATEConfig holds it
        architecture = {name: value for name, value in locals().items() if name in ARCHITECTURE_KEYS}
        env = with_reward_feedback(env)
        if env is not None:  # before SB3's own asserts, which do not say what to do
            check_spaces(env_observation_space(env.observation_space), env.action_space)
        require_at_least(1, context_len=context_len, n_segments=n_segments)  # they make the segment length
        super().__init__(
            policy,
            env,
            plain_schedule(learning_rate),
            demonstrations=demonstrations,
            config=_window_architecture(context_len, n_segments, mem_len, architecture),
            n_segments=n_segments,
            batch_size=batch_size,
            n_pretrain_steps=n_pretrain_steps,
            warmup_steps=warmup_steps,
            lr_end_factor=lr_end_factor,
            weight_decay=weight_decay,
            max_grad_norm=max_grad_norm,
            mixed_precision=mixed_precision,
            curriculum=curriculum,
            burn_in_segments=burn_in_segments,
            target_return=target_return,
            online_target_return=online_target_return,
            return_scale=return_scale,
            cap_return_to_go=cap_return_to_go,
            buffer_size=buffer_size,
            demo_fraction=demo_fraction,
            entropy_mask=entropy_mask,
            action_mse_coef=action_mse_coef,
            advantage_temperature=advantage_temperature,
            max_advantage_weight=max_advantage_weight,
            vf_coef=vf_coef,
            advantage_gamma=advantage_gamma,
            online=online,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            ent_coef=ent_coef,
            target_entropy=target_entropy,
            temperature_lr=temperature_lr,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            support_multi_env=True,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
        )
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._adopt_architecture_attributes()
        super()._setup_model()

    def _adopt_architecture_attributes(self) -> None:
        """Architecture arguments set as attributes update the config: those of a zip saved before RATE held a
        RATEConfig, and the keyword arguments of ``RATE.load`` (where rl_zoo3 passes its hyperparameters when it
        continues training)."""
        given = {name: self.__dict__.pop(name) for name in ARCHITECTURE_ARGUMENTS if name in self.__dict__}
        if not given:
            return
        config = self.config
        architecture = {name: given.get(name, getattr(config, name)) for name in ARCHITECTURE_KEYS}
        segments_per_model_segment = self.n_segments if config.mode == "dt" else 1
        context_len = given.get("context_len", config.segment_len // segments_per_model_segment)
        mem_len = given.get("mem_len", config.mem_len)
        self.config = _window_architecture(context_len, self.n_segments, mem_len, architecture)


def _window_architecture(
    context_len: int, n_segments: int, mem_len: int | None, architecture: dict[str, Any]
) -> RATEConfig:
    """The transformer of windows of ``n_segments`` segments of ``context_len`` steps: ``dt`` runs a window as one
    segment, and ``trxl``'s cache holds three segments' tokens unless ``mem_len`` is given."""
    mode = architecture["mode"]
    if mem_len is None:
        mem_len = 3 * (3 * context_len + 2 * architecture["n_mem_tokens"]) if mode == "trxl" else 0
    segment_len = context_len * n_segments if mode == "dt" else context_len
    return RATEConfig(**architecture, segment_len=segment_len, mem_len=mem_len)
