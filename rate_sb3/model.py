"""The RATE memory transformer (pure torch).

A trajectory is cut into segments of K env steps. Segment n is the token sequence

    X = [M_n (m read tokens) | R_0 o_0 a_0 ... R_{K-1} o_{K-1} a_{K-1} | M_n (m write tokens)]

processed by post-LN relative-position (Transformer-XL style) layers. Read tokens see only each other;
segment tokens are causal and also see the read tokens and an optional detached hidden-state cache
(``mem_len``); write tokens see all of X. The write outputs go through the Memory Retention Valve
(cross-attention, old memory as query) to give M_{n+1}.

Every token, in training or inference, goes through :meth:`RATETransformer._run_tokens`: the training
forward runs all 2m + 3K tokens of a segment at once, and incremental inference runs the read tokens,
then a few tokens per env step against cached keys and values, then the write tokens. The attention
rule is a function of token indices alone, so both paths compute the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from torch import nn
from torch.nn import functional as F

MODES = ("rate", "rmt", "trxl", "dt")
MEMORY_GRADS = ("bptt", "detach")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "elu": nn.ELU, "no_act": nn.Identity}


@dataclass
class RATEConfig:
    """Architecture of the memory transformer.

    :param d_model: token width d
    :param n_layers: number of transformer layers
    :param n_heads: attention heads per layer
    :param d_head: width of one head (default ``d_model // n_heads``)
    :param d_inner: hidden width of the feed-forward block; 0 skips it (RATE's ``skip_dec_ffn``)
    :param dropout: dropout on inputs, positions, residual branches and outputs
    :param dropatt: dropout on attention weights (layers and MRV)
    :param segment_len: K, env steps per segment
    :param n_mem_tokens: m, memory tokens (read and write copies each)
    :param mem_len: length of the detached hidden-state cache in tokens (0: none)
    :param n_heads_mrv: heads of the Memory Retention Valve; 0 passes the write outputs on unchanged
    :param mrv_act: activation applied to the write outputs before the MRV
    :param mode: ``rate`` (memory + MRV), ``rmt`` (memory, no MRV, no cache), ``trxl`` (cache only) or
        ``dt`` (one segment, no memory, no cache)
    :param memory_grad: ``bptt`` lets a later segment's loss train the memory writes and the MRV;
        ``detach`` cuts memory at every segment boundary as the reference code does
    :param double_residual: reproduce the reference's ``LN(2x + attn)`` instead of ``LN(x + attn)``
    :param shared_mem_init: reproduce the reference's identical initial memory tokens
    """

    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    d_head: int | None = None
    d_inner: int = 0
    dropout: float = 0.1
    dropatt: float = 0.0
    segment_len: int = 50
    n_mem_tokens: int = 8
    mem_len: int = 0
    n_heads_mrv: int = 2
    mrv_act: str = "relu"
    mode: str = "rate"
    memory_grad: str = "bptt"
    double_residual: bool = False
    shared_mem_init: bool = False

    def __post_init__(self) -> None:
        _check(self.mode in MODES, f"mode={self.mode!r} is not one of {MODES}")
        _check(self.memory_grad in MEMORY_GRADS, f"memory_grad={self.memory_grad!r} is not one of {MEMORY_GRADS}")
        _check(self.mrv_act in ACTIVATIONS, f"mrv_act={self.mrv_act!r} is not one of {tuple(ACTIVATIONS)}")
        for name in ("d_model", "n_layers", "n_heads", "segment_len"):
            _check(int(getattr(self, name)) >= 1, f"{name}={getattr(self, name)} must be >= 1")
        for name in ("n_mem_tokens", "mem_len", "n_heads_mrv", "d_inner"):
            _check(int(getattr(self, name)) >= 0, f"{name}={getattr(self, name)} must be >= 0")
        for name in ("dropout", "dropatt"):
            _check(0.0 <= getattr(self, name) < 1.0, f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.d_head is None:
            _check(self.d_model % self.n_heads == 0, "d_model must be divisible by n_heads (or set d_head)")
            self.d_head = self.d_model // self.n_heads
        if self.mode == "rmt":
            self.n_heads_mrv, self.mem_len = 0, 0
        elif self.mode == "trxl":
            self.n_mem_tokens, self.n_heads_mrv = 0, 0
            _check(self.mem_len > 0, "mode='trxl' needs mem_len > 0 (the cache is its only memory)")
        elif self.mode == "dt":
            self.n_mem_tokens, self.n_heads_mrv, self.mem_len = 0, 0, 0
        else:
            _check(self.n_mem_tokens > 0, "mode='rate' needs n_mem_tokens >= 1")
        if self.n_heads_mrv:
            _check(
                self.d_model % self.n_heads_mrv == 0,
                f"d_model={self.d_model} must be divisible by n_heads_mrv={self.n_heads_mrv}",
            )

    @property
    def n_tokens(self) -> int:
        """Length of X: read tokens, 3K segment tokens, write tokens."""
        return 2 * self.n_mem_tokens + 3 * self.segment_len


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"RATEConfig: {message}")


def dropout(p: float) -> nn.Module:
    """Dropout, or nothing at all when ``p`` is 0 (saves a full pass over large attention tensors)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


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
    q, k = query_idx[:, :, None], key_idx[None, None, :]
    write_start = n_mem + n_segment_tokens
    in_x = (k >= 0) & (k < write_start + n_mem)
    is_read_q, is_write_q = q < n_mem, q >= write_start
    read_rule = is_read_q & (k >= 0) & (k < n_mem)
    segment_rule = ~is_read_q & ~is_write_q & (k <= q)
    write_rule = is_write_q & in_x
    return read_rule | segment_rule | write_rule


class KeyValueStore:
    """Per-layer keys and values that queries attend to, with each key's index in X and validity.

    In training all tokens of a segment arrive at once and are appended; in inference the store is
    preallocated and tokens are written in place at per-env slots.
    """

    def __init__(
        self,
        keys: list[th.Tensor],
        values: list[th.Tensor],
        key_idx: th.Tensor,
        key_valid: th.Tensor,
        layer_inputs: list[th.Tensor] | None = None,
    ) -> None:
        self.keys, self.values = keys, values
        self.key_idx, self.key_valid = key_idx, key_valid
        self.layer_inputs = layer_inputs

    def write(self, layer: int, key: th.Tensor, value: th.Tensor, hidden: th.Tensor, slots: th.Tensor | None):
        """Add the keys, values (B, H, n, dh) and layer inputs (B, n, d) of n new tokens."""
        if slots is None:
            self.keys[layer] = th.cat([self.keys[layer], key], dim=2)
            self.values[layer] = th.cat([self.values[layer], value], dim=2)
            if self.layer_inputs is not None:
                self.layer_inputs[layer] = th.cat([self.layer_inputs[layer], hidden], dim=1)
            return
        head_index = slots[:, None, :, None].expand_as(key)
        self.keys[layer].scatter_(2, head_index, key)
        self.values[layer].scatter_(2, head_index, value)
        if self.layer_inputs is not None:
            x_slots = slots - self.n_cache_slots
            self.layer_inputs[layer].scatter_(1, x_slots[:, :, None].expand_as(hidden), hidden)

    @property
    def n_cache_slots(self) -> int:
        return int((self.key_idx < 0).sum())


class RelativeAttentionLayer(nn.Module):
    """Post-LN decoder layer with Transformer-XL relative attention and an optional feed-forward block."""

    def __init__(self, config: RATEConfig) -> None:
        super().__init__()
        d, h, dh = config.d_model, config.n_heads, config.d_head
        self.n_heads, self.d_head = h, dh
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
                nn.Dropout(config.dropout),
                nn.Linear(config.d_inner, d),
                nn.Dropout(config.dropout),
            )
            self.norm_ffn = nn.LayerNorm(d)

    def split_heads(self, x: th.Tensor) -> th.Tensor:
        return x.view(*x.shape[:-1], self.n_heads, self.d_head).transpose(-2, -3)

    def project(self, hidden: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Queries, keys and values (B, H, n, dh) of the tokens ``hidden`` (B, n, d)."""
        query, key, value = self.qkv(hidden).chunk(3, dim=-1)
        return self.split_heads(query), self.split_heads(key), self.split_heads(value)

    def relative_keys(self, positions: th.Tensor) -> th.Tensor:
        """Projected relative-position embeddings (H, P, dh)."""
        return self.split_heads(self.pos_proj(positions))

    def forward(
        self,
        hidden: th.Tensor,
        query: th.Tensor,
        store: KeyValueStore,
        layer: int,
        allowed: th.Tensor,
        distance_index: th.Tensor,
        rel: th.Tensor,
        content_bias: th.Tensor,
        position_bias: th.Tensor,
    ) -> th.Tensor:
        keys, values = store.keys[layer], store.values[layer]
        scale = 1.0 / math.sqrt(self.d_head)
        content = ((query + content_bias[:, None, :]) * scale) @ keys.transpose(-1, -2)
        position_all = ((query + position_bias[:, None, :]) * scale) @ rel.transpose(-1, -2)  # (B, H, q, P)
        index = distance_index.unsqueeze(1).expand(query.shape[0], self.n_heads, *distance_index.shape[-2:])
        scores = content.add_(position_all.gather(-1, index))
        scores.masked_fill_(~allowed.unsqueeze(1), float("-inf"))
        weights = self.attn_drop(F.softmax(scores, dim=-1))
        attended = (weights @ values).transpose(-2, -3).flatten(-2)
        residual = hidden * 2 if self.double_residual else hidden
        hidden = self.norm_attn(residual + self.resid_drop(self.out_proj(attended)))
        if self.ffn is not None:
            hidden = self.norm_ffn(hidden + self.ffn(hidden))
        return hidden


class MemoryRetentionValve(nn.Module):
    """Cross-attention with the old memory as query and the activated write outputs as keys and values."""

    def __init__(self, config: RATEConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[config.mrv_act]()
        self.attn = nn.MultiheadAttention(config.d_model, config.n_heads_mrv, dropout=config.dropatt, batch_first=True)

    def forward(self, memory: th.Tensor, written: th.Tensor) -> th.Tensor:
        candidates = self.act(written)
        return self.attn(memory, candidates, candidates, need_weights=False)[0]


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
        self._position_cache: tuple | None = None

    # ----------------------------------------------------------------- training
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
            memory, cache, cache_valid = out.memory, out.cache, out.cache_valid
            if memory is not None and self.config.memory_grad == "detach":
                memory = memory.detach()
        return SegmentOutput(th.cat(outputs, dim=1), memory, cache, cache_valid)

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
        store.key_idx = th.cat([store.key_idx, th.arange(self.config.n_tokens, device=tokens.device)])
        store.key_valid = th.cat([store.key_valid, mem_valid, token_valid, mem_valid], dim=1)
        parts = [memory, tokens, memory] if m else [tokens]
        hidden = self.input_drop(th.cat(parts, dim=1))
        query_idx = th.arange(self.config.n_tokens, device=tokens.device)[None]
        hidden = self._run_tokens(hidden, query_idx, store, slots=None)
        next_memory = self._next_memory(memory, hidden[:, m + tokens.shape[1] :]) if m else None
        next_cache, next_valid = self._next_cache(cache, cache_valid, store, store.key_valid[:, cache.shape[2] :])
        return SegmentOutput(hidden[:, m : m + tokens.shape[1]], next_memory, next_cache, next_valid)

    def init_memory(self, batch_size: int) -> th.Tensor:
        return self.initial_memory[None].expand(batch_size, -1, -1)

    # ---------------------------------------------------------------- inference
    def empty_store(self, batch: int, like: th.Tensor) -> KeyValueStore:
        """A preallocated inference store: cache slots, X slots, and one scratch slot (index n_tokens)."""
        cfg = self.config
        n_slots = cfg.mem_len + cfg.n_tokens + 1
        shape = (batch, cfg.n_layers, cfg.n_heads, n_slots, cfg.d_head)
        keys, values = like.new_zeros(shape), like.new_zeros(shape)
        key_idx = th.arange(-cfg.mem_len, cfg.n_tokens + 1, device=like.device)
        key_valid = th.ones(batch, n_slots, dtype=th.bool, device=like.device)
        layer_inputs = None
        if cfg.mem_len:
            layer_inputs = list(like.new_zeros(batch, cfg.n_layers, cfg.n_tokens + 1, cfg.d_model).unbind(1))
        return KeyValueStore(list(keys.unbind(1)), list(values.unbind(1)), key_idx, key_valid, layer_inputs)

    def begin_segment(self, store: KeyValueStore, memory: th.Tensor | None, cache, cache_valid) -> None:
        """Fill a fresh inference store with the cache's keys and values and run the read tokens."""
        cfg = self.config
        if cfg.mem_len:
            store.key_valid[:, : cfg.mem_len] = cache_valid
            for layer_id, layer in enumerate(self.layers):
                _, key, value = layer.project(cache[:, layer_id])
                store.keys[layer_id][:, :, : cfg.mem_len] = key
                store.values[layer_id][:, :, : cfg.mem_len] = value
        if cfg.n_mem_tokens:
            read_idx = th.arange(cfg.n_mem_tokens, device=memory.device)[None].expand(memory.shape[0], -1)
            self._run_tokens(self.input_drop(memory), read_idx, store, slots=read_idx + cfg.mem_len)

    def step(self, store: KeyValueStore, tokens: th.Tensor, token_idx: th.Tensor) -> th.Tensor:
        """Run new segment tokens (B, n, d) at X indices (B, n) against the store; returns their outputs."""
        return self._run_tokens(self.input_drop(tokens), token_idx, store, slots=token_idx + self.config.mem_len)

    def end_segment(self, store: KeyValueStore, memory: th.Tensor | None, cache, cache_valid):
        """Run the write tokens over the completed segment; returns the next (memory, cache, cache_valid)."""
        cfg = self.config
        next_memory = None
        if cfg.n_mem_tokens:
            start = cfg.n_mem_tokens + 3 * cfg.segment_len
            write_idx = th.arange(start, cfg.n_tokens, device=memory.device)[None].expand(memory.shape[0], -1)
            written = self._run_tokens(self.input_drop(memory), write_idx, store, slots=write_idx + cfg.mem_len)
            next_memory = self._next_memory(memory, written)
        x_valid = store.key_valid[:, cfg.mem_len : cfg.mem_len + cfg.n_tokens]
        next_cache, next_valid = self._next_cache(cache, cache_valid, store, x_valid)
        return next_memory, next_cache, next_valid

    # ------------------------------------------------------------------ shared
    def _run_tokens(
        self, hidden: th.Tensor, query_idx: th.Tensor, store: KeyValueStore, slots: th.Tensor | None
    ) -> th.Tensor:
        cfg = self.config
        allowed = attention_allowed(query_idx, store.key_idx, cfg.n_mem_tokens, 3 * cfg.segment_len)
        allowed = allowed & store.key_valid[:, None, :]
        distance = query_idx[..., :, None] - store.key_idx
        used = distance.masked_select(allowed)  # masked pairs need no position: this halves the table
        relative_keys, lowest = self._relative_keys(int(used.min()), int(used.max()), hidden)
        distance_index = (distance - lowest).clamp(0, relative_keys[0].shape[1] - 1)
        for layer_id, layer in enumerate(self.layers):
            query, key, value = layer.project(hidden)
            store.write(layer_id, key, value, hidden, slots)
            hidden = layer(
                hidden,
                query,
                store,
                layer_id,
                allowed,
                distance_index,
                relative_keys[layer_id],
                self.content_bias,
                self.position_bias,
            )
        return self.output_drop(hidden)

    def _relative_keys(self, lowest: int, highest: int, like: th.Tensor) -> tuple[list[th.Tensor], int]:
        """Per-layer relative-position keys for distances in [lowest, highest].

        Inference calls reuse them over the whole fixed distance range until a weight changes
        (an optimizer step or a load bumps the tensors' version counters).
        """
        if self.training or th.is_grad_enabled():
            return self._project_positions(lowest, highest, like), lowest
        # every allowed pair has a distance in [-(m - 1), n_tokens + mem_len]
        lowest, highest = -self.config.n_mem_tokens, self.config.n_tokens + self.config.mem_len
        versions = tuple(layer.pos_proj.weight._version for layer in self.layers)
        key = (like.dtype, like.device, versions, tuple(id(layer.pos_proj.weight) for layer in self.layers))
        if self._position_cache is None or self._position_cache[0] != key:
            self._position_cache = (key, self._project_positions(lowest, highest, like))
        return self._position_cache[1], lowest

    def _project_positions(self, lowest: int, highest: int, like: th.Tensor) -> list[th.Tensor]:
        distances = th.arange(lowest, highest + 1, device=like.device, dtype=like.dtype)
        positions = self.position_drop(sinusoid(distances, self.config.d_model))
        return [layer.relative_keys(positions) for layer in self.layers]

    def _next_memory(self, memory: th.Tensor, written: th.Tensor) -> th.Tensor:
        return self.mrv(memory, written) if self.mrv is not None else written

    def _cache_or_empty(self, batch: int, cache, cache_valid, like: th.Tensor):
        if cache is None:
            cfg = self.config
            cache = like.new_zeros(batch, cfg.n_layers, 0, cfg.d_model)
            cache_valid = th.zeros(batch, 0, dtype=th.bool, device=like.device)
        return cache, cache_valid

    def _store_from_cache(self, cache: th.Tensor, cache_valid: th.Tensor) -> KeyValueStore:
        keys, values = [], []
        for layer_id, layer in enumerate(self.layers):
            _, key, value = layer.project(cache[:, layer_id])
            keys.append(key)
            values.append(value)
        key_idx = th.arange(-cache.shape[2], 0, device=cache.device)
        layer_inputs = [cache.new_zeros(cache.shape[0], 0, cache.shape[3]) for _ in self.layers]
        return KeyValueStore(keys, values, key_idx, cache_valid.clone(), layer_inputs if self.config.mem_len else None)

    def _next_cache(self, cache, cache_valid, store: KeyValueStore, x_valid: th.Tensor):
        mem_len = self.config.mem_len
        if not mem_len:
            return None, None
        if cache is None:
            cache, cache_valid = self._cache_or_empty(x_valid.shape[0], None, None, store.keys[0])
        inputs = th.stack(store.layer_inputs, dim=1)[:, :, : self.config.n_tokens].detach()
        next_cache = th.cat([cache, inputs], dim=2)[:, :, -mem_len:]
        next_valid = th.cat([cache_valid, x_valid], dim=1)[:, -mem_len:]
        return next_cache, next_valid
