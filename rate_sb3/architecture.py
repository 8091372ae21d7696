"""The architecture of the RATE memory transformer: :class:`RATEConfig`, its fields checked on creation.

Its own module, so that the layers (:mod:`rate_sb3.attention`) and the model (:mod:`rate_sb3.model`) that read it
import it from below rather than from each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

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
