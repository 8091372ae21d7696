"""Relative-position attention over a key/value store, the building block of the RATE transformer.

The attention rule depends on token indices in the segment sequence X alone (:func:`attention_allowed`), so the
training forward, which runs a segment's tokens at once, and incremental inference, which runs a few tokens at a
time against stored keys and values, compute the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from torch import nn
from torch.nn import functional as F

from rate_sb3.architecture import RATEConfig


class Dropout(nn.Dropout):
    """``nn.Dropout`` that hands its input back untouched in eval mode (it runs several times per inference step).

    On CPU it draws its mask as uniform numbers against ``p``: the same distribution as ``bernoulli_``, which
    ``F.dropout`` uses there at about twice the cost.
    """

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.training:
            return x
        if x.device.type != "cpu":
            return super().forward(x)
        return x * th.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


def dropout(p: float) -> nn.Module:
    """Dropout, or nothing at all when ``p`` is 0 (saves a full pass over large attention tensors)."""
    return Dropout(p) if p > 0 else nn.Identity()


def sinusoid(positions: th.Tensor, dim: int) -> th.Tensor:
    """Transformer-XL sinusoid ``[sin(p f), cos(p f)]`` of shape (len(positions), dim)."""
    inv_freq = 1.0 / (10000 ** (th.arange(0, dim, 2, device=positions.device, dtype=positions.dtype) / dim))
    angles = positions[:, None] * inv_freq[None, :]
    return th.cat([angles.sin(), angles.cos()], dim=-1)[:, :dim]


def attention_allowed(query_idx: th.Tensor, key_idx: th.Tensor, n_mem: int, n_segment_tokens: int) -> th.Tensor:
    """Which keys each query may attend, from token indices in X alone (cache keys have negative indices).

    Read tokens see read tokens; segment tokens see the cache and X up to themselves (so the read tokens
    and earlier segment tokens); write tokens see all of X but not the cache.
    """
    q, k = query_idx[..., :, None], key_idx
    write_start = n_mem + n_segment_tokens
    in_x = (k >= 0) & (k < write_start + n_mem)
    is_read_q, is_write_q = q < n_mem, q >= write_start
    read_rule = is_read_q & (k >= 0) & (k < n_mem)
    segment_rule = ~is_read_q & ~is_write_q & (k <= q)
    write_rule = is_write_q & in_x
    return read_rule | segment_rule | write_rule


@dataclass
class AttentionPattern:
    """Which keys queries may not attend, and where each query-key distance sits in the relative-key table.

    Its queries form one block over all keys and the whole table (see :class:`QueryBlock`).
    """

    blocked: th.Tensor  # (..., q, S) bool
    distance_index: th.Tensor  # (..., q, S) row of the pair's distance in the relative keys

    table_start = 0

    @classmethod
    def of(cls, query_idx: th.Tensor, key_idx: th.Tensor, allowed: th.Tensor, lowest: int, highest: int):
        """The pattern for a table of relative keys over distances [lowest, highest] (ascending)."""
        distance = query_idx[..., :, None] - key_idx
        return cls(~allowed, (distance - lowest).clamp(0, highest - lowest))

    @property
    def blocks(self) -> tuple[AttentionPattern]:
        return (self,)

    @property
    def n_queries(self) -> int:
        return self.blocked.shape[-2]

    @property
    def n_keys(self) -> int:
        return self.blocked.shape[-1]

    def score_bias(self, table_scores: th.Tensor) -> th.Tensor:
        """Position scores (H B, q, S) of the query-key pairs, ``-inf`` where blocked, picked from the scores of
        each query against every distance of the table (H, B q, P)."""
        table_scores = table_scores.view(len(table_scores), -1, self.n_queries, table_scores.shape[-1])
        index = self.distance_index.expand(*table_scores.shape[:-1], -1)
        return table_scores.gather(-1, index).masked_fill_(self.blocked, float("-inf")).flatten(0, 1)


@dataclass
class QueryBlock:
    """Consecutive queries X[rows] of a segment, which attend none of its keys [cache c | X] after the first
    ``n_keys``, over a table of relative keys in descending distance order.

    The block's table starts at its largest distance, from its last query to the oldest key: then query i of q
    finds its keys' distances at entries q - 1 - i, q - i, ... of the table, a run that starts one entry earlier
    in each next row. So its position scores are a skewed view of the table scores (no gather, and no scatter
    in the backward); pairs past a row's run read the next row, and are blocked. The table must reach down to
    the smallest distance of an allowed pair, and to 0 at least.
    """

    rows: slice
    n_keys: int
    table_start: int  # the entry of the segment's table where the block's table starts
    mask: th.Tensor  # (H B, q, n_keys): 0 where allowed, -inf where blocked

    @property
    def n_queries(self) -> int:
        return self.mask.shape[1]

    def score_bias(self, table_scores: th.Tensor) -> th.Tensor:
        """Position scores (H B, q, n_keys) of the query-key pairs, ``-inf`` where blocked, from the scores of
        each query against every distance of the block's table (H, B q, P), contiguous."""
        q, n_distances = self.mask.shape[1], table_scores.shape[-1]
        strides = (q * n_distances, n_distances - 1, 1)
        skewed = table_scores.as_strided(self.mask.shape, strides, table_scores.storage_offset() + q - 1)
        return skewed + self.mask


