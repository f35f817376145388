"""A KV cache that grows in place: the `hf` backend's decode loop writes each step's keys and
values into spare columns instead of copying the whole cache.

transformers' `DynamicLayer.update` appends a step with ``torch.cat``, which copies every row's
keys and values each step: on a few-shot GSM8K prompt (600 tokens and growing) that copy moves
more memory than the attention that reads the cache. Here each layer keeps a buffer with room
for `GROW` more columns; a step writes its column into it and attention reads a view of the
filled part. A buffer is only ever written where this layer allocated it: a tensor handed in
(the first update, or one assigned to ``keys``/``values`` by the backend's row bookkeeping)
becomes the buffer as it is, full, and the next step moves it to a new, larger one.

When rows finish, `GrowingLayer.keep` drops them with one copy at most: in a buffer of its own
the kept rows below a dropped one move up in place; otherwise (a buffer handed in, or leading
columns trimmed) the kept part is copied once into a new buffer that has the spare columns. (An
indexing ``keys[rows, :, first:]`` handed back through the setter copied the kept part, and the
next step copied it again to get spare columns.)
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROW = 64  # spare columns added when a buffer is full: one copy every 64 decode steps


def append_columns(buffer: torch.Tensor | None, filled: int, new: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``new`` (B, H, T, D) written after the first ``filled`` columns of ``buffer`` (B, H, L, D),
    which grows by `GROW` spare columns when it has no room; returns (buffer, filled + T)."""
    if buffer is None:
        return new, new.shape[-2]
    need = filled + new.shape[-2]
    if need > buffer.shape[-2]:
        grown = buffer.new_empty((*buffer.shape[:-2], need + GROW, buffer.shape[-1]))
        grown[..., :filled, :] = buffer[..., :filled, :]
        buffer = grown
    buffer[..., filled:need, :] = new
    return buffer, need


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose ``keys`` and ``values`` are views of buffers with spare columns."""

    def __init__(self, *args, **kwargs):
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._kn = self._vn = 0
        self._owned = False  # whether both buffers were allocated here (and may be written)
        super().__init__(*args, **kwargs)

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[..., : self._kn, :]

    @keys.setter
    def keys(self, t: torch.Tensor | None) -> None:
        self._k, self._kn = (t, t.shape[-2]) if t is not None and t.dim() == 4 else (None, 0)
        self._owned = False

    @property
    def values(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[..., : self._vn, :]

    @values.setter
    def values(self, t: torch.Tensor | None) -> None:
        self._v, self._vn = (t, t.shape[-2]) if t is not None and t.dim() == 4 else (None, 0)
        self._owned = False

    def get_seq_length(self) -> int:
        return self._kn

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self._k is None:
            self._owned = False  # the first states become the buffers as they are
        elif self._kn + key_states.shape[-2] > self._k.shape[-2]:
            self._owned = True  # append_columns allocates new, larger buffers
        self._k, self._kn = append_columns(self._k, self._kn, key_states)
        self._v, self._vn = append_columns(self._v, self._vn, value_states)
        return self.keys, self.values

    def keep(self, rows: list[int], first: int = 0) -> None:
        """Keep only rows ``rows`` (ascending) and the columns from ``first`` on, with one copy
        at most: in buffers of this layer's own with ``first`` 0, each kept row below a dropped
        one moves up in place; otherwise the kept part goes once into new buffers with `GROW`
        spare columns (which become this layer's own)."""
        n = self._kn - first
        if self._owned and first == 0:
            for buf in (self._k, self._v):
                for j, r in enumerate(rows):
                    if j != r:  # j < r: the row read is never one already overwritten
                        buf[j, :, :n].copy_(buf[r, :, :n])
            self._k, self._v = self._k[: len(rows)], self._v[: len(rows)]
            return
        fresh = []
        for buf in (self._k, self._v):
            out = buf.new_empty((len(rows), buf.shape[1], n + GROW, buf.shape[3]))
            for j, r in enumerate(rows):
                out[j, :, :n].copy_(buf[r, :, first : self._kn])
            fresh.append(out)
        self._k, self._v = fresh
        self._kn = self._vn = n
        self._owned = True


class GrowingCache(DynamicCache):
    """A `DynamicCache` of `GrowingLayer`s (one made per layer on its first update)."""

    def __init__(self):
        super().__init__()
        self.layer_class_to_replicate = GrowingLayer
