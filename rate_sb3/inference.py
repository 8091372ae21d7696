"""Incremental inference: a segment's tokens run a few at a time against stored keys and values.

An inference store has a slot for each cache token, each token of X, and a scratch slot after the read
tokens, so that every group of tokens that runs together fills consecutive slots:

    [cache (mem_len) | read (m) | scratch | R_0 o_0 a_0 ... R_{K-1} o_{K-1} a_{K-1} | write (m)]

A segment runs as :meth:`IncrementalInference.begin_segment` (the read tokens), one
:meth:`~IncrementalInference.step` per env step ([a_{s-1}, R_s, o_s] at phase s; at s = 0 a dummy action
goes to the scratch slot, which no query attends) and :meth:`~IncrementalInference.end_segment` (a_{K-1}
and the write tokens); when every env begins a segment together, the read tokens run in the first step's call
instead (the slots of both are consecutive). Each of these calls has an attention pattern that depends on the
phase alone, so the patterns are computed once. Slots after the newest token hold stale keys, which the
patterns block.

With one env a step costs the number of PyTorch calls, not arithmetic, so these calls do not go through
:meth:`RATETransformer.run_tokens` but through a lean equivalent (:meth:`IncrementalInference._attend`): the
content bias is folded into the query projection and the attention scale into the score products, a blocked
query-key pair reads a ``-inf`` column of the relative-position scores, the queries, keys and values come from
one matrix product viewed head first and the heads leave through another, so that a layer is a dozen
arithmetic calls and a few views. The store of a state's buffers (:class:`SlotStore`) is kept between calls
with its attention views and the views that each step's keys and values are copied into; with one env the
queries attend all slots through them, at no cost in calls. The products write into outputs that the store
keeps for each number of rows and tokens per call (:class:`Workspace`), through views made once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import is_

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

from rate_sb3.attention import AttentionPattern, attention_allowed
from rate_sb3.derived import DerivedWeights
from rate_sb3.model import RATETransformer
from rate_sb3.slot_store import SlotPatterns, SlotStore, Workspace

_STEP_TOKENS = np.arange(3)  # a step's tokens fill consecutive slots


@dataclass
class _FoldedLayer:
    """One layer's weights for :meth:`IncrementalInference._attend`."""

    qkv_weight: th.Tensor  # (d, 3 H dh): query, key and value weights head by head (a view of the parameter)
    qkv_bias: th.Tensor  # (3 H dh,): the content bias on the queries, zeros on keys and values
    qkv_weight_by_head: th.Tensor  # (3 H, d, dh) view of the same weights
    qkv_bias_by_head: th.Tensor  # (3 H, 1, dh) view of the same bias
    relative_keys: th.Tensor  # (H, dh, P + 1): a zero column after the P distances
    position_offsets: th.Tensor  # (H, 1, P + 1): scaled (position bias - content bias) . keys; -inf last
    scale: float  # the attention scale, applied by the score products
    out_weight: th.Tensor  # (H dh, d) the output projection (a view of the parameter)
    norm: tuple[th.Tensor, th.Tensor, float]  # the attention LayerNorm's weight, bias and eps
    feed_forward: Callable[[th.Tensor], th.Tensor] | None  # the layer's feed-forward block, if it has one


