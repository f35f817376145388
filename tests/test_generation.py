import pytest
import torch

from reasoner.generation import Sampling
from reasoner.generation.hf import HFBackend, _length_groups, _sample, score_chunks
from reasoner.logprobs import common_prefix

PREFIX = "You are a careful solver. Answer briefly and end with the answer. "


def _prompts(n=7):
    return [PREFIX + f"Q{i}: " + "x" * (i % 4) for i in range(n)]


def _reference_greedy(tiny, prompt, n):
    ids = tiny.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = tiny.model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)
    return out[0, ids["input_ids"].shape[1] :].tolist()


def test_greedy_matches_model_generate_with_refill_and_shared_prefix(tiny):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    prompts = _prompts()
    # batch 3 < 7 prompts: rows are refilled; the prompts share a 67-character prefix.
    outs = backend.generate(prompts, Sampling(temperature=0, max_new_tokens=12, batch_size=3))
    for prompt, out in zip(prompts, outs, strict=True):
        assert out.token_ids == _reference_greedy(tiny, prompt, 12)
        assert out.finish_reason == "length" and len(out.logprobs) == 12


def test_logprobs_equal_score(tiny):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    prompts = _prompts(4)
    outs = backend.generate(prompts, Sampling(temperature=1.0, max_new_tokens=10, seed=3, batch_size=2))
    scored = backend.score_ids(
        [
            (tiny.tokenizer(p, add_special_tokens=False)["input_ids"], o.token_ids)
            for p, o in zip(prompts, outs, strict=True)
        ]
    )
    for out, lp in zip(outs, scored, strict=True):
        assert torch.allclose(torch.tensor(out.logprobs), torch.tensor(lp), atol=1e-4)


def test_score_chunks_put_the_pairs_of_one_prompt_together():
    long_a, long_b, short = [1] * 16, [2] * 20, [3] * 4
    pairs = [(long_a, [5]), (short, [6, 7]), (long_b, [8]), (long_a, [9, 9]), (short, [6]), (long_a, [4])]
    # long_a's three pairs in chunks of 2 (shortest continuation first); long_b has one pair, and
    # short's prompt is below MIN_SHARED_PREFIX: those three sorted by length
    assert score_chunks(pairs, 2) == [[0, 5], [3], [4, 1], [2]]
    assert sorted(i for c in score_chunks(pairs, 8) for i in c) == list(range(6))


def test_pairs_sharing_a_prompt_run_it_once_and_score_as_alone(tiny):
    """Eight continuations of each of two prompts: the prompt's positions go through the decoder
    once per chunk, not once per pair, and every log-probability is the one of the pair scored
    alone (up to rounding)."""
    backend = HFBackend(tiny.model, tiny.tokenizer)
    tok = tiny.tokenizer
    prompts = [tok(PREFIX + f"Q{i}: add the numbers", add_special_tokens=False)["input_ids"] for i in range(2)]
    gen = torch.Generator().manual_seed(0)
    vocab = tiny.model.config.vocab_size
    pairs = [(p, torch.randint(3, vocab, (n,), generator=gen).tolist()) for p in prompts for n in range(3, 11)]
    positions = []
    hook = tiny.model.get_input_embeddings().register_forward_hook(lambda m, a, out: positions.append(a[0].numel()))
    try:
        reported: list[int] = []
        together = backend.score_ids(pairs, batch_size=8, progress=reported.append)
        computed = sum(positions)
        alone = [backend.score_ids([pair])[0] for pair in pairs]
    finally:
        hook.remove()
    # each chunk: the prompt once (the common prefix of its rows, at least the prompt) and each
    # row's continuation, right-padded to the longest (10)
    assert computed <= sum(len(p) + 8 * 10 for p in prompts)
    assert computed < sum(len(p) + len(c) for p, c in pairs) / 2
    for a, b in zip(together, alone, strict=True):
        assert len(a) == len(b) and torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)
    # progress after each forward: one per chunk of eight (two prompts x eight rows), up to all pairs
    assert reported == [8, 16]