@dataclass
class SegmentPattern:
    """All queries of a segment over its keys [cache c | X], in blocks of about :attr:`block_size` queries.

    A segment token sees no key after itself (read tokens see the read tokens, write tokens all of X): a block
    needs only the keys up to the last one that any of its queries sees, and the table only up to the distance
    from its last query to the oldest key. For the T-Maze segment (180 tokens, 3 blocks), the score products,
    the softmax and the position table cover about two thirds of the pairs that one block would.
    """

    blocks: list[QueryBlock]

    block_size = 64

    @classmethod
    def of(cls, allowed: th.Tensor, n_heads: int, dtype: th.dtype = th.float32) -> SegmentPattern:
        """The blocks of the allowed pairs (B, q, S), for a table of distances from q - 1 + c down."""
        q, n_keys = allowed.shape[-2:]
        mask = th.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))
        n_blocks = max(1, round(q / cls.block_size))
        bounds = [q * k // n_blocks for k in range(n_blocks + 1)]
        seen = allowed.any(0).flip(-1).cummax(-1).values.flip(-1)  # (q, S): the row sees this key or a later one
        blocks = []
        for start, stop in zip(bounds, bounds[1:]):
            block_keys = max(1, int(seen[start:stop].any(0).sum()))
            block_mask = mask[:, start:stop, :block_keys].expand(n_heads, -1, -1, -1).flatten(0, 1)
            blocks.append(QueryBlock(slice(start, stop), block_keys, q - stop, block_mask))
        return cls(blocks)


class KeyValueStore:
    """Per-layer keys and values (2, H, B, S, dh) that queries attend to, with each key's index in X and validity.

    In training all tokens of a segment arrive at once and are appended; in inference the store is
    preallocated and tokens are written in place (:class:`rate_sb3.slot_store.SlotStore`).
    """

    def __init__(
        self,
        key_values: list[th.Tensor],
        key_idx: th.Tensor,
        key_valid: th.Tensor,
        layer_inputs: list[th.Tensor] | None = None,
    ) -> None:
        self.key_values, self.key_idx, self.key_valid = key_values, key_idx, key_valid
        self.layer_inputs = layer_inputs  # kept for the hidden-state cache

    def write(self, layer: int, key_value: th.Tensor, hidden: th.Tensor | None, slots: th.Tensor | None = None) -> None:
        """Add the keys and values (2, H, B, n, dh) and the layer inputs (B, n, d) of n new tokens (``hidden``
        may be None when the store keeps no layer inputs).

        ``slots``: None appends them; a (B n,) tensor of positions ``row * S + slot`` writes them into a
        preallocated store of S slots per row, the rows' slots laid end to end.
        """
        if slots is None:
            self.key_values[layer] = th.cat([self.key_values[layer], key_value], dim=3)
            if self.layer_inputs is not None:
                self.layer_inputs[layer] = th.cat([self.layer_inputs[layer], hidden], dim=1)
            return
        key_and_value_heads, d_head = 2 * key_value.shape[1], key_value.shape[-1]
        flat = (key_and_value_heads, -1, d_head)
        self.key_values[layer].view(flat).index_copy_(1, slots, key_value.reshape(flat))
        if self.layer_inputs is not None:
            inputs = self.layer_inputs[layer]
            inputs.view(-1, inputs.shape[-1]).index_copy_(0, slots, hidden.flatten(0, 1))


class RelativeAttentionLayer(nn.Module):
    """Post-LN decoder layer with Transformer-XL relative attention and an optional feed-forward block.

    Attention tensors are head first, (H, B, ...), so that the relative-position scores of all rows and
    tokens are one matmul per head.
    """

    def __init__(self, config: RATEConfig) -> None:
        super().__init__()
        d, h, dh = config.d_model, config.n_heads, config.d_head
        self.n_heads, self.d_head, self.scale = h, dh, 1.0 / math.sqrt(dh)
        self.qkv = nn.Linear(d, 3 * h * dh, bias=False)
        self.pos_proj = nn.Linear(d, h * dh, bias=False)
        self.out_proj = nn.Linear(h * dh, d, bias=False)
        self.norm_attn = nn.LayerNorm(d)
        self.resid_drop = dropout(config.dropout)
        self.attn_drop = dropout(config.dropatt)
        self.double_residual = config.double_residual
        self.ffn = None
        if config.d_inner > 0:
            self.ffn = nn.Sequential(
                nn.Linear(d, config.d_inner),
                nn.ReLU(),
                dropout(config.dropout),
                nn.Linear(config.d_inner, d),
                dropout(config.dropout),
            )
            self.norm_ffn = nn.LayerNorm(d)

    def project(self, hidden: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Queries (H, B, n, dh) and keys and values (2, H, B, n, dh) of the tokens ``hidden`` (B, n, d)."""
        qkv = self.qkv(hidden).unflatten(-1, (3, self.n_heads, self.d_head))
        query, key_value = qkv.split([1, 2], dim=-3)  # split: its backward is a cat, an index's fills zeros
        return query.squeeze(-3).permute(2, 0, 1, 3), key_value.permute(2, 3, 0, 1, 4)

    def relative_keys(self, positions: th.Tensor) -> th.Tensor:
        """Projected relative-position embeddings of P distances, transposed for the matmul: (H, dh, P)."""
        return self.pos_proj(positions).unflatten(-1, (self.n_heads, self.d_head)).permute(1, 2, 0).contiguous()

    def forward(
        self,
        hidden: th.Tensor,
        query: th.Tensor,
        key_values: th.Tensor,
        pattern: AttentionPattern | SegmentPattern,
        rel: th.Tensor,
        biases: th.Tensor,
    ) -> th.Tensor:
        """``biases`` (2, H, 1, 1, dh): the content and position biases (Transformer-XL's u and v)."""
        keys, values = key_values.flatten(1, 2).unbind()  # (H B, S, dh)
        rel = rel * self.scale
        heads, batch = query.shape[:2]
        attended = []
        # split, not sliced: the backward of a slice fills a zero tensor the size of the whole
        queries = query.split([block.n_queries for block in pattern.blocks], dim=2)
        for block, block_query in zip(pattern.blocks, queries):
            out = self.attend(block_query, keys, values, rel, biases, block)  # (H B, q, dh)
            attended.append(out.view(heads, batch, -1, self.d_head).permute(1, 2, 0, 3))
        attended = th.cat(attended, dim=1).flatten(-2)
        residual = hidden * 2 if self.double_residual else hidden
        hidden = self.norm_attn(residual + self.resid_drop(self.out_proj(attended)))
        return self.feed_forward(hidden)

    def attend(self, query, keys, values, rel, biases, block: AttentionPattern | QueryBlock) -> th.Tensor:
        """Attention of a block's queries (H, B, q, dh) over its keys and values (H B, S, dh)."""
        content_bias, position_bias = biases.unbind()
        position_query = (query + position_bias).flatten(1, 2)  # (H, B q, dh)
        # (H B, q, S), a fresh tensor: the content scores are added into it in place
        scores = block.score_bias(position_query @ rel[..., block.table_start :])
        content_query = (query + content_bias).flatten(0, 1)
        keys, values = _leading(keys, block.n_keys), _leading(values, block.n_keys)
        if scores.dtype == content_query.dtype == keys.dtype:
            scores.baddbmm_(content_query, keys.transpose(-1, -2), alpha=self.scale)
        else:  # under autocast (mixed_precision): dtypes differ, and autocast casts only out-of-place calls
            scores = th.baddbmm(scores, content_query, keys.transpose(-1, -2), alpha=self.scale)
        weights = self.attn_drop(F.softmax(scores, dim=-1))
        return weights @ values

    def feed_forward(self, hidden: th.Tensor) -> th.Tensor:
        """The feed-forward block with its residual and LayerNorm; the input unchanged without one."""
        return hidden if self.ffn is None else self.norm_ffn(hidden + self.ffn(hidden))


def _leading(x: th.Tensor, n: int) -> th.Tensor:
    """``x[:, :n]``, or ``x`` itself when that is all of it (the backward of a slice fills a zero tensor the size
    of ``x``)."""
    return x if n == x.shape[1] else x[:, :n]