class IncrementalInference:
    """Runs a :class:`RATETransformer` a few tokens at a time on preallocated stores."""

    def __init__(self, transformer: RATETransformer) -> None:
        self.transformer, self.config, k = transformer, transformer.config, transformer.config.segment_len
        self.n_slots = self.config.mem_len + self.config.n_tokens + 1
        self.scratch_slot = self.config.mem_len + self.config.n_mem_tokens  # also phase 0's first step slot
        lowest, highest = transformer.distance_range
        self._blocked_position = highest - lowest + 1  # the -inf column after the relative-position scores
        # per phase: the step's first slot, and the slots up to its observation (the last its tokens see)
        self._step_slots = [(self.scratch_slot + 3 * phase, self._step_keys(phase)) for phase in range(k)]
        self._patterns: SlotPatterns | None = None
        self._last_store: SlotStore | None = None
        computed, viewed = self._fold_sources()
        self._folded_layers = DerivedWeights(computed, self._fold_layers, viewed)

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

    def empty_store(self, batch: int, like: th.Tensor, cache_valid: th.Tensor | None = None) -> SlotStore:
        """A store over new buffers; ``cache_valid`` (B, mem_len) marks the cache slots that will be filled."""
        key_values, layer_inputs, key_valid = self.empty_buffers(batch, like)
        if cache_valid is not None:
            key_valid[:, : self.config.mem_len] = cache_valid
        return self.store(key_values, layer_inputs, key_valid, keep=False)

    def store(
        self, key_values: th.Tensor, layer_inputs: th.Tensor, key_valid: th.Tensor, keep: bool = True
    ) -> SlotStore:
        """A store that writes into the given buffers (shaped as :meth:`empty_buffers` makes them).

        The store of the latest buffers kept (holding them) is handed out again for the same buffers; it has
        the views of every step's slots. ``keep=False``: a store for a few calls (copies of some envs' rows),
        neither kept nor given those views.
        """
        if not keep:
            return SlotStore(key_values, layer_inputs, key_valid, self._patterns_on(key_values.device), None)
        last = self._last_store
        if last is None or not all(map(is_, (key_values, layer_inputs, key_valid), last.buffers)):
            patterns, steps = self._patterns_on(key_values.device), (self.scratch_slot, self.config.segment_len)
            last = SlotStore(key_values, layer_inputs, key_valid, patterns, steps)
            self._last_store = last
        return last

    def begin_segment(
        self, store: SlotStore, memory: th.Tensor | None, cache: th.Tensor | None, read: bool = True
    ) -> None:
        """Put the cache's (B, n_layers, mem_len, d) keys and values in the store and run the read tokens
        (with ``read=False`` they run with the segment's first :meth:`step` instead, one call fewer)."""
        cfg = self.config
        if cfg.mem_len:
            for layer_id, layer in enumerate(self.transformer.layers):
                store.key_values[layer_id][..., : cfg.mem_len, :] = layer.project(cache[:, layer_id])[1]
        if cfg.n_mem_tokens and read:
            self._attend(store, memory, store.patterns.read, cfg.mem_len, self.scratch_slot)

    def step(
        self, store: SlotStore, tokens: th.Tensor, phase: int | np.ndarray, memory: th.Tensor | None = None
    ) -> th.Tensor:
        """Run one env step's tokens [a_{s-1}, R_s, o_s] (B, 3, d) at phase s; returns their outputs.

        ``phase`` is an int for every row, or a host array with one per row. ``memory`` (B, m, d): every row
        is at phase 0 and the segment's read tokens run in this call (see :meth:`begin_segment`).
        """
        patterns = store.patterns
        if memory is not None:
            tokens = th.cat([memory, tokens], dim=1)
            slots, n_keys = self.config.mem_len, self._step_keys(0)
            return self._attend(store, tokens, patterns.read_and_first_step, slots, n_keys)[:, -3:]
        if not isinstance(phase, int) and (len(phase) == 1 or (phase == phase[0]).all()):
            phase = int(phase[0])
        if isinstance(phase, int):
            index, (slots, n_keys) = patterns.step_by_phase[phase], self._step_slots[phase]
        else:
            row_phase = th.as_tensor(phase, device=tokens.device)
            first_slots = np.arange(len(phase)) * self.n_slots + self.scratch_slot + 3 * phase
            slots = th.as_tensor((first_slots[:, None] + _STEP_TOKENS).ravel(), device=tokens.device)
            index, n_keys = patterns.step[row_phase], self._step_keys(int(phase.max()))
        return self._attend(store, tokens, index, slots, n_keys)

    def end_segment(
        self, store: SlotStore, last_action: th.Tensor, memory: th.Tensor | None, cache: th.Tensor | None
    ) -> tuple[th.Tensor | None, th.Tensor | None, th.Tensor | None]:
        """Run the segment's last action token (B, 1, d) and the write tokens; the next memory and cache."""
        cfg, m = self.config, self.config.n_mem_tokens
        tokens = th.cat([last_action, memory], dim=1) if m else last_action
        patterns = store.patterns
        hidden = self._attend(store, tokens, patterns.end, self.scratch_slot + 3 * cfg.segment_len, self.n_slots)
        next_memory = self.transformer.next_memory(memory, hidden[:, 1:]) if m else None
        next_cache = next_valid = None
        if cfg.mem_len:
            layer_inputs = [inputs[:, patterns.x_slots] for inputs in store.layer_inputs]
            x_valid = store.key_valid.new_ones(len(tokens), cfg.n_tokens)
            cache_valid = store.key_valid[:, : cfg.mem_len]
            next_cache, next_valid = self.transformer.next_cache(cache, cache_valid, layer_inputs, x_valid)
        return next_memory, next_cache, next_valid

    def _attend(self, store: SlotStore, tokens: th.Tensor, index: th.Tensor, slots, n_keys: int) -> th.Tensor:
        """:meth:`RATETransformer.run_tokens` in eval mode for tokens (B, q, d) at ``slots``, in few calls.

        ``index`` (1 or B, q, S) picks each pair's relative-position score, ``-inf`` where it is blocked; the
        queries see none of the slots from ``n_keys`` on.
        """
        if self.transformer.training:
            raise RuntimeError("incremental inference runs in eval mode: call .eval() on the model first")
        cfg, (batch, q, _) = self.config, tokens.shape
        heads, d_model, rows = cfg.n_heads, cfg.d_model, batch * q
        # One env attends every slot (the calls cost, not the arithmetic) through the store's views; several
        # envs attend the slots up to the newest key, and each of their rows gets its pattern.
        one_env = batch == 1
        if one_env:
            n, keys_t, values = self.n_slots, store.keys_t, store.values
            index = index.expand(heads, q, n)
        else:
            n, (keys_t, values) = n_keys, store.up_to(n_keys)
            index = index[..., :n].expand(batch, q, n).reshape(rows, n).expand(heads, rows, n)
        work = store.workspaces.get((batch, q)) or self._add_workspace(store, tokens)
        scores, scores_by_env = work.scores(n)
        cache_blocked = ~store.key_valid[None, :, None, :n] if cfg.mem_len else None
        residual_scale = 2.0 if cfg.double_residual else 1.0
        keep_inputs = store.layer_inputs is not None
        hidden = tokens.reshape(rows, d_model)
        for layer_id, layer in enumerate(self._folded_layers(tokens)):
            if one_env:
                th.addmm(layer.qkv_bias, hidden, layer.qkv_weight, out=work.projected)
            else:
                by_head = hidden.expand(3 * heads, rows, d_model)
                th.baddbmm(layer.qkv_bias_by_head, by_head, layer.qkv_weight_by_head, out=work.projected)
            th.baddbmm(layer.position_offsets, work.query, layer.relative_keys, alpha=layer.scale, out=work.positions)
            th.gather(work.positions, -1, index, out=scores)
            store.write(layer_id, work.key_value, hidden.view(batch, q, d_model) if keep_inputs else None, slots)
            if cache_blocked is not None:  # empty cache slots
                scores.view(heads, batch, q, n).masked_fill_(cache_blocked, float("-inf"))
            scores_by_env.baddbmm_(work.query_by_env, keys_t[layer_id], alpha=layer.scale)
            th.bmm(scores_by_env.softmax(-1), values[layer_id], out=work.by_head)
            if work.side_by_side is not None:
                work.side_by_side[0].copy_(work.side_by_side[1])
            hidden = th.addmm(hidden, work.attended, layer.out_weight, beta=residual_scale)
            hidden = th.layer_norm(hidden, (d_model,), *layer.norm)
            if layer.feed_forward is not None:
                hidden = layer.feed_forward(hidden)
        return hidden.view(batch, q, d_model)

    def _add_workspace(self, store: SlotStore, tokens: th.Tensor) -> Workspace:
        cfg = self.config
        work = Workspace.like(tokens, cfg.n_heads, cfg.d_head, self.n_slots, self._blocked_position + 1)
        store.workspaces[tokens.shape[0], tokens.shape[1]] = work
        return work

    def _fold_sources(self) -> tuple[list[tuple[nn.Module, str]], list[tuple[nn.Module, str]]]:
        """The parameters that :meth:`_fold_layers` computes from, and those it only views."""
        transformer = self.transformer
        computed, viewed = [(transformer, "content_bias"), (transformer, "position_bias")], []
        for layer in transformer.layers:
            computed.append((layer.pos_proj, "weight"))
            viewed += [(layer.qkv, "weight"), (layer.out_proj, "weight")]
            viewed += [(layer.norm_attn, "weight"), (layer.norm_attn, "bias")]
        return computed, viewed

    def _fold_layers(self, like: th.Tensor) -> list[_FoldedLayer]:
        # The big weights are viewed, not copied (a copy would need its values compared at every call, see
        # DerivedWeights), and the attention scale goes to the score products instead of the query weights.
        transformer, heads, d_head = self.transformer, self.config.n_heads, self.config.d_head
        scale = d_head**-0.5
        offset_bias = (transformer.position_bias - transformer.content_bias) * scale
        folded = []
        for layer, relative_keys in zip(transformer.layers, transformer.relative_keys(like)):
            weight = layer.qkv.weight.detach().t()
            bias = th.cat([transformer.content_bias.flatten(), weight.new_zeros(2 * heads * d_head)])
            keys = F.pad(relative_keys, (0, 1))
            offsets = th.einsum("hd,hdp->hp", offset_bias, keys)[:, None].clone()
            offsets[..., -1] = float("-inf")
            norm = (layer.norm_attn.weight.detach(), layer.norm_attn.bias.detach(), layer.norm_attn.eps)
            out_weight = layer.out_proj.weight.detach().t()
            feed_forward = layer.feed_forward if layer.ffn is not None else None
            by_head = weight.view(-1, 3 * heads, d_head).transpose(0, 1), bias.view(3 * heads, 1, d_head)
            folded.append(_FoldedLayer(weight, bias, *by_head, keys, offsets, scale, out_weight, norm, feed_forward))
        return folded

    def _slots(self, x_idx: th.Tensor) -> th.Tensor:
        """The slots of tokens at X indices ``x_idx``."""
        return x_idx + self.config.mem_len + (x_idx >= self.config.n_mem_tokens).long()

    def _step_keys(self, phase: int) -> int:
        """The slots up to the observation of a step at ``phase``, the last its tokens can see."""
        return self.scratch_slot + 3 * phase + 3

    def _patterns_on(self, device: th.device) -> SlotPatterns:
        if self._patterns is None or self._patterns.key_idx.device != device:
            self._patterns = self._build_patterns(device)
        return self._patterns

    def _build_patterns(self, device: th.device) -> SlotPatterns:
        cfg, m, k = self.config, self.config.n_mem_tokens, self.config.segment_len
        x_idx = th.arange(cfg.n_tokens, device=device)
        scratch = th.tensor([cfg.n_tokens], device=device)
        key_idx = th.cat([th.arange(-cfg.mem_len, 0, device=device), x_idx[:m], scratch, x_idx[m:]])
        step_idx = m + 3 * th.arange(k, device=device)[:, None] + th.arange(-1, 2, device=device)
        step_idx[0, 0] = cfg.n_tokens  # phase 0 has no previous action: its dummy goes to the scratch slot

        lowest, highest = self.transformer.distance_range

        def index(query_idx: th.Tensor) -> th.Tensor:
            allowed = attention_allowed(query_idx, key_idx, m, 3 * k)
            pattern = AttentionPattern.of(query_idx, key_idx, allowed, lowest, highest)
            return pattern.distance_index.masked_fill(pattern.blocked, self._blocked_position)

        step = index(step_idx)
        step_by_phase = [step[phase : phase + 1] for phase in range(k)]
        read = index(x_idx[:m])[None]
        read_and_first_step = th.cat([read, step_by_phase[0]], dim=1)
        end = index(x_idx[m + 3 * k - 1 :])[None]
        return SlotPatterns(key_idx, read, step, step_by_phase, read_and_first_step, end, self._slots(x_idx))
