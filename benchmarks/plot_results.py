"""Plots of the T-Maze memory and offline-to-online results: ``python benchmarks/plot_results.py [--quick]``.

Reads ``benchmarks/results/tmaze_*.json`` and ``online_*.json`` (the ``_quick`` files with ``--quick``) and writes
``tmaze_memory[_quick].png`` (success against episode length, mean +- sem over seeds, one line per variant) and
``online_<env>[_quick].png`` (learning curves of RATE pretrained then fine-tuned, RATE from scratch and
RecurrentPPO from scratch).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np
from common import RESULTS, sem

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_RANGES = ["1..8", "1..48", "1..148"]


def is_quick(path: Path) -> bool:
    return path.stem.endswith("_quick")


def tmaze_summary(paths: list[Path]) -> dict[str, dict[int, tuple[float, float, int]]]:
    """Variant (mode, memory_grad) -> episode length -> (mean, sem, number of seeds)."""
    runs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        result = json.loads(path.read_text())
        variant = f"{result['mode']} ({result['memory_grad']})" if result["mode"] != "dt" else "dt"
        if not result.get("curriculum", False):
            variant += ", no curriculum"
        if result.get("train_corridor_ranges", DEFAULT_RANGES) != DEFAULT_RANGES:
            variant += ", demos L in " + " + ".join(result["train_corridor_ranges"])
        for length, success in result["success"].items():
            runs[variant][int(length)].append(success)
    summary = {}
    for variant, by_length in runs.items():
        summary[variant] = {}
        for length, values in sorted(by_length.items()):
            error = sem(values) if len(values) > 1 else 0.0
            summary[variant][length] = (float(np.mean(values)), error, len(values))
    return summary


def plot_tmaze(quick: bool) -> Path | None:
    paths = [p for p in sorted(RESULTS.glob("tmaze_*_seed*.json")) if is_quick(p) == quick]
    if not paths:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, by_length in sorted(tmaze_summary(paths).items()):
        lengths = list(by_length)
        means = np.array([by_length[t][0] for t in lengths])
        sems = np.array([by_length[t][1] for t in lengths])
        seeds = max(by_length[t][2] for t in lengths)
        ax.errorbar(lengths, means, yerr=sems, marker="o", capsize=3, label=f"{variant}, {seeds} seed(s)")
    ax.axvline(150, color="grey", linestyle=":", label="longest training episode")
    ax.set(xscale="log", xlabel="episode length T", ylabel="success rate", ylim=(0.0, 1.05))
    ax.set_title("T-Maze: trained on T <= 150, evaluated up to T = 9,600")
    ax.legend(fontsize=8)
    out = RESULTS / f"tmaze_memory{'_quick' if quick else ''}.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# file-name parts of online_finetune.py's variants (--no-critic, --gradient-steps N), as plot labels
VARIANT_LABELS = {"nocritic": "no critic", "gradsteps": " gradient steps"}


def variant_runs(stem: str, quick: bool) -> list[tuple[str, dict]]:
    """Every ``<stem>_[<variant>_]seed<S>`` run with its variant (``""`` for the current settings)."""
    suffix = "_quick" if quick else ""
    paths = sorted(RESULTS.glob(f"{stem}_*seed*{suffix}.json"))
    if not quick:
        paths = [path for path in paths if not path.stem.endswith("_quick")]
    return [(path.stem.removeprefix(f"{stem}_").partition("seed")[0], json.loads(path.read_text())) for path in paths]


def run_label(variant: str, run: dict) -> str:
    """``"nocritic_20gradsteps_"`` and seed 0 to ``"no critic, 20 gradient steps, seed 0"``."""
    parts = []
    for part in filter(None, variant.split("_")):
        word = part.lstrip("0123456789")
        parts.append(part.removesuffix(word) + VARIANT_LABELS.get(word, word))
    return ", ".join([*parts, f"seed {run['seed']}"])


def online_curves(task: str, quick: bool) -> list[tuple[str, str, list]]:
    """(label, line style, points) of one env: RATE pretrained then fine-tuned (``online_<task>_*``), RATE from
    scratch (``online_<task>-scratch_*``) and RecurrentPPO from scratch (the longest run of any of them)."""
    finetuned = variant_runs(f"online_{task}", quick)
    scratch = variant_runs(f"online_{task}-scratch", quick)
    curves = []
    for variant, run in finetuned:
        points = [(0, run["rate"]["pretrain_score"]), *run["rate"]["curve"]]
        curves.append((f"RATE, pretrained then fine-tuned ({run_label(variant, run)})", "o-", points))
    for variant, run in scratch:
        curves.append((f"RATE from scratch ({run_label(variant, run)})", "s--", run["rate"]["curve"]))
    with_baseline = [(variant, run) for variant, run in [*finetuned, *scratch] if run["recurrent_ppo"]]
    if with_baseline:  # the longest run, one of the current settings if there is one
        _, run = max(with_baseline, key=lambda item: (item[1]["recurrent_ppo"]["curve"][-1][0], item[0] == ""))
        curves.append((f"RecurrentPPO from scratch (seed {run['seed']})", "^:", run["recurrent_ppo"]["curve"]))
    return curves


def plot_online(quick: bool) -> list[Path]:
    outputs = []
    for task, env_id, metric in (
        ("tmaze", "TMaze-v0, T = 150", "success rate"),
        ("cartpole", "CartPoleNoVel-v1", "mean return"),
    ):
        curves = online_curves(task, quick)
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(10, 4))
        for label, style, points in curves:
            steps, scores = zip(*points)
            ax.plot(steps, scores, style, ms=4, label=label)
        ax.set(xlabel="online env steps", ylabel=metric, title=env_id)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not over them
        out = RESULTS / f"online_{task}{'_quick' if quick else ''}.png"
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        plt.close(fig)
        outputs.append(out)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="plot the smoke-run results")
    args = parser.parse_args()
    written = [plot_tmaze(args.quick), *plot_online(args.quick)]
    for path in written:
        if path is not None:
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