def test_samples_depend_on_seed_not_on_batching(tiny):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    prompts = _prompts(6)
    a = backend.generate(prompts, Sampling(temperature=1.0, max_new_tokens=16, seed=5, batch_size=6))
    b = backend.generate(prompts, Sampling(temperature=1.0, max_new_tokens=16, seed=5, batch_size=2))
    c = backend.generate(prompts, Sampling(temperature=1.0, max_new_tokens=16, seed=6, batch_size=6))
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    assert [o.token_ids for o in a] != [o.token_ids for o in c]


def test_stop_strings_end_rows_early(tiny):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    outs = backend.generate(
        _prompts(8), Sampling(temperature=1.0, max_new_tokens=400, stop=("e",), seed=1, batch_size=4)
    )
    stopped = [o for o in outs if o.finish_reason == "stop"]
    assert stopped, "a random char model samples 'e' within 400 tokens"
    for o in stopped:
        assert o.text.endswith("e") and "e" not in o.text[:-1]
        assert len(o.token_ids) < 400


def test_eos_finishes_a_row_and_is_not_returned(tiny, monkeypatch):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    forward, calls = tiny.model.forward, []

    def eos_on_third_step(*args, **kwargs):  # <eos> (id 1) wins from the third forward on
        out = forward(*args, **kwargs)
        calls.append(1)
        if len(calls) >= 3:
            out.logits[..., 1] += 100.0
        return out

    monkeypatch.setattr(tiny.model, "forward", eos_on_third_step)
    outs = backend.generate(["ab", "cd"], Sampling(temperature=0, max_new_tokens=9, batch_size=2))
    # forward 1: prefill -> token 1; forward 2: decode -> token 2; forward 3 -> <eos>.
    assert [o.finish_reason for o in outs] == ["eos", "eos"]
    assert [len(o.token_ids) for o in outs] == [2, 2]
    assert all(1 not in o.token_ids for o in outs)


def test_common_prefix_leaves_each_prompt_a_token():
    assert common_prefix([[1, 2, 3], [1, 2, 4]]) == 2
    assert common_prefix([[1, 2], [1, 2, 3]]) == 1
    assert common_prefix([[5], [6]]) == 0


def test_inverse_cdf_sampling_by_hand():
    # probs softmax([0, ln 3]) = [0.25, 0.75]: u < 0.25 picks token 0, otherwise token 1.
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0))]] * 3)
    assert _sample(logits, 1.0, torch.tensor([0.1, 0.3, 0.99])).tolist() == [0, 1, 1]
    # top_p 0.5 keeps only the 0.75 token.
    assert _sample(logits, 0.5, torch.tensor([0.0, 0.5, 0.99])).tolist() == [1, 1, 1]


def test_repeated_prompts_are_prefilled_once_with_the_same_results(tiny, monkeypatch):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    prompts = [p for p in _prompts(3) for _ in range(4)]  # 4 samples of each of 3 problems
    sampling = Sampling(temperature=1.0, max_new_tokens=8, seed=2, batch_size=1)
    one_by_one = backend.generate(prompts, sampling)
    rows_prefilled = []
    forward = tiny.model.forward

    def counting(*args, **kwargs):
        if kwargs.get("logits_to_keep") == 1 and kwargs["input_ids"].shape[1] > 1:
            rows_prefilled.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny.model, "forward", counting)
    together = backend.generate(prompts, Sampling(temperature=1.0, max_new_tokens=8, seed=2, batch_size=12))
    assert [o.token_ids for o in together] == [o.token_ids for o in one_by_one]
    assert sum(rows_prefilled) == 3  # one prefill row per distinct prompt


def test_length_groups_bound_padding_by_hand():
    # rows sorted longest first; a run's width is its first row's length.
    # [0, 1]: 2 x 100 = 200 <= 1.1 x 195; adding 2 would give 300 > 1.1 x 235.
    assert _length_groups([0, 1, 2, 3], [100, 95, 40, 38], 0.1) == [[0, 1], [2, 3]]
    assert _length_groups([2, 0, 1], [10, 10, 30], 0.0) == [[2], [0, 1]]
    # slack 1.0: 4 x 100 = 400 <= 2 x 273, so all four go together.
    assert _length_groups([0, 1, 2, 3], [100, 95, 40, 38], 1.0) == [[0, 1, 2, 3]]


