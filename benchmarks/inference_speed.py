"""Inference speed: incremental ``predict`` against recomputing the window, flatness, and a long evaluation.

    python benchmarks/inference_speed.py            # full run (about 3 min on 2 busy cores)
    python benchmarks/inference_speed.py --quick    # smoke run (about 90 s)

The T-Maze architecture the speed target is set for: K = 50 steps, 3 segments, d_model 64 (untrained:
speed does not depend on the weights).

* (a) ``RATEPolicy.predict`` (keys and values cached inside a segment) against :class:`RecomputeWindow`,
  which rebuilds the segment's window at every step as the reference implementation does, for 1, 16 and
  100 envs;
* (a') the transformer's incremental step alone (1 env), the floor of ``predict`` at 1 env;
* (b) per-step time of ``predict`` in windows of 200 steps around episode steps 100, 1,000 and 9,000;
* (c) wall time of ``evaluate`` on 100 T-Maze episodes with T = 9,600 (``--quick``: 10 episodes, extrapolated).

The machine may be shared, so methods and points are timed side by side (alternating at every call,
repeated, medians) and compared as ratios. Writes ``benchmarks/results/inference_speed[_quick].json`` and
``.png``, and prints the JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from common import INFERENCE_ARCHITECTURE, RESULTS, add_timing_arguments, machine_info, observation_batch, write_result

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.attention import KeyValueStore
from rate_sb3.evaluate import evaluate
from rate_sb3.policies import RATEPolicy
from rate_sb3.stepping import RATEState

FLATNESS_POINTS = (100, 1000, 9000)
BLOCK = 10  # flatness points take turns every BLOCK calls
EVAL_CORRIDOR = 9598  # T = L + 2 = 9,600


class RecomputeWindow:
    """Acting as the reference implementation does: every step rebuilds the segment's window from scratch.

    A fresh store gets the read tokens of the current memory, then all the window's tokens so far
    ``[R_0, o_0, a_0, ..., R_s, o_s]`` run in one call and the action comes from the output at ``o_s``.
    When a segment is complete its first 3K - 1 tokens run once more, then a_{K-1} and the write tokens,
    to give the next memory, as :class:`RATEPolicy` does. Discrete actions, deterministic; the envs start
    together and stay in lockstep (enough for timing).
    """

    def __init__(self, policy: RATEPolicy, n_envs: int) -> None:
        policy.set_training_mode(False)
        self.policy, self.inference, self.config = policy, policy.stepper.inference, policy.config
        k = self.config.segment_len
        self.device = device = policy.device
        self.observations = th.zeros(n_envs, k, *policy.inner_observation_space.shape, device=device)
        self.actions = th.zeros(n_envs, k, dtype=th.long, device=device)
        self.returns = th.zeros(n_envs, k, device=device)
        self.memory = policy.transformer.init_memory(n_envs).detach().clone()
        self.return_to_go = th.full((n_envs,), policy.target_return * policy.return_scale, device=device)
        self.t = 0

    @th.no_grad()
    def act(self, observation: np.ndarray, prev_reward: np.ndarray) -> tuple[np.ndarray, th.Tensor]:
        """Actions and logits for one step of every env."""
        s = self.t % self.config.segment_len
        if self.t > 0:
            self.return_to_go -= th.as_tensor(prev_reward, device=self.device).flatten() * self.policy.return_scale
            if s == 0:
                self.memory = self._write_memory()
        self.observations[:, s] = th.as_tensor(observation, device=self.device)
        self.returns[:, s] = self.return_to_go
        _, hidden = self._run_window(self._window_tokens(s + 1)[:, : 3 * s + 2])
        logits = self.policy.action_head.linear(hidden[:, -1])
        actions = logits.argmax(-1)
        self.actions[:, s] = actions
        self.t += 1
        return actions.cpu().numpy(), logits

    def _window_tokens(self, n_steps: int) -> th.Tensor:
        return self.policy.embed(self.observations[:, :n_steps], self.actions[:, :n_steps], self.returns[:, :n_steps])

    def _run_window(self, tokens: th.Tensor) -> tuple[KeyValueStore, th.Tensor]:
        """A fresh store with the read tokens and the window's ``tokens``; their outputs.

        The window's tokens run together through the training path's layers (:meth:`RATETransformer.run_tokens`),
        with the attention worked out from their indices in X, into the slots that incremental inference gives them.
        """
        store = self.inference.empty_store(len(tokens), tokens)
        self.inference.begin_segment(store, self.memory, None)
        token_idx = self.config.n_mem_tokens + th.arange(tokens.shape[1], device=tokens.device)
        transformer = self.policy.transformer
        pattern, relative_keys = transformer.attention(token_idx, store, tokens)
        rows = th.arange(len(tokens), device=tokens.device)[:, None]
        slots = (rows * self.inference.n_slots + store.patterns.x_slots[token_idx]).flatten()
        return store, transformer.run_tokens(tokens, store, pattern, relative_keys, slots)

    def _write_memory(self) -> th.Tensor:
        tokens = self._window_tokens(self.config.segment_len)
        store, _ = self._run_window(tokens[:, :-1])
        memory, _, _ = self.inference.end_segment(store, tokens[:, -1:], self.memory, None)
        return memory


# ----------------------------------------------------------------------------------------------- helpers
def timed_predict(policy: RATEPolicy, obs: dict, state, starts: np.ndarray) -> tuple[float, RATEState]:
    started = time.perf_counter()
    _, state = policy.predict(obs, state, starts, deterministic=True)
    return time.perf_counter() - started, state


def incremental_episode(policy: RATEPolicy, observations: list[dict]) -> np.ndarray:
    """Seconds of each ``predict`` call over one episode."""
    times, state = np.zeros(len(observations)), None
    for t, obs in enumerate(observations):
        times[t], state = timed_predict(policy, obs, state, np.full(len(obs["prev_reward"]), t == 0))
    return times


def recompute_episode(policy: RATEPolicy, observations: list[dict]) -> np.ndarray:
    """Seconds of each :meth:`RecomputeWindow.act` call over one episode."""
    times, baseline = np.zeros(len(observations)), RecomputeWindow(policy, len(observations[0]["prev_reward"]))
    for t, obs in enumerate(observations):
        started = time.perf_counter()
        baseline.act(obs["observation"], obs["prev_reward"])
        times[t] = time.perf_counter() - started
    return times


def ms(seconds: float | np.ndarray) -> float | list[float]:
    values = np.round(np.asarray(seconds) * 1e3, 4)
    return values.tolist() if values.ndim else float(values)


# ------------------------------------------------------------------------------------ (a) equal outputs
def check_same_logits(policy: RATEPolicy, corridor_length: int = 148, tolerance: float = 1e-4) -> dict:
    """Run one T-Maze episode through both paths and assert that their action logits agree."""
    env = PrevRewardWrapper(gym.make("TMaze-v0", corridor_length=corridor_length))
    recorded: list[th.Tensor] = []
    head, act = policy.action_head, policy.action_head.act

    def recording_act(hidden: th.Tensor, deterministic: bool) -> th.Tensor:
        recorded.append(head.linear(hidden))
        return act(hidden, deterministic)

    head.act = recording_act  # an instance attribute, shadowing the method until the check ends
    baseline = RecomputeWindow(policy, 1)
    obs, _ = env.reset(seed=0)
    state, starts, worst, steps, done = None, np.ones(1, bool), 0.0, 0, False
    try:
        while not done:
            batch = {key: value[None] for key, value in obs.items()}
            actions, state = policy.predict(batch, state, starts, deterministic=True)
            incremental = recorded[-1]
            _, recomputed = baseline.act(batch["observation"], batch["prev_reward"])
            worst = max(worst, float((incremental - recomputed).abs().max()))
            obs, _, terminated, truncated, _ = env.step(int(actions[0]))
            starts, steps, done = np.zeros(1, bool), steps + 1, terminated or truncated
    finally:
        del head.act
    assert worst < tolerance, f"recompute baseline differs from predict: max |logit diff| = {worst:.2e}"
    return {"episode_steps": steps, "max_abs_logit_diff": worst, "tolerance": tolerance}


# ------------------------------------------------------------------------- (a) incremental vs recompute
def incremental_vs_recompute(policy: RATEPolicy, n_envs: int, n_steps: int, repeats: int, seed: int) -> dict:
    """Per-step times of both methods, episode by episode in alternating order; medians over repeats.

    (Alternating call by call would let the recompute's growing window evict the incremental path's store
    from the caches, which slows it down late in each segment.)
    """
    episodes = {"incremental": incremental_episode, "recompute": recompute_episode}
    times = {name: np.zeros((repeats + 1, n_steps)) for name in episodes}
    for r in range(repeats + 1):  # the first repeat warms up and is dropped
        rng = np.random.default_rng(seed + r)
        observations = [observation_batch(rng, n_envs) for _ in range(n_steps)]
        for name in list(episodes)[:: 1 if r % 2 else -1]:
            times[name][r] = episodes[name](policy, observations)
    return summarize_methods({name: np.median(value[1:], axis=0) for name, value in times.items()}, n_envs, policy)


def summarize_methods(per_step: dict[str, np.ndarray], n_envs: int, policy: RATEPolicy) -> dict:
    k = policy.config.segment_len
    segments = {"first_segment": slice(0, k), "second_segment": slice(k, 2 * k)}
    result: dict = {"n_envs": n_envs}
    for name, part in segments.items():
        inc, rec = per_step["incremental"][part].mean(), per_step["recompute"][part].mean()
        result[name] = {
            "incremental_ms_per_call": ms(inc),
            "recompute_ms_per_call": ms(rec),
            "incremental_ms_per_env_step": ms(inc / n_envs),
            "recompute_ms_per_env_step": ms(rec / n_envs),
            "ratio": round(float(rec / inc), 2),
        }
    last = k - 1
    result["ratio_at_last_step_of_segment"] = round(
        float(per_step["recompute"][last] / per_step["incremental"][last]), 2
    )
    result["per_step_ms"] = {name: ms(value) for name, value in per_step.items()}
    return result


def transformer_step_only(policy: RATEPolicy, repeats: int) -> dict:
    """Per-step time of the transformer's incremental step alone, 1 env, over one segment: the floor of
    ``predict`` (which adds the encoders, the action head, the state bookkeeping and the numpy conversion)."""
    k, times = policy.config.segment_len, np.zeros((repeats + 1, policy.config.segment_len))
    inference = policy.stepper.inference
    with th.inference_mode():
        state = policy.initial_state(1)
        store = inference.store(state.key_values, state.layer_inputs, state.key_valid)
        tokens = th.randn(1, 3, policy.config.d_model)
        for r in range(repeats + 1):  # the first repeat warms up and is dropped
            inference.begin_segment(store, state.memory, state.cache)
            for phase in range(k):
                started = time.perf_counter()
                inference.step(store, tokens, phase)
                times[r, phase] = time.perf_counter() - started
    return {"ms_per_step": ms(np.median(times[1:], axis=0).mean())}


# -------------------------------------------------------------------------------------------- (b) flatness
def advance_to(policy: RATEPolicy, points: tuple[int, ...], seed: int) -> dict[int, RATEState]:
    """States of one real episode after ``p`` predict calls, for each p in ``points``."""
    rng, snapshots, state = np.random.default_rng(seed), {}, None
    for t in range(max(points)):
        _, state = policy.predict(observation_batch(rng, 1), state, np.array([t == 0]), deterministic=True)
        if t + 1 in points:
            snapshots[t + 1] = state.repeat(1)
    return snapshots


def flatness(policy: RATEPolicy, snapshots: dict[int, RATEState], n_envs: int, window: int, seed: int) -> dict:
    """Per-step predict time from each point on, the points taking turns in blocks of ``BLOCK`` calls."""
    rng = np.random.default_rng(seed)
    states = {point: state.repeat(n_envs) for point, state in snapshots.items()}
    times = {point: np.zeros(window) for point in states}
    starts = np.zeros(n_envs, bool)
    for block in range(0, window, BLOCK):
        for point in states:
            for i in range(block, min(block + BLOCK, window)):
                obs = observation_batch(rng, n_envs)
                times[point][i], states[point] = timed_predict(policy, obs, states[point], starts)
    medians = {point: float(np.median(value)) for point, value in times.items()}
    means = {point: float(np.mean(value)) for point, value in times.items()}
    return {
        "n_envs": n_envs,
        "window_steps": window,
        "median_ms_per_call": {str(p): ms(v) for p, v in medians.items()},
        "mean_ms_per_call": {str(p): ms(v) for p, v in means.items()},
        "max_over_min_median": round(max(medians.values()) / min(medians.values()), 3),
        "max_over_min_mean": round(max(means.values()) / min(means.values()), 3),
        "per_step_ms": {str(p): ms(v) for p, v in times.items()},
    }


# ------------------------------------------------------------------------------------------ (c) evaluate
def long_evaluation(model: RATE, n_episodes: int, target_episodes: int = 100) -> dict:
    result = evaluate(model, "TMaze-v0", {"corridor_length": EVAL_CORRIDOR}, n_episodes, 100, seed=0)
    env_steps = result["mean_length"] * n_episodes
    summary = {
        "episodes_run": n_episodes,
        "n_envs": min(100, n_episodes),
        "T": EVAL_CORRIDOR + 2,
        "mean_length": result["mean_length"],
        "seconds": result["seconds"],
        "env_steps_per_second": round(env_steps / result["seconds"], 1),
    }
    if n_episodes < target_episodes:
        summary[f"extrapolated_seconds_for_{target_episodes}_episodes"] = round(
            result["seconds"] * target_episodes / n_episodes, 1
        )
        summary["extrapolation"] = (
            f"linear: {target_episodes // n_episodes} runs like this one (n_envs={n_episodes}); "
            "an upper bound for one run with 100 envs, which batches better"
        )
    return summary


# ------------------------------------------------------------------------------------------------- plot
def plot(result: dict, path: Path) -> None:
    import matplotlib  # only for the plot: the tests load this module without the bench extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for n_envs, part in result["incremental_vs_recompute"].items():
        for method, style in (("incremental", "-"), ("recompute", "--")):
            values = part["per_step_ms"][method]
            left.plot(range(len(values)), values, style, label=f"{method}, {n_envs} env(s)")
    k = result["architecture"]["context_len"]
    for boundary in range(k, len(values), k):
        left.axvline(boundary, color="grey", lw=0.5)
    left.set(yscale="log", xlabel="step in episode", ylabel="ms per predict call (median)")
    left.set_title(f"Incremental predict vs recomputing the window (K = {k})")
    left.legend(fontsize=8)
    for n_envs, part in result["flatness"].items():
        for point, values in part["per_step_ms"].items():
            steps = int(point) + np.arange(len(values))
            right.plot(steps, values, ".", ms=2, alpha=0.4, color=f"C{list(result['flatness']).index(n_envs)}")
        points = [int(p) for p in part["median_ms_per_call"]]
        medians = list(part["median_ms_per_call"].values())
        right.plot(points, medians, "o-", label=f"median, {n_envs} env(s)")
    right.set(xscale="log", yscale="log", xlabel="step in episode", ylabel="ms per predict call")
    right.set_title("Incremental predict: flat in episode length")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- main
def repeats_for(n_envs: int, repeats: int) -> int:
    """Fewer episodes for batches of more than 16 envs: their calls are long (recomputing 100 windows
    takes about 0.15 s) and steadier."""
    return repeats if n_envs <= 16 else max(2, repeats // 5)


def run(args: argparse.Namespace) -> dict:
    th.set_num_threads(args.threads)
    th.manual_seed(args.seed)
    result = {"benchmark": "inference_speed", "quick": args.quick, "machine": machine_info()}
    model = RATE("RATEPolicy", "TMaze-v0", seed=args.seed, **INFERENCE_ARCHITECTURE)
    policy = model.policy
    k = policy.config.segment_len
    repeats = {n_envs: repeats_for(n_envs, args.repeats) for n_envs in args.batches}
    settings = dict(batches_a=args.batches, repeats=repeats, steps_per_episode_a=3 * k)
    settings.update(flatness_points=FLATNESS_POINTS, flatness_window=args.window, flatness_block=BLOCK)
    settings.update(eval_episodes=args.episodes, threads=args.threads)
    result.update(architecture=INFERENCE_ARCHITECTURE, settings=settings, check=check_same_logits(policy))
    print(f"check: {result['check']}", flush=True)
    result["incremental_vs_recompute"] = {}
    for n_envs in args.batches:
        part = incremental_vs_recompute(policy, n_envs, 3 * k, repeats[n_envs], args.seed)
        result["incremental_vs_recompute"][str(n_envs)] = part
        print(f"(a) {n_envs} env(s): {part['second_segment']}", flush=True)
    if 1 in args.batches:
        floor = transformer_step_only(policy, repeats[1])
        recompute = result["incremental_vs_recompute"]["1"]["second_segment"]["recompute_ms_per_call"]
        floor["recompute_over_step_only"] = round(recompute / floor["ms_per_step"], 2)
        result["transformer_step_only"] = floor
        print(f"(a) 1 env, transformer step alone: {floor}", flush=True)
    snapshots = advance_to(policy, FLATNESS_POINTS, args.seed)
    result["flatness"] = {}
    for n_envs in (1, 100):
        part = flatness(policy, snapshots, n_envs, args.window, args.seed)
        result["flatness"][str(n_envs)] = part
        print(f"(b) {n_envs} env(s): {part['median_ms_per_call']}", flush=True)
    result["evaluation"] = long_evaluation(model, args.episodes)
    print(f"(c) {result['evaluation']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 10 evaluation episodes")
    parser.add_argument("--repeats", type=int, default=None, help="episodes per method in (a), up to 16 envs")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 100], help="n_envs compared in (a)")
    parser.add_argument("--window", type=int, default=200, help="timed steps at each flatness point")
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes in (c)")
    add_timing_arguments(parser)
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 15)
    args.episodes = args.episodes or (10 if args.quick else 100)
    started = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    out = args.out or RESULTS / f"inference_speed{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(result, out.with_suffix(".png"))
    write_result(result, out)


if __name__ == "__main__":
    main()
