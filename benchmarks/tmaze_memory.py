"""T-Maze memory: success rate against episode length, pretrained on oracle demonstrations with T <= 150.

    python benchmarks/tmaze_memory.py --mode rate --seed 0             # one run (about 20 min on 2 cores)
    python benchmarks/tmaze_memory.py --mode dt --memory-grad bptt      # the DT baseline, same budget
    python benchmarks/tmaze_memory.py --quick                          # a smoke run (about 1 min)

Writes ``benchmarks/results/tmaze_<mode>_<memory_grad>_seed<seed>.json`` (``--out`` overrides) and prints
the same JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import time
from functools import partial
from pathlib import Path

import gymnasium as gym
import torch as th
from common import RESULTS, write_result

from rate_sb3 import RATE
from rate_sb3.collect import collect_episodes
from rate_sb3.envs import make_expert
from rate_sb3.evaluate import evaluate

# Corridor lengths L (T = L + 2 <= 150): equal shares of demonstrations from L in 1..8, 1..48 and 1..148, so that
# a third of the junctions come a few steps after the clue (easy to learn to retrieve) and the rest are spread
# over all three segments (only memory carries the clue there).
TRAIN_RANGES = (8, 48, 148)
DEFAULT_BURN_IN = inspect.signature(RATE).parameters["burn_in_segments"].default
EVAL_T = [9, 30, 90, 150, 300, 900, 2400, 9600]

# One architecture for every mode: K = 50 steps, 3 segments, as in the paper's T-Maze runs; a small model, so that
# pretraining fits the 20-minute CPU budget.
ARCHITECTURE = dict(
    context_len=50, n_segments=3, d_model=32, n_layers=1, n_heads=2, n_mem_tokens=2, n_heads_mrv=2, dropout=0.1
)


def oracle_demonstrations(n_episodes: int, seed: int, ranges: list[int]) -> list:
    """Equal shares of oracle episodes with corridor lengths drawn uniformly from 1..r for each r in ``ranges``."""
    expert = make_expert("TMaze-v0")
    episodes = []
    for index, longest in enumerate(ranges):
        env_fn = partial(gym.make, "TMaze-v0", corridor_length=list(range(1, longest + 1)))
        episodes += collect_episodes(expert, env_fn, n_episodes // len(ranges), n_envs=4, seed=seed + index)
    return episodes


def run(args: argparse.Namespace) -> dict:
    th.manual_seed(args.seed)
    started = time.perf_counter()
    demos = oracle_demonstrations(args.demos, args.seed, args.train_ranges)
    model = RATE(
        "RATEPolicy",
        "TMaze-v0",
        demonstrations=demos,
        mode=args.mode,
        memory_grad=args.memory_grad,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        warmup_steps=100,
        lr_end_factor=1.0,  # a decayed rate stalls before the single junction action per window is learned
        curriculum=args.curriculum,
        burn_in_segments=args.burn_in_segments,
        seed=args.seed,
        **dict(ARCHITECTURE, context_len=args.context_len),
    )
    pretrain_started = time.perf_counter()
    model.pretrain(args.steps, log_interval=args.steps // 10 or 1)
    pretrain_seconds = time.perf_counter() - pretrain_started
    success = {}
    for length in args.eval_t:
        result = evaluate(model, "TMaze-v0", {"corridor_length": length - 2}, args.episodes, args.episodes, args.seed)
        success[str(length)] = result["success_rate"]
        print(f"T={length}: success {result['success_rate']:.2f} ({result['seconds']:.0f} s)", flush=True)
    return {
        "benchmark": "tmaze_memory",
        "mode": args.mode,
        "memory_grad": args.memory_grad,
        "seed": args.seed,
        "pretrain_steps": args.steps,
        "batch_size": args.batch_size,
        "demonstrations": args.demos,
        "train_corridor_ranges": [f"1..{longest}" for longest in args.train_ranges],
        "learning_rate": args.lr,
        "curriculum": args.curriculum,
        "burn_in_segments": args.burn_in_segments,
        "architecture": dict(ARCHITECTURE, context_len=args.context_len),
        "success": success,
        "episodes_per_length": args.episodes,
        "pretrain_seconds": round(pretrain_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.processor() or platform.machine()}, {th.get_num_threads()} threads",
        "torch": th.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="rate", choices=["rate", "rmt", "trxl", "dt"])
    parser.add_argument("--memory-grad", default="bptt", choices=["bptt", "detach"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4000, help="pretraining gradient steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--demos", type=int, default=999)
    parser.add_argument("--train-ranges", type=int, nargs="+", default=list(TRAIN_RANGES), help="see TRAIN_RANGES")
    parser.add_argument(
        "--no-curriculum",
        dest="curriculum",
        action="store_false",
        help="train on 3-segment windows from the start (default: 1, then 2, then 3 segments)",
    )
    parser.add_argument(
        "--burn-in-segments",
        type=int,
        default=DEFAULT_BURN_IN,
        help=f"segments of memory burn-in before each training window (default: RATE's, {DEFAULT_BURN_IN})",
    )
    parser.add_argument(
        "--context-len",
        type=int,
        default=ARCHITECTURE["context_len"],
        help="K, steps per segment: a smaller K with --train-ranges up to 3K - 2 is the same task at a smaller scale",
    )
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per length")
    parser.add_argument("--eval-t", type=int, nargs="+", default=EVAL_T)
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 steps, 10 episodes, T <= 900")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.episodes, args.demos, args.eval_t = 60, 10, 200, [9, 150, 900]
    result = run(args)
    name = f"tmaze_{args.mode}_{args.memory_grad}"
    if not args.curriculum:
        name += "_nocurriculum"
    if args.context_len != ARCHITECTURE["context_len"]:
        name += f"_K{args.context_len}"
    if args.burn_in_segments != DEFAULT_BURN_IN:
        name += f"_burnin{args.burn_in_segments}"
    if args.train_ranges != list(TRAIN_RANGES):
        name += "_ranges" + "-".join(map(str, args.train_ranges))
    out = args.out or RESULTS / f"{name}_seed{args.seed}{'_quick' if args.quick else ''}.json"
    write_result(result, out)


if __name__ == "__main__":
    main()
