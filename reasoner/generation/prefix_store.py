"""Keys and values of token prefixes for the `hf` backend: a few-shot prefix many prompts
share, or a search tree's nodes, computed once and reused."""

from __future__ import annotations

from collections import Counter, OrderedDict

import torch


class PrefixStore:
    """Keys and values of token prefixes, found by the longest stored prefix of a prompt.

    An entry keeps only the keys and values of the tokens past its parent (the longest stored
    prefix of it when it was put), so a search tree costs memory for its new tokens, not for
    every node's whole prefix; a lookup joins the chain. Least recently used entries go first
    past ``max_bytes``, leaves before the entries they extend, so every chain stays whole.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._children: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
        self._lengths: Counter[int] = Counter()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Store the keys and values (1, H, len(tokens), D) per layer of ``tokens``."""
        key = tuple(tokens)
        if not key or key in self._entries:
            return
        parent_len, _ = self.longest(key, len(key) - 1, join=False)
        parent = key[:parent_len] if parent_len else None
        delta = [(k[:, :, parent_len:].contiguous(), v[:, :, parent_len:].contiguous()) for k, v in kv]
        entry = _Entry(parent, delta)
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self._lengths[len(key)] += 1
        self._bytes += entry.nbytes
        if parent is not None:
            self._children.setdefault(parent, set()).add(key)
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            self._evict_one()

    def _evict_one(self) -> None:
        """Drop the least recently used entry that no other entry builds on (a leaf): dropping
        an inner entry would free nothing, since its children need its tokens."""
        key = next(k for k in self._entries if not self._children.get(k))
        entry = self._entries.pop(key)
        self._lengths[len(key)] -= 1
        self._bytes -= entry.nbytes
        if entry.parent is not None:
            self._children[entry.parent].discard(key)

    def _join(self, key: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        keys = []
        while key is not None:
            keys.append(key)
            key = self._entries[key].parent
        keys.reverse()
        for k in keys:  # root first: ancestors age before the leaf that is being extended
            self._entries.move_to_end(k)
        chain = [self._entries[k].delta for k in keys]
        if len(chain) == 1:
            return chain[0]
        return [
            (torch.cat([c[i][0] for c in chain], 2), torch.cat([c[i][1] for c in chain], 2))
            for i in range(len(chain[0]))
        ]

    def longest(self, tokens, max_len: int, join: bool = True):
        """(length, keys and values) of the longest stored prefix of ``tokens`` not longer than
        ``max_len``, or (0, None). A stored entry one token longer that ``tokens`` starts with
        serves too, cut to ``max_len``."""
        key = tuple(tokens[: max_len + 1])
        if join and max_len > 0 and key in self._entries:
            return max_len, [(k[:, :, :max_len], v[:, :, :max_len]) for k, v in self._join(key)]
        for length in sorted((n for n, c in self._lengths.items() if c > 0 and n <= max_len), reverse=True):
            key = tuple(tokens[:length])
            if key in self._entries:
                return length, (self._join(key) if join else None)
        return 0, None


class _Entry:
    __slots__ = ("parent", "delta")

    def __init__(self, parent, delta):
        self.parent, self.delta = parent, delta

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.delta)
