"""Pretraining throughput of RATE against the reference implementation, side by side in one process.

    python benchmarks/reference_speed.py --reference /path/to/export           # full run (15 min on 2 busy cores)
    python benchmarks/reference_speed.py --reference /path/to/export --quick   # 3 rounds (8 min)

``--reference`` is a local export of github.com/CognitiveAISystems/RATE: a folder holding its ``RATE/`` package
(``RATE_model.py``, ``blocks/``, ``env_encoders/``). It is imported from there; nothing is downloaded, and nothing
of it is part of this repository.

Both models get the T-Maze configuration of the reference's training script: K = 50, 3 segments, d_model 64,
4 heads of 32, 15 memory tokens, a Memory Retention Valve of 2 heads after a ReLU, no feed-forward block (the
script's ``skip_dec_ffn``, so its ``d_inner`` 32 is unused), dropout 0.2, no hidden-state cache, the double
residual and the shared initial memory token; with its 10 layers and with 3, each at batch 32 and 64.

* Reference: a batch as its T-Maze trainer runs one, on random inputs of T-Maze's shapes (4-dim observations,
  4 actions) made once: 3 segments, each a forward, the cross-entropy, a backward, gradient clipping and an AdamW
  step, with the memory tokens detached between segments. Its data loading and the per-row accuracy loops of its
  trainer are left out (they would only slow it down).
* Ours: ``model.pretrain`` on oracle T-Maze demonstrations of 150 steps, windows from the episode start (the
  set-up of ``training_speed.py``): one gradient step through all 3 segments (BPTT), sampling and collating the
  batch included.

Throughput is env steps of trajectory per second for both: batch * 3 * K / seconds per batch. The machine may be
shared, so the two take turns (the order alternating, repeated, medians) with one torch thread. Writes
``benchmarks/results/reference_speed[_quick].json`` and prints the JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch as th
from common import RESULTS, add_timing_arguments, machine_info, write_result
from torch.nn import functional as F
from training_speed import training_model

from rate_sb3 import RATE

K, N_SEGMENTS, OBS_DIM, N_ACTIONS = 50, 3, 4, 4
LAYERS, BATCH_SIZES = (10, 3), (32, 64)
# The reference's T-Maze script (run_experiments/TMaze/run_rate_tmaze.sh) and its optimizer settings.
REFERENCE_CONFIG = dict(
    env_name="tmaze",
    state_dim=OBS_DIM,
    act_dim=N_ACTIONS,
    n_head=4,
    n_head_ca=2,
    d_model=64,
    d_head=32,
    d_inner=32,
    dropout=0.2,
    dropatt=0.0,
    mem_len=0,
    ext_len=0,
    num_mem_tokens=15,
    mem_at_end=True,
    mrv_act="relu",
    skip_dec_ffn=True,
    padding_idx=-10,
)
LEARNING_RATE, WEIGHT_DECAY, MAX_GRAD_NORM = 3e-4, 0.01, 1.0
OUR_ARCHITECTURE = dict(
    context_len=K,
    n_segments=N_SEGMENTS,
    d_model=64,
    n_heads=4,
    d_head=32,
    d_inner=0,
    dropout=0.2,
    n_mem_tokens=15,
    n_heads_mrv=2,
    mrv_act="relu",
    double_residual=True,
    shared_mem_init=True,
    learning_rate=LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    max_grad_norm=MAX_GRAD_NORM,
)
NEEDED_FILES = ("RATE_model.py", "blocks/Decoder.py", "blocks/Attention.py", "blocks/PositionwiseFF.py")
NEEDED_FILES += ("blocks/PositionalEmbedding.py", "env_encoders/__init__.py")


# ------------------------------------------------------------------------------------------- the reference
def import_reference(export: Path) -> types.ModuleType:
    """The reference's ``RATE.RATE_model`` module, imported from the local export ``export``."""
    package = export / "RATE"
    missing = [name for name in NEEDED_FILES if not (package / name).is_file()]
    if missing:
        raise SystemExit(
            f"--reference {export}: {package} lacks {', '.join(missing)}. Give a local export of "
            "github.com/CognitiveAISystems/RATE: the folder that holds its RATE/ package."
        )
    sys.path.insert(0, str(export))
    # Load the package without its __init__, which imports every subpackage: RATE.utils (adaptive softmax, for
    # language models) is imported by the model and used nowhere on the T-Maze path, so an export may leave it out.
    _bare_package("RATE", package)
    if not (package / "utils").is_dir():
        utils = _bare_package("RATE.utils", package / "utils")
        utils.LogUniformSampler = utils.sample_logits = utils.ProjectedAdaptiveLogSoftmax = None
    blocks = _bare_package("RATE.blocks", package / "blocks")  # what its __init__ gives the model
    decoder = importlib.import_module("RATE.blocks.Decoder")
    blocks.RelPartialLearnableDecoderLayer = decoder.RelPartialLearnableDecoderLayer
    blocks.PositionalEmbedding = importlib.import_module("RATE.blocks.PositionalEmbedding").PositionalEmbedding
    return importlib.import_module("RATE.RATE_model")