def test_mixed_prompt_lengths_prefill_few_padding_positions_and_match_generate(tiny):
    backend = HFBackend(tiny.model, tiny.tokenizer)
    long_and_short = ["L" * 90 + " Q?", "M" * 85 + " Q?", "a?", "bc?", "d?"]  # no shared prefix
    outs = backend.generate(long_and_short, Sampling(temperature=0, max_new_tokens=6, batch_size=5))
    for prompt, out in zip(long_and_short, outs, strict=True):
        assert out.token_ids == _reference_greedy(tiny, prompt, 6)
    real, computed = backend.stats["prefill_tokens"], backend.stats["prefill_computed"]
    assert real == sum(len(p) for p in long_and_short)  # one token per character
    assert computed <= 1.1 * real  # one padded forward would compute 5 x 93 = 465 for 193
    sampled = backend.generate(long_and_short, Sampling(temperature=1.0, max_new_tokens=6, seed=4, batch_size=5))
    # request i's generator is seeded with i, so give each prompt alone its own index
    alone = [
        backend.generate(long_and_short[: i + 1], Sampling(temperature=1.0, max_new_tokens=6, seed=4, batch_size=1))[i]
        for i in range(len(long_and_short))
    ]
    assert [o.token_ids for o in sampled] == [o.token_ids for o in alone]


def test_kept_prefixes_are_reused_exactly(tiny):
    tok = tiny.tokenizer
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in _prompts(3)]
    greedy = Sampling(temperature=0, max_new_tokens=6, batch_size=4, keep_kv=True)
    backend = HFBackend(tiny.model, tok)
    first = backend.generate_ids(prompts, greedy)
    children = [p + c.token_ids for p, c in zip(prompts, first, strict=True)]
    before = dict(backend.stats)
    again = backend.generate_ids(children, greedy)
    # Each child needs only the last token of its parent's step: 3 rows x 1 token.
    assert backend.stats["prefill_tokens"] - before["prefill_tokens"] == 3
    fresh = HFBackend(tiny.model, tok).generate_ids(children, Sampling(temperature=0, max_new_tokens=6))
    assert [c.token_ids for c in again] == [c.token_ids for c in fresh]
    for child, out in zip(children, again, strict=True):
        ref = tiny.model.generate(
            torch.tensor([child]), max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None
        )
        assert out.token_ids == ref[0, len(child) :].tolist()


def test_prefix_store_keeps_deltas_and_evicts_leaves_first():
    from reasoner.generation.prefix_store import PrefixStore

    def kv(n, seed):
        g = torch.Generator().manual_seed(seed)
        return [(torch.randn(1, 2, n, 4, generator=g), torch.randn(1, 2, n, 4, generator=g)) for _ in range(3)]

    full = kv(6, 0)
    store = PrefixStore(max_bytes=10**9)
    store.put([1, 2, 3], [(k[:, :, :3], v[:, :, :3]) for k, v in full])
    store.put([1, 2, 3, 4, 5, 6], full)
    # the child keeps only its 3 new tokens
    assert store._entries[(1, 2, 3, 4, 5, 6)].delta[0][0].shape[2] == 3
    length, got = store.longest([1, 2, 3, 4, 5, 6, 7], 6)
    assert length == 6 and all(torch.equal(a, b) for (a, _), (b, _) in zip(got, full, strict=True))
    store.max_bytes = store._bytes + 1  # no room for another entry
    store.put([9, 9], kv(2, 1))
    # the parent (1, 2, 3) is the oldest, but the child needs it: the child, a leaf, goes
    assert (1, 2, 3) in store._entries and (1, 2, 3, 4, 5, 6) not in store._entries
    assert store.longest([1, 2, 3, 4, 5, 6, 7], 6)[0] == 3
    # a stored entry one token longer than the allowed length serves, cut to it
    length, got = store.longest([1, 2, 3], 2)
    assert length == 2 and torch.equal(got[0][0], full[0][0][:, :, :2])


