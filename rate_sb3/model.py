"""The RATE memory transformer (pure torch).

A trajectory is cut into segments of K env steps. Segment n is the token sequence

    X = [M_n (m read tokens) | R_0 o_0 a_0 ... R_{K-1} o_{K-1} a_{K-1} | M_n (m write tokens)]

processed by post-LN relative-position (Transformer-XL style) layers. Read tokens see only each other;
segment tokens are causal and also see the read tokens and an optional detached hidden-state cache
(``mem_len``); write tokens see all of X. The write outputs go through the Memory Retention Valve
(cross-attention, old memory as query) to give M_{n+1}.

The training forward runs all 2m + 3K tokens of a segment at once through :meth:`RATETransformer.run_tokens`.
Incremental inference (:mod:`rate_sb3.inference`) runs the read tokens, then a few tokens per env step against
cached keys and values, then the write tokens, through a lean eval-mode equivalent of it. The attention rule is
a function of token indices alone, so both paths compute the same numbers (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch as th
from torch import nn
from torch.nn import functional as F

from rate_sb3.architecture import ACTIVATIONS, RATEConfig
from rate_sb3.attention import (
    AttentionPattern,
    KeyValueStore,
    RelativeAttentionLayer,
    SegmentPattern,
    attention_allowed,
    dropout,
    sinusoid,
)
from rate_sb3.derived import DerivedWeights


class MemoryRetentionValve(nn.Module):
    """Cross-attention with the old memory as query and the activated write outputs as keys and values.

    ``attn`` (``nn.MultiheadAttention``) holds the weights, under its state-dict keys; the forward computes the
    same attention itself, because ``nn.MultiheadAttention.forward`` spends more time in Python checks than
    in the attention of m memory tokens (it runs at every segment boundary of ``predict``).
    """

    def __init__(self, config: RATEConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[config.mrv_act]()
        self.attn = nn.MultiheadAttention(config.d_model, config.n_heads_mrv, dropout=config.dropatt, batch_first=True)

    def forward(self, memory: th.Tensor, written: th.Tensor) -> th.Tensor:
        attn, (batch, m, d) = self.attn, memory.shape
        heads, weight, bias = attn.num_heads, attn.in_proj_weight, attn.in_proj_bias
        # products of 2-D inputs: F.linear on (B, m, d) goes through matmul's reshapes, at twice the cost
        query = F.linear(memory.reshape(-1, d), weight[:d], bias[:d]).view(batch, m, heads, -1).transpose(1, 2)
        key_value = F.linear(self.act(written).reshape(-1, d), weight[d:], bias[d:])
        keys, values = key_value.view(batch, -1, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        dropout = attn.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(query, keys, values, dropout_p=dropout)
        out = attn.out_proj
        return F.linear(attended.transpose(1, 2).reshape(-1, d), out.weight, out.bias).view(batch, m, d)


@dataclass
class SegmentOutput:
    hidden: th.Tensor  # (B, 3K, d) outputs at the segment tokens
    memory: th.Tensor | None  # (B, m, d) memory for the next segment
    cache: th.Tensor | None  # (B, n_layers, c, d) detached layer inputs for the next segment
    cache_valid: th.Tensor | None  # (B, c)


class RATETransformer(nn.Module):
    """The memory transformer over pre-embedded (return, observation, action) tokens."""

    def __init__(self, config: RATEConfig) -> None:
        super().__init__()
        self.config = config
        d, m = config.d_model, config.n_mem_tokens
        self.layers = nn.ModuleList(RelativeAttentionLayer(config) for _ in range(config.n_layers))
        self.content_bias = nn.Parameter(nn.init.xavier_uniform_(th.empty(config.n_heads, config.d_head)))
        self.position_bias = nn.Parameter(nn.init.xavier_uniform_(th.empty(config.n_heads, config.d_head)))
        init = th.randn(1, d).expand(m, d).clone() if config.shared_mem_init else th.randn(m, d)
        self.initial_memory = nn.Parameter(init)
        self.mrv = MemoryRetentionValve(config) if m and config.n_heads_mrv else None
        self.input_drop = dropout(config.dropout)
        self.position_drop = dropout(config.dropout)
        self.output_drop = dropout(config.dropout)
        self._relative_keys = DerivedWeights(
            [(layer.pos_proj, "weight") for layer in self.layers],
            self._project_distance_range,
        )

    def forward(
        self,
        tokens: th.Tensor,
        token_valid: th.Tensor,
        memory: th.Tensor | None = None,
        cache: th.Tensor | None = None,
        cache_valid: th.Tensor | None = None,
    ) -> SegmentOutput:
        """Run consecutive segments of tokens (B, N * 3K, d), carrying memory and cache between them.

        ``token_valid`` (B, N * 3K) marks real tokens; padding is kept out of memory, cache and attention.
        Returns the outputs of all segments and the memory and cache after the last one.
        """
        n_seg_tokens = 3 * self.config.segment_len
        if tokens.shape[1] % n_seg_tokens:
            raise ValueError(f"token count {tokens.shape[1]} is not a multiple of 3 * segment_len")
        if memory is None:
            memory = self.init_memory(tokens.shape[0])
        outputs = []
        for start in range(0, tokens.shape[1], n_seg_tokens):
            end = start + n_seg_tokens
            out = self.forward_segment(tokens[:, start:end], token_valid[:, start:end], memory, cache, cache_valid)
            outputs.append(out.hidden)
            memory, cache, cache_valid = self._skip_padding_segments(
                token_valid[:, start:end], out, memory, cache, cache_valid
            )
            if memory is not None and self.config.memory_grad == "detach":
                memory = memory.detach()
        return SegmentOutput(th.cat(outputs, dim=1), memory, cache, cache_valid)

    def _skip_padding_segments(self, token_valid: th.Tensor, out: SegmentOutput, memory, cache, cache_valid):
        """Memory and cache after a segment, left as they were in the rows where the segment is all padding
        (the left padding of a shorter burn-in, or the steps past an episode's end)."""
        padding = ~token_valid.any(dim=1)
        if not padding.any():
            return out.memory, out.cache, out.cache_valid
        next_memory = None if out.memory is None else th.where(padding[:, None, None], memory, out.memory)
        if out.cache is None:
            return next_memory, None, None
        cache, cache_valid = self._cache_or_empty(len(padding), cache, cache_valid, out.cache)
        grown = out.cache.shape[2] - cache.shape[2]  # the old cache is left-padded with invalid slots to the new size
        cache = F.pad(cache, (0, 0, grown, 0))
        cache_valid = F.pad(cache_valid, (grown, 0), value=False)
        next_cache = th.where(padding[:, None, None, None], cache, out.cache)
        return next_memory, next_cache, th.where(padding[:, None], cache_valid, out.cache_valid)

    def window_outputs(
        self, step_tokens: Callable[[slice], th.Tensor], valid: th.Tensor, burn_in_segments: int = 0
    ) -> th.Tensor:
        """Outputs at the observation tokens (B, W', d) of segment-aligned windows (B, W).

        ``step_tokens(steps)`` gives the (return, observation, action) tokens (B, n, 3, d) of the window's steps
        ``steps`` (a slice). The first ``burn_in_segments`` segments are encoded and run without gradient: they
        only build memory and cache, and W' excludes them.
        """
        k = self.config.segment_len
        split = burn_in_segments * k
        memory = cache = cache_valid = None
        with th.no_grad():  # a segment at a time: only one segment's frames are encoded at once
            for start in range(0, split, k):
                steps = slice(start, start + k)
                tokens = step_tokens(steps).flatten(1, 2)
                burn = self(tokens, valid[:, steps].repeat_interleave(3, dim=1), memory, cache, cache_valid)
                memory, cache, cache_valid = burn.memory, burn.cache, burn.cache_valid
        tokens = step_tokens(slice(split, None))
        out = self(tokens.flatten(1, 2), valid[:, split:].repeat_interleave(3, dim=1), memory, cache, cache_valid)
        return out.hidden.unflatten(1, (-1, 3))[:, :, 1]

    def forward_segment(
        self,
        tokens: th.Tensor,
        token_valid: th.Tensor,
        memory: th.Tensor | None,
        cache: th.Tensor | None = None,
        cache_valid: th.Tensor | None = None,
    ) -> SegmentOutput:
        """One segment: all 2m + 3K tokens at once."""
        m, batch = self.config.n_mem_tokens, tokens.shape[0]
        cache, cache_valid = self._cache_or_empty(batch, cache, cache_valid, tokens)
        store = self._store_from_cache(cache, cache_valid)
        mem_valid = token_valid.new_ones(batch, m)
        key_valid = token_valid
        if not m:
            # without memory tokens, an all-padding segment with an empty cache has no key to attend to: its tokens
            # see each other instead of nothing (NaN); their outputs, cache and memory are dropped
            key_valid = token_valid | ~(token_valid.any(1, keepdim=True) | cache_valid.any(1, keepdim=True))
        store.key_idx = th.cat([store.key_idx, th.arange(self.config.n_tokens, device=tokens.device)])
        store.key_valid = th.cat([store.key_valid, mem_valid, key_valid, mem_valid], dim=1)
        parts = [memory, tokens, memory] if m else [tokens]
        hidden = self.input_drop(th.cat(parts, dim=1))
        query_idx = th.arange(self.config.n_tokens, device=tokens.device)
        highest = self.config.n_tokens - 1 + cache.shape[2]  # the last write token's distance to the oldest cache key
        distances = th.arange(highest, -m - 1, -1, device=tokens.device, dtype=tokens.dtype)
        pattern = SegmentPattern.of(self._allowed(query_idx, store), self.config.n_heads, tokens.dtype)
        hidden = self.run_tokens(hidden, store, pattern, self._project_positions(distances))
        next_memory = self.next_memory(memory, hidden[:, m + tokens.shape[1] :]) if m else None
        x_valid = store.key_valid[:, cache.shape[2] :]
        next_cache, next_valid = self.next_cache(cache, cache_valid, store.layer_inputs, x_valid)
        return SegmentOutput(hidden[:, m : m + tokens.shape[1]], next_memory, next_cache, next_valid)

    def init_memory(self, batch_size: int) -> th.Tensor:
        return self.initial_memory[None].expand(batch_size, -1, -1)

    def run_tokens(
        self,
        hidden: th.Tensor,
        store: KeyValueStore,
        pattern: AttentionPattern | SegmentPattern,
        relative_keys: list[th.Tensor],
        slots: th.Tensor | None = None,
    ) -> th.Tensor:
        """Run tokens (B, n, d) through the layers, writing their keys and values to the store (appended, or at
        ``slots``, see :meth:`KeyValueStore.write`).

        The pattern may cover only the store's first slots: the queries cannot see the ones after them.
        """
        biases = th.stack([self.content_bias, self.position_bias])[:, :, None, None]
        for layer_id, layer in enumerate(self.layers):
            query, key_value = layer.project(hidden)
            store.write(layer_id, key_value, hidden, slots)
            hidden = layer(hidden, query, store.key_values[layer_id], pattern, relative_keys[layer_id], biases)
        return self.output_drop(hidden)

    def attention(
        self, query_idx: th.Tensor, store: KeyValueStore, like: th.Tensor
    ) -> tuple[AttentionPattern, list[th.Tensor]]:
        """The pattern of queries at X indices (n,) or (B, n) over the store's keys, and the relative keys
        it indexes."""
        lowest, highest = self.distance_range
        pattern = AttentionPattern.of(query_idx, store.key_idx, self._allowed(query_idx, store), lowest, highest)
        return pattern, self.relative_keys(like)

    def _allowed(self, query_idx: th.Tensor, store: KeyValueStore) -> th.Tensor:
        """Which of the store's keys (B, n, S) queries at X indices (n,) or (B, n) may attend."""
        cfg = self.config
        allowed = attention_allowed(query_idx, store.key_idx, cfg.n_mem_tokens, 3 * cfg.segment_len)
        return allowed & store.key_valid[:, None, :]

    @property
    def distance_range(self) -> tuple[int, int]:
        """Every allowed query-key pair has a distance in this range (cache keys are up to mem_len back)."""
        return -self.config.n_mem_tokens, self.config.n_tokens + self.config.mem_len

    def relative_keys(self, like: th.Tensor) -> list[th.Tensor]:
        """Per-layer relative-position keys over :attr:`distance_range`.

        Inference calls reuse them while the position projections hold the same values.
        """
        if self.training or th.is_grad_enabled():
            return self._project_distance_range(like)
        return self._relative_keys(like)

    def _project_distance_range(self, like: th.Tensor) -> list[th.Tensor]:
        lowest, highest = self.distance_range
        return self._project_positions(th.arange(lowest, highest + 1, device=like.device, dtype=like.dtype))

    def _project_positions(self, distances: th.Tensor) -> list[th.Tensor]:
        """Per-layer relative keys (H, dh, P) of the P ``distances`` (float), in their order."""
        positions = self.position_drop(sinusoid(distances, self.config.d_model))
        return [layer.relative_keys(positions) for layer in self.layers]

    def next_memory(self, memory: th.Tensor, written: th.Tensor) -> th.Tensor:
        return self.mrv(memory, written) if self.mrv is not None else written

    def next_cache(self, cache, cache_valid, layer_inputs: list[th.Tensor] | None, x_valid: th.Tensor):
        """The cache after a segment whose X tokens had per-layer inputs (B, n_tokens, d)."""
        mem_len = self.config.mem_len
        if not mem_len:
            return None, None
        next_cache = th.cat([cache, th.stack(layer_inputs, dim=1).detach()], dim=2)[:, :, -mem_len:]
        next_valid = th.cat([cache_valid, x_valid], dim=1)[:, -mem_len:]
        return next_cache, next_valid

    def _cache_or_empty(self, batch: int, cache, cache_valid, like: th.Tensor):
        if cache is None:
            cfg = self.config
            cache = like.new_zeros(batch, cfg.n_layers, 0, cfg.d_model)
            cache_valid = th.zeros(batch, 0, dtype=th.bool, device=like.device)
        return cache, cache_valid

    def _store_from_cache(self, cache: th.Tensor, cache_valid: th.Tensor) -> KeyValueStore:
        key_values = [layer.project(cache[:, layer_id])[1] for layer_id, layer in enumerate(self.layers)]
        key_idx = th.arange(-cache.shape[2], 0, device=cache.device)
        layer_inputs = [cache.new_zeros(cache.shape[0], 0, cache.shape[3]) for _ in self.layers]
        return KeyValueStore(key_values, key_idx, cache_valid.clone(), layer_inputs if self.config.mem_len else None)
