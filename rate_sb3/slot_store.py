"""Preallocated stores of keys and values for incremental inference, in the slot layout that
:mod:`rate_sb3.inference` describes: the attention patterns of its slots, the store with its views, and the
workspaces that the kernel's products write into."""

from __future__ import annotations

from dataclasses import dataclass

import torch as th

from rate_sb3.attention import KeyValueStore


@dataclass
class SlotPatterns:
    """Where each query of a call finds its keys' relative-position scores: a (1 or B, queries, S) index into
    the distances of :attr:`rate_sb3.model.RATETransformer.distance_range`, or the ``-inf`` column after them
    (blocked keys, and slots not written yet)."""

    key_idx: th.Tensor  # (S,) X index of each slot's token (cache: negative; scratch: n_tokens, never attended)
    read: th.Tensor  # (1, m, S)
    step: th.Tensor  # (K, 3, S) by phase
    step_by_phase: list[th.Tensor]  # views of each phase's (1, 3, S)
    read_and_first_step: th.Tensor  # (1, m + 3, S): the read tokens and phase 0's step in one call
    end: th.Tensor  # (1, 1 + m, S)
    x_slots: th.Tensor  # (n_tokens,) slot of each token of X


class SlotStore(KeyValueStore):
    """An inference store over preallocated buffers (shaped as
    :meth:`rate_sb3.inference.IncrementalInference.empty_buffers` makes them), with views of their keys and values
    for the attention and the patterns of its slots.

    Layer inputs are kept when their buffer has slots (a hidden-state cache). ``steps`` (first slot, K): the
    slots of the segment's K steps, 3 each, whose views are made up front (None: every view when first used).
    """

    def __init__(
        self,
        key_values: th.Tensor,
        layer_inputs: th.Tensor,
        key_valid: th.Tensor,
        patterns: SlotPatterns,
        steps: tuple[int, int] | None,
    ) -> None:
        layers = key_values.unbind()
        kept_inputs = list(layer_inputs.unbind()) if layer_inputs.shape[-2] else None
        super().__init__(list(layers), patterns.key_idx, key_valid, kept_inputs)
        self.buffers = (key_values, layer_inputs, key_valid)  # the store is handed out again for these
        self.patterns = patterns
        n_slots, d_head = key_values.shape[-2:]
        by_head_and_row = [layer.view(2, -1, n_slots, d_head).unbind() for layer in layers]  # views: writes show
        self.keys_t = [keys.transpose(1, 2) for keys, _ in by_head_and_row]  # (H B, dh, S) per layer
        self.values = [values for _, values in by_head_and_row]  # (H B, S, dh) per layer
        self._prefixes: dict[int, tuple[list[th.Tensor], list[th.Tensor]]] = {}  # by number of slots: up_to's
        # per slot range (first slot, n): each layer's keys and values there, and its layer inputs when kept
        self._key_value_views = self._step_views(self.key_values, 3, *steps) if steps else {}
        self._input_views = self._step_views(self.layer_inputs, 1, *steps) if steps and self.layer_inputs else {}
        self.workspaces: dict[tuple[int, int], Workspace] = {}  # by rows and tokens per row

    def write(self, layer: int, key_value: th.Tensor, hidden: th.Tensor | None, slots: int | th.Tensor) -> None:
        """As :meth:`KeyValueStore.write`, with ``slots`` an int as well: every row's n tokens go to the slots
        from there on, through views kept for each slot range (indexing with slices costs more than the copy)."""
        if not isinstance(slots, int):
            super().write(layer, key_value, hidden, slots)
            return
        where = (slots, key_value.shape[3])
        views = self._key_value_views.get(where) or self._add_views(*where)
        views[layer].copy_(key_value)
        if self.layer_inputs is not None:
            self._input_views[where][layer].copy_(hidden)

    def up_to(self, n_slots: int) -> tuple[list[th.Tensor], list[th.Tensor]]:
        """Each layer's transposed keys (H B, dh, n) and values (H B, n, dh) of the first ``n_slots`` slots."""
        views = self._prefixes.get(n_slots)
        if views is None:
            views = self._prefixes[n_slots] = (
                [keys[..., :n_slots] for keys in self.keys_t],
                [values[:, :n_slots] for values in self.values],
            )
        return views

    @staticmethod
    def _step_views(buffers: list[th.Tensor], slot_dim: int, first: int, n_steps: int) -> dict:
        """The views of every step's 3 slots in each buffer, made with one call per buffer (slicing each costs
        more: a fresh state's store makes them all)."""
        by_buffer = [
            buffer.narrow(slot_dim, first, 3 * n_steps).unflatten(slot_dim, (n_steps, 3)).unbind(slot_dim)
            for buffer in buffers
        ]
        return dict(zip([(first + 3 * step, 3) for step in range(n_steps)], zip(*by_buffer)))

    def _add_views(self, start: int, n: int) -> tuple[th.Tensor, ...]:
        """Make and keep the views of slots ``start`` to ``start + n``; returns each layer's keys and values ones."""
        slots = slice(start, start + n)
        views = self._key_value_views[start, n] = tuple(layer[:, :, :, slots] for layer in self.key_values)
        if self.layer_inputs is not None:
            self._input_views[start, n] = tuple(layer[:, slots] for layer in self.layer_inputs)
        return views


