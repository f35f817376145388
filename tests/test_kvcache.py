"""The growing KV cache: each decode step written in place, the same keys and values as
transformers' `DynamicCache`, never a write into a tensor it was handed."""

import torch
from transformers import DynamicCache

from reasoner.generation.kvcache import GROW, GrowingCache, GrowingLayer, append_columns


def test_append_columns_grows_by_spare_columns_and_writes_in_place():
    first = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    buf, n = append_columns(None, 0, first)
    assert buf is first and n == 3  # a tensor handed in becomes the buffer, full
    col = torch.full((2, 1, 1, 2), -1.0)
    buf, n = append_columns(buf, n, col)
    assert n == 4 and buf.shape == (2, 1, 4 + GROW, 2) and buf is not first
    assert torch.equal(buf[..., :3, :], first) and torch.equal(buf[..., 3:4, :], col)
    assert torch.equal(first, torch.arange(12, dtype=torch.float32).reshape(2, 1, 3, 2))  # untouched
    ptr = buf.data_ptr()
    for i in range(GROW):  # the spare columns fill without a new buffer
        buf, n = append_columns(buf, n, torch.full((2, 1, 1, 2), float(i)))
    assert buf.data_ptr() == ptr and n == 4 + GROW and torch.equal(buf[0, 0, -1], torch.tensor([63.0, 63.0]))
    buf, n = append_columns(buf, n, col)
    assert (
        buf.data_ptr() != ptr
        and buf.shape[-2] == 5 + 2 * GROW
        and torch.equal(buf[..., 4 : 4 + GROW, :][0, 0, 5], torch.tensor([5.0, 5.0]))
    )


def test_growing_cache_holds_what_dynamic_cache_holds():
    torch.manual_seed(0)
    steps = [torch.randn(3, 2, 5, 4)] + [torch.randn(3, 2, 1, 4) for _ in range(GROW + 3)]
    ours, theirs = GrowingCache(), DynamicCache()
    for t in steps:
        for cache in (ours, theirs):
            for layer in range(2):
                got_k, got_v = cache.update(t * (layer + 1), -t, layer)
        assert torch.equal(got_k, theirs.layers[1].keys) and torch.equal(got_v, theirs.layers[1].values)
    assert isinstance(ours.layers[0], GrowingLayer) and ours.get_seq_length() == 5 + GROW + 3
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    # the backend's row bookkeeping assigns a selection: it is kept as it is, then grows again
    layer = ours.layers[0]
    kept = layer.keys[torch.tensor([0, 2]), :, 4:].clone()
    layer.keys, layer.values = kept.clone(), kept.clone()
    assert layer.get_seq_length() == kept.shape[-2] and torch.equal(layer.keys, kept)
    handed = layer.keys
    layer.update(torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))
    assert torch.equal(handed, kept) and torch.equal(layer.keys[..., :-1, :], kept)
    assert torch.equal(layer.keys[..., -1, :], torch.ones(2, 2, 4))


def test_backend_greedy_past_the_spare_columns_matches_model_generate(tiny):
    """Rows that outlive a buffer's spare columns while others finish, leave and are replaced."""
    from reasoner.generation import Sampling
    from reasoner.generation.hf import HFBackend

    prompts = [f"Q{i}: " + "x" * (3 * i) for i in range(5)]
    outs = HFBackend(tiny.model, tiny.tokenizer).generate(
        prompts, Sampling(temperature=0, max_new_tokens=GROW + 20, batch_size=2)
    )
    for prompt, out in zip(prompts, outs, strict=True):
        ids = tiny.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        ref = tiny.model.generate(**ids, max_new_tokens=GROW + 20, do_sample=False, pad_token_id=0, eos_token_id=None)
        assert out.token_ids == ref[0, ids["input_ids"].shape[1] :].tolist()


def test_keep_drops_rows_with_one_copy_at_most_and_never_writes_a_handed_tensor():
    torch.manual_seed(1)
    layer = GrowingCache()
    first = torch.randn(4, 2, 3, 5)
    layer.update(first.clone(), -first.clone(), 0)
    layer = layer.layers[0]
    layer.update(torch.randn(4, 2, 1, 5), torch.randn(4, 2, 1, 5))  # grows: buffers of its own
    before_k, before_v, ptr = layer.keys.clone(), layer.values.clone(), layer._k.data_ptr()
    layer.keep([1, 3])  # in place: row 1 -> 0, row 3 -> 1, spare columns kept
    assert layer._k.data_ptr() == ptr and layer.get_seq_length() == 4
    assert torch.equal(layer.keys, before_k[[1, 3]]) and torch.equal(layer.values, before_v[[1, 3]])
    step = torch.randn(2, 2, 1, 5)
    layer.update(step, step)  # into the spare column: no new buffer
    assert layer._k.data_ptr() == ptr and torch.equal(layer.keys[..., -1:, :], step)
    # leading columns trimmed: one copy into a new buffer with spare columns
    layer.keep([1], first=2)
    assert layer._k.data_ptr() != ptr and layer._k.shape[-2] == 3 + GROW
    assert torch.equal(layer.keys, torch.cat([before_k[[3]], step[[1]]], dim=2)[..., 2:, :])
    # a tensor handed in is never written: keep copies it out
    handed = torch.randn(3, 2, 4, 5)
    kept = handed.clone()
    layer.keys, layer.values = handed, handed
    layer.keep([0, 2])
    assert torch.equal(handed, kept) and torch.equal(layer.keys, kept[[0, 2]]) and layer._k.shape[-2] == 4 + GROW
