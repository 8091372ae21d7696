"""Envs stepped through the memory transformer one env step at a time, each at its own phase of its segment.

:class:`RATEState` is what ``predict`` hands back; :class:`SegmentStepper` owns its model part: at each step it
decides which envs end a segment (the segment's last action and the write tokens give the next memory and cache)
and which begin one (the cache's keys and values and the read tokens), and runs the step's tokens, all through
:class:`rate_sb3.inference.IncrementalInference`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th
from torch import nn

from rate_sb3.derived import DerivedWeights
from rate_sb3.inference import IncrementalInference
from rate_sb3.slot_store import SlotStore


class RATEState(NamedTuple):
    """Per-env inference state, passed back to ``predict`` like an LSTM state and updated in place.

    The model's part is tensors on the policy's device (keys and values layer and head first, see
    :meth:`rate_sb3.inference.IncrementalInference.empty_buffers`), made under ``torch.inference_mode``:
    change them only through ``predict``, or on a copy. The counters and the last action stay on the host, so
    that ``predict`` finds segment boundaries without waiting for the device and builds the next step's tokens
    there.
    """

    memory: th.Tensor  # (n, m, d) memory of the current segment
    key_values: th.Tensor  # (layers, 2, heads, n, slots, d_head) keys and values of the cache and segment so far
    layer_inputs: th.Tensor  # (layers, n, slots, d) layer inputs, kept only when mem_len > 0
    cache: th.Tensor  # (n, layers, mem_len, d) hidden-state cache
    key_valid: th.Tensor  # (n, slots) bool, False at empty cache slots
    last_action: np.ndarray  # (n, action_dim) the model action returned at the previous step
    step: np.ndarray  # (n,) env steps taken in the current episode
    return_to_go: np.ndarray  # (n,) scaled return-to-go of the current step

    def repeat(self, repeats: int) -> RATEState:
        """A copy with every env repeated ``repeats`` times (for instance one env's state for a batch)."""
        env_dims = {"key_values": 3, "layer_inputs": 1}
        return RATEState(
            *(
                np.repeat(value, repeats, axis=0)
                if isinstance(value, np.ndarray)
                else value.repeat_interleave(repeats, dim=env_dims.get(name, 0))
                for name, value in self._asdict().items()
            )
        )


class SegmentStepper:
    """Steps the model part of :class:`RATEState` (step counters, memory, cache, keys and values).

    The last action and the return-to-go, from which the caller makes each step's tokens, are the caller's.

    :param inference: incremental inference of the transformer
    """

    def __init__(self, inference: IncrementalInference) -> None:
        self.inference, self.config = inference, inference.config
        # The read tokens of an episode's first segment see only each other (no cache yet), so their keys and
        # values depend on the weights alone: envs that restart apart from the others copy them.
        self._fresh_read = DerivedWeights(_fresh_read_sources(inference.transformer), self._run_fresh_read)

    def initial_state(self, n_envs: int, action_dim: int) -> RATEState:
        """A state of ``n_envs`` envs, each to be restarted before its first step."""
        cfg, like = self.config, self.inference.transformer.initial_memory
        key_values, layer_inputs, key_valid = self.inference.empty_buffers(n_envs, like)
        return RATEState(
            memory=like.new_zeros(n_envs, cfg.n_mem_tokens, cfg.d_model),
            key_values=key_values,
            layer_inputs=layer_inputs,
            cache=like.new_zeros(n_envs, cfg.n_layers, cfg.mem_len, cfg.d_model),
            key_valid=key_valid,
            last_action=np.zeros((n_envs, action_dim), np.float32),
            step=np.zeros(n_envs, np.int64),
            return_to_go=np.zeros(n_envs, np.float32),
        )

    def restart(self, state: RATEState, starts: np.ndarray) -> None:
        """Begin an episode in the envs where ``starts`` (n,) is True: step 0, initial memory, empty cache."""
        restarting = th.as_tensor(starts, device=state.memory.device)
        state.step[starts] = 0
        state.memory[restarting] = self.inference.transformer.initial_memory.to(state.memory.dtype)
        if self.config.mem_len:
            state.key_valid[restarting, : self.config.mem_len] = False

    def advance(self, state: RATEState, tokens: th.Tensor) -> th.Tensor:
        """Run each env's step tokens [a_{s-1}, R_s, o_s] (n, 3, d) at its phase s, after ending and beginning
        segments where s = 0; returns their outputs at the observations (n, d) and counts the step."""
        # With one env a step costs calls, not arithmetic: the bookkeeping makes few array calls (one env's phase
        # is a Python int).
        step, k = state.step, self.config.segment_len  # a name for the in-place update
        one_env = len(step) == 1
        phase, read_memory = int(step[0]) % k if one_env else step % k, None
        if (phase == 0) if one_env else not phase.all():
            segment_starts = step % k == 0
            # a step's first token embeds the previous action: at phase 0, the last action of the segment
            self._end_segments(state, np.flatnonzero(segment_starts & (step > 0)), tokens[:, :1])
            read_with_step = bool(segment_starts.all() and self.config.n_mem_tokens)  # one call fewer
            self._begin_segments(state, np.flatnonzero(segment_starts), read=not read_with_step)
            read_memory = state.memory if read_with_step else None
        store = self.inference.store(state.key_values, state.layer_inputs, state.key_valid)
        hidden = self.inference.step(store, tokens, phase, read_memory)[:, 2]
        step += 1
        return hidden

    def _end_segments(self, state: RATEState, envs: np.ndarray, action_tokens: th.Tensor) -> None:
        """Run the segment's last action (its token among every env's ``action_tokens`` (n, 1, d)) and the write
        tokens; keep the next memory and cache."""
        if not len(envs):
            return
        rows = _rows(envs, state)
        store = self._store(state, rows)
        last_action = action_tokens[rows]
        memory, cache, cache_valid = self.inference.end_segment(
            store, last_action, state.memory[rows], state.cache[rows]
        )
        if memory is not None:
            state.memory[rows] = memory
        if cache is not None:
            state.cache[rows] = cache
            state.key_valid[rows, : self.config.mem_len] = cache_valid

    def _begin_segments(self, state: RATEState, envs: np.ndarray, read: bool) -> None:
        if read and not self.config.mem_len and len(envs) < len(state.step):
            fresh = state.step[envs] == 0
            self._begin_first_segments(state, envs[fresh])
            envs = envs[~fresh]
        if not len(envs):
            return
        rows = _rows(envs, state)
        store = self._store(state, rows)
        self.inference.begin_segment(store, state.memory[rows], state.cache[rows], read)
        if isinstance(rows, th.Tensor):  # the store wrote to copies of these rows
            key_values, layer_inputs, _ = store.buffers
            state.key_values[:, :, :, rows], state.layer_inputs[:, rows] = key_values, layer_inputs

    def _begin_first_segments(self, state: RATEState, envs: np.ndarray) -> None:
        """Begin the first segment of these envs' episodes: their read tokens' keys and values are copied."""
        if len(envs):
            read_slots = slice(0, self.config.n_mem_tokens)
            state.key_values[:, :, :, _rows(envs, state), read_slots] = self._fresh_read(state.memory)

    def _run_fresh_read(self, like: th.Tensor) -> th.Tensor:
        """The keys and values (n_layers, 2, heads, 1, m, d_head) of a fresh episode's read tokens."""
        store = self.inference.empty_store(1, like)
        memory = self.inference.transformer.initial_memory.to(like.dtype)[None]
        self.inference.begin_segment(store, memory, None)
        return store.buffers[0][..., : self.config.n_mem_tokens, :].clone()

    def _store(self, state: RATEState, rows: slice | th.Tensor) -> SlotStore:
        """The inference store of some envs (copies of their rows, unless ``rows`` is all of them)."""
        if isinstance(rows, slice):  # the state's own buffers, whose store the inference keeps between calls
            return self.inference.store(state.key_values, state.layer_inputs, state.key_valid)
        copies = state.key_values[:, :, :, rows], state.layer_inputs[:, rows], state.key_valid[rows]
        return self.inference.store(*copies, keep=False)


def _fresh_read_sources(transformer: nn.Module) -> list[tuple[nn.Module, str]]:
    """The parameters that a fresh episode's read keys and values depend on: the transformer's own (initial
    memory, attention biases), those of every layer but the last (whose outputs are the next layer's inputs) and
    the last layer's projection to keys and values (its outputs are never read)."""
    *inner_layers, last_layer = transformer.layers
    modules = [transformer, *(module for layer in inner_layers for module in layer.modules()), last_layer.qkv]
    return [(module, name) for module in modules for name, value in module._parameters.items() if value is not None]


def _rows(envs: np.ndarray, state: RATEState) -> slice | th.Tensor:
    """Index of ``envs`` in the state's tensors: a slice when it is all of them (views, not copies)."""
    return slice(None) if len(envs) == len(state.step) else th.as_tensor(envs, device=state.memory.device)