# ----------------------------------------------------------------------- generate.stop_loops
def test_looping_needs_three_repeats_of_one_span_over_48_tokens():
    from reasoner.generation import loop_end, looping

    assert looping([7] * 48) and not looping([7] * 47)  # period 1: the 48-token floor
    assert not looping([1, 2] + [7] * 46)
    span = list(range(20))  # period 20: three repeats, 60 tokens
    assert looping([99, 98] + span * 3) and not looping([99, 98] + span * 2 + span[:19])
    assert not looping(list(range(200)))
    assert not looping(list(range(130)) * 3)  # a period over 128 tokens is not looked for
    # checked at multiples of 8: 5 free tokens then [7] * 48 loops from length 53, stopped at 56
    assert loop_end([1, 2, 3, 4, 5] + [7] * 60) == 56
    assert loop_end([1, 2, 3, 4, 5] + [7] * 51) == 56 and loop_end([1, 2, 3, 4, 5] + [7] * 51 + [1]) == 56
    assert loop_end([1, 2, 3, 4, 5] + [7] * 50) is None  # 55 tokens: never at a check


def test_stop_loops_ends_looping_rows_where_loop_end_says_and_leaves_the_others(tiny):
    from reasoner.generation import loop_end

    plain = HFBackend(tiny.model, tiny.tokenizer)
    stopping = HFBackend(tiny.model, tiny.tokenizer, stop_loops=True)
    prompts = _prompts(6)
    greedy = Sampling(temperature=0, max_new_tokens=120, batch_size=4)
    full = plain.generate(prompts, greedy)
    cut = stopping.generate(prompts, greedy)
    assert all(o.finish_reason == "length" and len(o.token_ids) == 120 for o in full)
    for f, c in zip(full, cut, strict=True):  # the random model's greedy answers repeat one token
        end = loop_end(f.token_ids)
        assert end is not None and end < 120
        assert c.finish_reason == "loop" and c.token_ids == f.token_ids[:end]
        assert c.logprobs == pytest.approx(f.logprobs[:end], abs=1e-5)
        assert c.text == tiny.tokenizer.decode(f.token_ids[:end], skip_special_tokens=True)
    # sampled answers of this model do not loop: the check changes none of them
    sampled = Sampling(temperature=1.0, max_new_tokens=120, seed=1, batch_size=4)
    a, b = plain.generate(prompts, sampled), stopping.generate(prompts, sampled)
    assert all(loop_end(o.token_ids) is None for o in a)
    assert [o.token_ids for o in a] == [o.token_ids for o in b]


def test_vllm_results_are_cut_where_the_hf_backend_stops_a_loop(tiny):
    """vLLM has no such stop: its results are cut afterwards, at the token the hf backend stops."""
    from reasoner.generation.vllm_backend import VLLMBackend, _Out

    greedy = Sampling(temperature=0, max_new_tokens=120, batch_size=4)
    prompts = _prompts(3)
    full = HFBackend(tiny.model, tiny.tokenizer).generate(prompts, greedy)
    cut = HFBackend(tiny.model, tiny.tokenizer, stop_loops=True).generate(prompts, greedy)
    vllm = object.__new__(VLLMBackend)  # its results' handling only: no engine
    vllm.tokenizer, vllm._eos, vllm._stop_loops = tiny.tokenizer, set(), True
    for f, c in zip(full, cut, strict=True):
        got = vllm._completion(_Out(f.token_ids, f.logprobs, "length", None, 9, []), greedy)
        assert (got.token_ids, got.finish_reason, got.text) == (c.token_ids, "loop", c.text)
    vllm._stop_loops = False
    got = vllm._completion(_Out(full[0].token_ids, full[0].logprobs, "length", None, 9, []), greedy)
    assert got.finish_reason == "length" and got.token_ids == full[0].token_ids