def _bare_package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
    return module


class ReferenceTraining:
    """The reference model and optimizer, and a batch of random T-Maze-shaped inputs it trains on."""

    def __init__(self, module: types.ModuleType, n_layers: int, batch_size: int, seed: int) -> None:
        th.manual_seed(seed)
        model_class = getattr(module, "RATE", None) or module.MemTransformerLM  # the class's name in newer versions
        self.model = model_class(n_layer=n_layers, **REFERENCE_CONFIG)
        th.nn.init.xavier_uniform_(self.model.r_w_bias)
        th.nn.init.xavier_uniform_(self.model.r_r_bias)
        self.model.train()
        self.optimizer = th.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        window = N_SEGMENTS * K
        self.observations = th.randint(-1, 2, (batch_size, window, OBS_DIM)).float()
        self.actions = th.randint(0, N_ACTIONS, (batch_size, window, 1)).float()
        self.returns_to_go = th.ones(batch_size, window, 1)
        self.timesteps = th.arange(window).expand(batch_size, -1)
        self.masks = th.ones(batch_size, window)

    def train_batch(self) -> None:
        """One batch: a forward, backward and optimizer step per segment, memory detached in between."""
        memory = self.model.mem_tokens.repeat(1, len(self.actions), 1)
        for start in range(0, N_SEGMENTS * K, K):
            steps = slice(start, start + K)
            actions = self.actions[:, steps]
            out = self.model(
                self.observations[:, steps],
                actions,
                self.returns_to_go[:, steps],
                actions,
                self.timesteps[:, steps],
                mem_tokens=memory,
                masks=self.masks[:, steps],
            )
            logits = out["logits"]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), actions.reshape(-1).long(), ignore_index=-10)
            self.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
            self.optimizer.step()
            memory = out["mem_tokens"].detach()


# ------------------------------------------------------------------------------------------------ timing
def time_pair(reference: ReferenceTraining, ours: RATE, rounds: int, batches: int) -> dict[str, list[float]]:
    """Seconds per batch of each, taking turns ``batches`` batches at a time, the first to go alternating."""
    turns = {"reference": reference.train_batch, "ours": lambda: ours.pretrain(1, log_interval=1)}
    seconds: dict[str, list[float]] = {name: [] for name in turns}
    for r in range(rounds):
        for name in list(turns)[:: 1 if r % 2 else -1]:
            started = time.perf_counter()
            for _ in range(batches):
                turns[name]()
            seconds[name].append((time.perf_counter() - started) / batches)
    return seconds


def compare(module: types.ModuleType, n_layers: int, batch_size: int, args: argparse.Namespace) -> dict:
    reference = ReferenceTraining(module, n_layers, batch_size, args.seed)
    reference.train_batch()  # warm-up
    ours = training_model(dict(OUR_ARCHITECTURE, n_layers=n_layers), args.demos, batch_size, args.seed)
    seconds = time_pair(reference, ours, args.rounds, args.batches)
    env_steps = batch_size * N_SEGMENTS * K
    rates = {name: env_steps / float(np.median(values)) for name, values in seconds.items()}
    return {
        "n_layers": n_layers,
        "batch_size": batch_size,
        "reference_env_steps_per_second": round(rates["reference"], 1),
        "ours_env_steps_per_second": round(rates["ours"], 1),
        "ratio": round(rates["ours"] / rates["reference"], 3),
        "per_round_seconds": {name: [round(v, 4) for v in values] for name, values in seconds.items()},
    }


# -------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="local export of CognitiveAISystems/RATE")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="turns of each model per configuration")
    parser.add_argument("--batches", type=int, default=1, help="batches per turn")
    parser.add_argument("--demos", type=int, default=64, help="oracle demonstrations for our model")
    add_timing_arguments(parser)
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 10)
    module = import_reference(args.reference.resolve())
    th.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {"benchmark": "reference_speed", "quick": args.quick, "machine": machine_info()}
    result["settings"] = dict(
        reference=REFERENCE_CONFIG,
        ours=OUR_ARCHITECTURE,
        rounds=args.rounds,
        batches_per_round=args.batches,
        demonstrations=args.demos,
        threads=args.threads,
    )
    result["comparisons"] = []
    for n_layers in LAYERS:
        for batch_size in BATCH_SIZES:
            entry = compare(module, n_layers, batch_size, args)
            result["comparisons"].append(entry)
            print({k: v for k, v in entry.items() if k != "per_round_seconds"}, flush=True)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    write_result(result, args.out or RESULTS / f"reference_speed{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
