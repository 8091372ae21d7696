"""Offline to online: RATE pretrained on weak demonstrations, then fine-tuned online, beside RecurrentPPO.

    python benchmarks/online_finetune.py --task tmaze              # ignore-clue demos, T = 150, 200k env steps
    python benchmarks/online_finetune.py --task cartpole           # mediocre demos (~150), 100k env steps
    python benchmarks/online_finetune.py --task cartpole-scratch   # no demonstrations, 300k env steps
    python benchmarks/online_finetune.py --task tmaze-scratch      # no demonstrations, 200k env steps
    python benchmarks/online_finetune.py --task cartpole --quick   # a smoke run (about 1 min)

Variants of a task's RATE settings: ``--gradient-steps N`` (gradient steps per rollout) and ``--no-critic``
(return-conditioned imitation alone, without the history critic's advantage weights).

Each run evaluates (deterministic, seeded episodes) after pretraining and every ``--eval-every`` env steps,
trains sb3-contrib's RecurrentPPO on the same env for the same number of env steps (unless
``--skip-baseline``), and writes ``benchmarks/results/online_<task>_[nocritic_][<N>gradsteps_]seed<seed>.json``
(a variant's part only where it differs from the task's settings); the last stdout line is the same JSON object.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from common import RESULTS, ZOO_LSTM_POLICY_KWARGS, NormalizedObservations, write_result
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecNormalize

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.collect import collect_episodes
from rate_sb3.envs import make_env, make_expert
from rate_sb3.evaluate import evaluate


@dataclass
class Task:
    env_id: str
    env_kwargs: dict[str, Any]  # of the training env (demonstrations and online episodes)
    eval_kwargs: dict[str, Any]  # of the evaluation env
    metric: str  # "success_rate" or "mean_return"
    env_steps: int
    demonstrations: int = 0
    expert_kwargs: dict[str, Any] = field(default_factory=dict)
    extra_eval_kwargs: list[dict[str, Any]] = field(default_factory=list)
    rate_kwargs: dict[str, Any] = field(default_factory=dict)
    ppo_kwargs: dict[str, Any] = field(default_factory=dict)
    ppo_normalize: bool = False  # VecNormalize around RecurrentPPO's env, as the RL Zoo's `normalize: true`


# Short corridors (1..8) teach the clue retrieval; every fifth length up to 148 spreads junctions over 3 segments.
TMAZE_LENGTHS = [*range(1, 9), *range(13, 149, 5)]
N_ENVS = 8
ONLINE = dict(train_freq=2000, gradient_steps=20, ent_coef="auto", dropout=0.0)
CRITIC_KEYS = ("advantage_temperature", "advantage_gamma", "max_advantage_weight")
TASKS = {
    "tmaze": Task(
        "TMaze-v0",
        {"corridor_length": TMAZE_LENGTHS},
        {"corridor_length": 148},
        "success_rate",
        200_000,
        demonstrations=200,
        expert_kwargs={"ignore_clue": True, "fixed_turn": 1},
        extra_eval_kwargs=[{"corridor_length": 898}],
        rate_kwargs=dict(
            context_len=50,
            n_segments=3,
            d_model=32,
            n_layers=1,
            n_heads=2,
            n_mem_tokens=2,
            batch_size=32,
            n_pretrain_steps=1000,
            learning_rate=1e-3,
            lr_end_factor=1.0,
            target_return=1.0,
            buffer_size=400,
            demo_fraction=0.25,
            # Explore at the junction only (a slip in the corridor times the episode out): the entropy floor
            # covers the junction steps, where 0.8 nats (above ln 2, a fair coin between the arms) keeps both
            # arms tried.
            entropy_mask="rate_sb3.envs.tmaze.junction_steps",
            target_entropy=0.8,
            # A critic of the history lets the rare "clue down, turned down" successes outweigh the many
            # expected ones: exp(advantage / 0.1), capped at 100.
            advantage_temperature=0.1,
            max_advantage_weight=100.0,
            ent_coef="auto_0.1",
            temperature_lr=3e-3,
            gradient_steps=100,
        ),
        ppo_kwargs=dict(n_steps=256, batch_size=512, n_epochs=4, learning_rate=3e-4, ent_coef=0.01),
    ),
    "cartpole": Task(
        "CartPoleNoVel-v1",
        {},
        {},
        "mean_return",
        100_000,
        demonstrations=50,
        expert_kwargs={"error_rate": 0.51, "seed": 0},
        rate_kwargs=dict(
            context_len=20,
            n_segments=3,
            d_model=64,
            n_layers=2,
            n_heads=4,
            n_mem_tokens=4,
            batch_size=32,
            n_pretrain_steps=1000,
            learning_rate=3e-4,
            target_return=500.0,
            buffer_size=300,
            demo_fraction=0.25,
        ),
        # RL Zoo's RecurrentPPO hyperparameters for CartPoleNoVel-v1 (hyperparams/ppo_lstm.yml; lin_X decays to 0)
        ppo_kwargs=dict(
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=LinearSchedule(1e-3, 0.0, 1.0),
            clip_range=LinearSchedule(0.2, 0.0, 1.0),
            policy_kwargs=ZOO_LSTM_POLICY_KWARGS,
        ),
        ppo_normalize=True,
    ),
}
TASKS["tmaze-scratch"] = Task(
    "TMaze-v0",
    TASKS["tmaze"].env_kwargs,
    TASKS["tmaze"].eval_kwargs,
    "success_rate",
    200_000,
    extra_eval_kwargs=TASKS["tmaze"].extra_eval_kwargs,
    rate_kwargs={k: v for k, v in TASKS["tmaze"].rate_kwargs.items() if k not in ("n_pretrain_steps",)},
    ppo_kwargs=TASKS["tmaze"].ppo_kwargs,
)
TASKS["cartpole-scratch"] = Task(
    "CartPoleNoVel-v1",
    {},
    {},
    "mean_return",
    300_000,
    rate_kwargs={
        **{k: v for k, v in TASKS["cartpole"].rate_kwargs.items() if k not in ("n_pretrain_steps",)},
        # Advantage weights on returns discounted by 0.99: an action is credited with the next hundred or so
        # steps, not with the whole rest of a 500-step episode (whose length is mostly luck early on).
        "advantage_temperature": 0.01,
        "advantage_gamma": 0.99,
        "max_advantage_weight": 20.0,
        "gradient_steps": 50,
    },
    ppo_kwargs=TASKS["cartpole"].ppo_kwargs,
    ppo_normalize=True,
)


class CurveCallback(BaseCallback):
    """Evaluates the model every ``every`` env steps and records (env steps, metric)."""

    def __init__(self, task: Task, every: int, episodes: int) -> None:
        super().__init__()
        self.task, self.every, self.episodes = task, every, episodes
        self.curve: list[tuple[int, float]] = []
        self.next_eval = every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.every
            self.curve.append((self.num_timesteps, score(self.model, self.task, self.episodes)))
            print(f"  {type(self.model).__name__} {self.num_timesteps} steps: {self.curve[-1][1]:.3f}", flush=True)
        return True


def score(model: BaseAlgorithm, task: Task, episodes: int, env_kwargs: dict | None = None) -> float:
    kwargs = task.eval_kwargs if env_kwargs is None else env_kwargs
    env = model.get_env()
    agent = NormalizedObservations(model, env) if isinstance(env, VecNormalize) else model
    result = evaluate(agent, task.env_id, kwargs, n_episodes=episodes, n_envs=min(episodes, 20), seed=10_000)
    return float(result[task.metric])


def run_rate(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    env = make_vec_env(
        lambda: PrevRewardWrapper(make_env(task.env_id, **task.env_kwargs)), n_envs=N_ENVS, seed=args.seed
    )
    demos = None
    if task.demonstrations:
        expert = make_expert(task.env_id, **task.expert_kwargs)
        env_fn = lambda: make_env(task.env_id, **task.env_kwargs)  # noqa: E731
        demos = collect_episodes(expert, env_fn, args.demos or task.demonstrations, n_envs=4, seed=args.seed)
    kwargs = rate_kwargs(task, args)
    model = RATE("RATEPolicy", env, demonstrations=demos, seed=args.seed, verbose=0, **kwargs)
    result: dict[str, Any] = {}
    started = time.perf_counter()
    if demos is not None:
        model.pretrain(progress_bar=False, log_interval=10**9)
        result["pretrain_seconds"] = round(time.perf_counter() - started, 1)
        result["pretrain_score"] = score(model, task, args.episodes)
        print(f"RATE after pretraining: {result['pretrain_score']:.3f}", flush=True)
    curve = CurveCallback(task, args.eval_every, args.episodes)
    model.learn(args.env_steps, callback=curve)
    result.update(curve=curve.curve, final_score=score(model, task, args.episodes))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["extra"] = {str(kw): score(model, task, args.episodes, kw) for kw in task.extra_eval_kwargs}
    return result


def rate_kwargs(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    """RATE's arguments: the task's online settings with the variant's flags applied."""
    kwargs = dict(ONLINE, **task.rate_kwargs)
    if args.no_critic:
        kwargs = {key: value for key, value in kwargs.items() if key not in CRITIC_KEYS}
    if args.gradient_steps is not None:
        kwargs["gradient_steps"] = args.gradient_steps
    if args.quick:
        kwargs.update(n_pretrain_steps=min(kwargs.get("n_pretrain_steps", 0), 50), gradient_steps=5)
    return kwargs