@dataclass
class Workspace:
    """Preallocated outputs of :meth:`rate_sb3.inference.IncrementalInference._attend` for B rows of q tokens,
    which its layers share, and their views (each costs a PyTorch call, so they are made once).

    One env's queries, keys and values come from one row-major product viewed head first, and the heads' outputs
    are written side by side through a view. Several envs' come from a head-first product, so that each env's
    queries lie together for its content scores, and their outputs are copied side by side. The scores of
    calls that see n slots fill the front of one buffer, whatever n is, so that calls at every phase of a segment
    reuse the same memory.
    """

    projected: th.Tensor  # one env: (q, 3 H dh); several: (3 H, B q, dh)
    query: th.Tensor  # (H, B q, dh) view of ``projected``
    query_by_env: th.Tensor  # (H B, q, dh) the same queries, each env's together
    key_value: th.Tensor  # (2, H, B, q, dh) view of ``projected``
    positions: th.Tensor  # (H, B q, P + 1) relative-position scores
    by_head: th.Tensor  # (H B, q, dh) each head's outputs (one env: a view of ``attended``)
    attended: th.Tensor  # (B q, H dh) the heads' outputs side by side
    side_by_side: tuple[th.Tensor, th.Tensor] | None  # several envs: views of ``attended`` and ``by_head`` to copy
    score_memory: th.Tensor  # (H B q S) flat
    score_views: dict[int, tuple[th.Tensor, th.Tensor]]  # by number of slots seen: :meth:`scores`'s

    @classmethod
    def like(cls, tokens: th.Tensor, heads: int, d_head: int, n_slots: int, n_positions: int) -> Workspace:
        batch, q = tokens.shape[:2]
        rows = batch * q
        if batch == 1:
            projected = tokens.new_empty(q, 3 * heads, d_head)
            head_first, attended = projected.transpose(0, 1), tokens.new_empty(q, heads, d_head)
            by_head, side_by_side, projected = attended.transpose(0, 1), None, projected.view(q, -1)
        else:
            projected = head_first = tokens.new_empty(3 * heads, rows, d_head)
            by_head, attended = tokens.new_empty(heads * batch, q, d_head), tokens.new_empty(rows, heads, d_head)
            side_by_side = attended.transpose(0, 1), by_head.view(heads, rows, d_head)
        query = head_first[:heads]
        return cls(
            projected=projected,
            query=query,
            query_by_env=query.view(heads * batch, q, d_head),
            key_value=head_first[heads:].view(2, heads, batch, q, d_head),
            positions=tokens.new_empty(heads, rows, n_positions),
            by_head=by_head,
            attended=attended.view(rows, -1),
            side_by_side=side_by_side,
            score_memory=tokens.new_empty(heads * rows * n_slots),
            score_views={},
        )

    def scores(self, n_keys: int) -> tuple[th.Tensor, th.Tensor]:
        """The scores of queries that see ``n_keys`` slots, (H, B q, n), and the same viewed (H B, q, n)."""
        views = self.score_views.get(n_keys)
        if views is None:
            heads_and_envs, q = self.query_by_env.shape[:2]
            heads, rows = self.query.shape[:2]
            scores = self.score_memory[: heads * rows * n_keys].view(heads, rows, n_keys)
            views = self.score_views[n_keys] = scores, scores.view(heads_and_envs, q, n_keys)
        return views
