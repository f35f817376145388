"""Tree search on `arith`: prefix reuse, accuracy at an equal token budget, implicit PRM speed.

1. Prefix reuse: for beam search and MCTS, tokens the model computed (prefill + decode)
   against new tokens generated, after each problem's prompt is computed once (goal <= 1.1x).
2. Accuracy of best-of-n (majority vote), beam search (best final score) and MCTS (most visited
   terminal), and a majority vote over each search's solutions, on the same test problems, each
   given about the same generated-token budget per problem (MCTS is capped at best-of-n's mean;
   beam stops when its beams finish; the tokens each used are printed).
3. Implicit PRM scoring: tokens/s of scoring (policy + reference log-probabilities, LM head on
   the response only) against a bare forward pass with full logits, same sequences.

    python bench/search.py --problems 50 [--policy runs/X/iter_0003/policy]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

import torch

from reasoner import models
from reasoner.config import SearchConfig
from reasoner.generation import Sampling
from reasoner.generation.hf import HFBackend
from reasoner.logprobs import pad_right
from reasoner.search import SearchSettings, get_searcher
from reasoner.tasks import get_pack, render
from reasoner.verifiers import get_extractor, get_verifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default=models.EMBEDDED)
    ap.add_argument("--problems", type=int, default=50)
    ap.add_argument("--samples", type=int, default=8, help="best-of-n samples per problem")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    loaded = models.load(args.policy)
    tok = loaded.tokenizer
    pack = get_pack("arith", difficulty={"steps": 2, "max_number": 10, "ops": "+-"})
    problems = pack.problems("test", args.problems, 0)
    extract, verify = get_extractor("flexible"), get_verifier(pack.verifier)

    def correct(problem, text):
        return verify(problem.answer, extract(text)).correct

    def fresh():
        backend = HFBackend(loaded.model, tok)
        # The prompts are computed once up front, as a long search over them would amortise.
        ids = [tok(render(pack.messages(p), tok), add_special_tokens=False)["input_ids"] for p in problems]
        backend.generate_ids(ids, Sampling(max_new_tokens=1, keep_kv=True, batch_size=64))
        return backend, dict(backend.stats)

    report = {}
    # ----------------------------------------------------------------- best-of-n (majority)
    backend, before = fresh()
    t0 = time.time()
    res = get_searcher("best_of_n")(
        problems,
        backend,
        pack,
        tok,
        SearchSettings(samples=args.samples, temperature=0.8, max_new_tokens=64, batch_size=64, seed=1),
    )
    by = {}
    for t in res.trajectories:
        by.setdefault(t.problem_id, []).append(t)
    hits = 0
    for p in problems:
        votes = Counter(extract(t.text) for t in by[p.id] if extract(t.text))
        hits += bool(votes) and verify(p.answer, votes.most_common(1)[0][0]).correct
    bon_tokens = sum(t.num_tokens for t in res.trajectories) / len(problems)
    report["best_of_n"] = {
        "accuracy": hits / len(problems),
        "tokens_per_problem": bon_tokens,
        "seconds": time.time() - t0,
    }
    # ----------------------------------------------------------------------- beam and mcts
    configs = {
        "beam": SearchConfig(beam_width=2, beam_expansions=4, max_steps=5, step_tokens=24),
        "mcts": SearchConfig(
            mcts_simulations=64,
            mcts_expansions=3,
            max_steps=5,
            step_tokens=24,
            mcts_token_budget=int(bon_tokens),
            mcts_value="none",
            mcts_c=1.0,
        ),
    }
    for name, cfg in configs.items():
        backend, before = fresh()
        t0 = time.time()
        settings = SearchSettings(temperature=0.8, batch_size=64, seed=1, tree=cfg)
        res = get_searcher(name)(problems, backend, pack, tok, settings)
        firsts = {}
        for t in res.trajectories:
            firsts.setdefault(t.problem_id, t)
        acc = sum(p.id in firsts and correct(p, firsts[p.id].text) for p in problems) / len(problems)
        groups = {}
        for t in res.trajectories:
            groups.setdefault(t.problem_id, []).append(t)
        majority = 0
        for p in problems:
            votes = Counter(extract(t.text) for t in groups.get(p.id, []) if extract(t.text))
            majority += bool(votes) and verify(p.answer, votes.most_common(1)[0][0]).correct
        new = sum(tree_tokens(tr) for tr in res.trees)
        computed = (backend.stats["prefill_tokens"] - before["prefill_tokens"]) + (
            backend.stats["decode_tokens"] - before["decode_tokens"]
        )
        report[name] = {
            "accuracy": acc,
            "majority_accuracy": majority / len(problems),
            "tokens_per_problem": new / len(problems),
            "computed_per_new_token": computed / max(new, 1),
            "seconds": time.time() - t0,
        }
    # --------------------------------------------------------------- implicit PRM scoring
    backend = HFBackend(loaded.model, tok)
    pairs = [
        (tok(t.prompt, add_special_tokens=False)["input_ids"], tok(t.text, add_special_tokens=False)["input_ids"])
        for t in res.trajectories[:64]
        if t.text
    ] or [([1, 2, 3], [4, 5])]
    n_tokens = sum(len(a) + len(b) for a, b in pairs)
    t0 = time.time()
    backend.score_ids(pairs)
    backend.score_ids(pairs)  # reward model and reference: two scoring passes
    score_tps = 2 * n_tokens / (time.time() - t0)
    t0 = time.time()
    with torch.inference_mode():
        for s in range(0, len(pairs), 8):
            ids, mask = pad_right([a + b for a, b in pairs[s : s + 8]], tok.pad_token_id or 0, "cpu")
            loaded.model(input_ids=ids, attention_mask=mask)
    bare_tps = n_tokens / (time.time() - t0)
    report["implicit_scoring"] = {
        "tok_s": score_tps,
        "bare_forward_tok_s": bare_tps,
        "ratio_vs_bare_forward": score_tps / bare_tps,
    }
    for name, r in report.items():
        print(f"{name:17}", "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(
        json.dumps(
            {
                "bench": "search",
                "problems": len(problems),
                "threads": args.threads,
                "load_avg": round(load, 2),
                **{k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in report.items()},
            }
        )
    )


def tree_tokens(tree) -> int:
    return sum(n.token_end - n.token_start for n in tree.nodes[1:])


if __name__ == "__main__":
    main()