def variant(task: Task, args: argparse.Namespace) -> str:
    """The file-name part of the flags that change the task's settings, e.g. ``"nocritic_20gradsteps_"``."""
    parts = ["nocritic_"] if args.no_critic else []
    if args.gradient_steps not in (None, dict(ONLINE, **task.rate_kwargs)["gradient_steps"]):
        parts.append(f"{args.gradient_steps}gradsteps_")
    return "".join(parts)


def result_path(args: argparse.Namespace) -> Path:
    name = f"online_{args.task}_{variant(TASKS[args.task], args)}seed{args.seed}{'_quick' if args.quick else ''}"
    return args.out or RESULTS / f"{name}.json"


def run_recurrent_ppo(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    env = make_vec_env(lambda: make_env(task.env_id, **task.env_kwargs), n_envs=N_ENVS, seed=args.seed)
    if task.ppo_normalize:
        env = VecNormalize(env, gamma=task.ppo_kwargs.get("gamma", 0.99))
    model = RecurrentPPO("MlpLstmPolicy", env, seed=args.seed, verbose=0, **task.ppo_kwargs)
    started = time.perf_counter()
    curve = CurveCallback(task, args.eval_every, args.episodes)
    model.learn(args.env_steps, callback=curve)
    final_score = score(model, task, args.episodes)
    return {"curve": curve.curve, "final_score": final_score, "seconds": round(time.perf_counter() - started, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cartpole", choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=None, help="online env steps (default: the task's)")
    parser.add_argument("--demos", type=int, default=None, help="number of demonstrations (default: the task's)")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes")
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--skip-baseline", action="store_true", help="do not train RecurrentPPO")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4k env steps, 10 evaluation episodes")
    parser.add_argument("--gradient-steps", type=int, default=None, help="per rollout (default: the task's)")
    parser.add_argument("--no-critic", action="store_true", help="no advantage weights from the history critic")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.no_critic and not set(CRITIC_KEYS) & set(TASKS[args.task].rate_kwargs):
        parser.error(f"--no-critic: task {args.task} does not use the critic; it applies to {critic_tasks()}")
    if args.gradient_steps is not None and args.gradient_steps < 1:
        parser.error(f"--gradient-steps {args.gradient_steps}: must be >= 1")
    return args


def critic_tasks() -> str:
    return ", ".join(name for name, task in sorted(TASKS.items()) if set(CRITIC_KEYS) & set(task.rate_kwargs))


def main() -> None:
    args = parse_args()
    task = TASKS[args.task]
    if args.quick:
        args.env_steps, args.episodes = 4000, 10
    args.env_steps = args.env_steps or task.env_steps
    args.eval_every = args.eval_every or max(1, args.env_steps // 10)
    th.manual_seed(args.seed)
    rate = run_rate(task, args)
    baseline = None if args.skip_baseline else run_recurrent_ppo(task, args)
    metric = "success" if task.metric == "success_rate" else "return"
    result = {
        "env": task.env_id,
        "env_kwargs": task.env_kwargs,
        "eval_kwargs": task.eval_kwargs,
        "task": args.task,
        "command": shlex.join(["python", "benchmarks/online_finetune.py", *sys.argv[1:]]),
        "seed": args.seed,
        "gradient_steps": rate_kwargs(task, args)["gradient_steps"],
        "critic": not args.no_critic and bool(set(CRITIC_KEYS) & set(task.rate_kwargs)),
        "env_steps": args.env_steps,
        f"pretrain_{metric}": rate.get("pretrain_score"),
        f"finetune_{metric}": rate["final_score"],
        f"recurrent_ppo_{metric}": None if baseline is None else baseline["final_score"],
        "extra_lengths": rate["extra"],
        "rate": rate,
        "recurrent_ppo": baseline,
        "evaluation_episodes": args.episodes,
        "torch": th.__version__,
        "gymnasium": gym.__version__,
    }
    write_result(result, result_path(args))


if __name__ == "__main__":
    main()
