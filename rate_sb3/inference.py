"""Incremental inference: a segment's tokens run a few at a time against stored keys and values.

An inference store has a slot for each cache token, each token of X, and a scratch slot after the read
tokens, so that every group of tokens that runs together fills consecutive slots:

    [cache (mem_len) | read (m) | scratch | R_0 o_0 a_0 ... R_{K-1} o_{K-1} a_{K-1} | write (m)]

A segment runs as :meth:`IncrementalInference.begin_segment` (the read tokens), one
:meth:`~IncrementalInference.step` per env step ([a_{s-1}, R_s, o_s] at phase s; at s = 0 a dummy action
goes to the scratch slot, which no query attends) and :meth:`~IncrementalInference.end_segment` (a_{K-1}
and the write tokens). Each of these calls has an attention pattern that depends on the phase alone, so
the patterns are computed once. Slots after the newest token hold stale keys, which the patterns block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch as th

from rate_sb3.attention import AttentionPattern, KeyValueStore, attention_allowed
from rate_sb3.model import RATETransformer


@dataclass
class _Patterns:
    key_idx: th.Tensor  # (S,) X index of each slot's token (cache: negative; scratch: n_tokens, never attended)
    read: AttentionPattern  # (m, slots up to the read tokens)
    step: AttentionPattern  # (K, 3, S) by phase
    step_by_phase: list[AttentionPattern]  # views of each phase's (3, slots up to its observation)
    end: AttentionPattern  # (1 + m, S)
    x_slots: th.Tensor  # (n_tokens,) slot of each token of X


class IncrementalInference:
    """Runs a :class:`RATETransformer` a few tokens at a time on preallocated stores."""

    def __init__(self, transformer: RATETransformer) -> None:
        self.transformer, self.config = transformer, transformer.config
        self.n_slots = self.config.mem_len + self.config.n_tokens + 1
        self.scratch_slot = self.config.mem_len + self.config.n_mem_tokens  # also phase 0's first step slot
        self._patterns: _Patterns | None = None

    def empty_buffers(self, batch: int, like: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Zeroed keys and values (n_layers, 2, H, B, slots, dh), layer inputs (n_layers, B, slots, d) (0 wide
        without a cache) and key validity (B, slots), with the cache empty.

        Layer and head first, so that each layer's keys and values are contiguous for the attention matmuls.
        """
        cfg = self.config
        key_values = like.new_zeros(cfg.n_layers, 2, cfg.n_heads, batch, self.n_slots, cfg.d_head)
        layer_inputs = like.new_zeros(cfg.n_layers, batch, self.n_slots if cfg.mem_len else 0, cfg.d_model)
        key_valid = th.ones(batch, self.n_slots, dtype=th.bool, device=like.device)
        key_valid[:, : cfg.mem_len] = False
        return key_values, layer_inputs, key_valid

    def empty_store(self, batch: int, like: th.Tensor, cache_valid: th.Tensor | None = None) -> KeyValueStore:
        """A store over new buffers; ``cache_valid`` (B, mem_len) marks the cache slots that will be filled."""
        key_values, layer_inputs, key_valid = self.empty_buffers(batch, like)
        if cache_valid is not None:
            key_valid[:, : self.config.mem_len] = cache_valid
        return self.store(key_values, layer_inputs, key_valid)

    def store(self, key_values: th.Tensor, layer_inputs: th.Tensor, key_valid: th.Tensor) -> KeyValueStore:
        """A store that writes into the given buffers (shaped as :meth:`empty_buffers` makes them)."""
        key_idx = self._patterns_on(key_values.device).key_idx
        return KeyValueStore(list(key_values), key_idx, key_valid, list(layer_inputs) if self.config.mem_len else None)

    def begin_segment(self, store: KeyValueStore, memory: th.Tensor | None, cache: th.Tensor | None) -> None:
        """Put the cache's (B, n_layers, mem_len, d) keys and values in the store and run the read tokens."""
        cfg = self.config
        if cfg.mem_len:
            for layer_id, layer in enumerate(self.transformer.layers):
                store.key_values[layer_id][..., : cfg.mem_len, :] = layer.project(cache[:, layer_id])[1]
        if cfg.n_mem_tokens:
            self._run(store, memory, self._patterns_on(memory.device).read, slots=cfg.mem_len)

    def step(self, store: KeyValueStore, tokens: th.Tensor, phase: int | np.ndarray) -> th.Tensor:
        """Run one env step's tokens [a_{s-1}, R_s, o_s] (B, 3, d) at phase s; returns their outputs.

        ``phase`` is an int for every row, or a host array with one per row.
        """
        patterns = self._patterns_on(tokens.device)
        if not isinstance(phase, int) and (phase == phase[0]).all():
            phase = int(phase[0])
        if isinstance(phase, int):
            return self._run(store, tokens, patterns.step_by_phase[phase], self.scratch_slot + 3 * phase)
        row_phase = th.as_tensor(phase, device=tokens.device)
        slots = self.scratch_slot + 3 * row_phase[:, None] + th.arange(3, device=tokens.device)
        pattern = patterns.step[row_phase][..., : self._step_keys(int(phase.max()))]
        return self._run(store, tokens, pattern, slots)

    def end_segment(
        self, store: KeyValueStore, last_action: th.Tensor, memory: th.Tensor | None, cache: th.Tensor | None
    ) -> tuple[th.Tensor | None, th.Tensor | None, th.Tensor | None]:
        """Run the segment's last action token (B, 1, d) and the write tokens; the next memory and cache."""
        cfg, m = self.config, self.config.n_mem_tokens
        tokens = th.cat([last_action, memory], dim=1) if m else last_action
        patterns = self._patterns_on(tokens.device)
        hidden = self._run(store, tokens, patterns.end, slots=self.scratch_slot + 3 * cfg.segment_len)
        next_memory = self.transformer.next_memory(memory, hidden[:, 1:]) if m else None
        next_cache = next_valid = None
        if cfg.mem_len:
            layer_inputs = [inputs[:, patterns.x_slots] for inputs in store.layer_inputs]
            x_valid = store.key_valid.new_ones(len(tokens), cfg.n_tokens)
            cache_valid = store.key_valid[:, : cfg.mem_len]
            next_cache, next_valid = self.transformer.next_cache(cache, cache_valid, layer_inputs, x_valid)
        return next_memory, next_cache, next_valid

    def run(self, store: KeyValueStore, tokens: th.Tensor, token_idx: th.Tensor) -> th.Tensor:
        """Run tokens (B, n, d) at any X indices (B, n), with their attention worked out from the indices."""
        transformer = self.transformer
        pattern, relative_keys = transformer.attention(token_idx, store, tokens)
        hidden = transformer.input_drop(tokens)
        return transformer.run_tokens(hidden, store, pattern, relative_keys, self._slots(token_idx))

    def _run(self, store: KeyValueStore, tokens: th.Tensor, pattern: AttentionPattern, slots) -> th.Tensor:
        if self.config.mem_len:  # cache slots can be empty
            blocked = pattern.blocked | ~store.key_valid[:, None, : pattern.blocked.shape[-1]]
            pattern = AttentionPattern(blocked, pattern.distance_index)
        transformer = self.transformer
        relative_keys = transformer.relative_keys(tokens)
        return transformer.run_tokens(transformer.input_drop(tokens), store, pattern, relative_keys, slots)

    def _slots(self, x_idx: th.Tensor) -> th.Tensor:
        """The slots of tokens at X indices ``x_idx``."""
        return x_idx + self.config.mem_len + (x_idx >= self.config.n_mem_tokens).long()

    def _step_keys(self, phase: int) -> int:
        """The slots up to the observation of a step at ``phase``, the last its tokens can see."""
        return self.scratch_slot + 3 * phase + 3

    def _patterns_on(self, device: th.device) -> _Patterns:
        if self._patterns is None or self._patterns.key_idx.device != device:
            self._patterns = self._build_patterns(device)
        return self._patterns

    def _build_patterns(self, device: th.device) -> _Patterns:
        cfg, m, k = self.config, self.config.n_mem_tokens, self.config.segment_len
        x_idx = th.arange(cfg.n_tokens, device=device)
        scratch = th.tensor([cfg.n_tokens], device=device)
        key_idx = th.cat([th.arange(-cfg.mem_len, 0, device=device), x_idx[:m], scratch, x_idx[m:]])
        step_idx = m + 3 * th.arange(k, device=device)[:, None] + th.arange(-1, 2, device=device)
        step_idx[0, 0] = cfg.n_tokens  # phase 0 has no previous action: its dummy goes to the scratch slot

        def pattern(query_idx: th.Tensor) -> AttentionPattern:
            allowed = attention_allowed(query_idx, key_idx, m, 3 * k)
            return AttentionPattern.of(query_idx, key_idx, allowed, *self.transformer.distance_range)

        step = pattern(step_idx)
        step_by_phase = [step[phase][..., : self._step_keys(phase)] for phase in range(k)]
        read = pattern(x_idx[:m])[..., : self.scratch_slot]
        end = pattern(x_idx[m + 3 * k - 1 :])
        return _Patterns(key_idx, read, step, step_by_phase, end, self._slots(x_idx))
