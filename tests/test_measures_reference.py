"""Every measure in theorylab.measures against a slow, obviously-correct loop written here, on
non-ideal inputs (random attention patterns, spread spectra, ties, NaNs).

Each reference follows the measure's docstring word for word; a measure that disagrees with its
own definition fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError, TheoryLabError


def random_pattern(B, H, T, gen, causal=True):
    """Softmax rows of random logits (causal: zero above the diagonal)."""
    logits = 3 * torch.randn(B, H, T, T, generator=gen)
    if causal:
        logits = logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return logits.softmax(-1)


# --------------------------------------------------------------------------- induction.py


def ref_induction_score(tokens, pattern, P):
    B, H, T, _ = pattern.shape
    out = []
    for h in range(H):
        vals = [float(pattern[b, h, i, i - P + 1]) for b in range(B) for i in range(P, T)]
        out.append(sum(vals) / len(vals))
    return out


def test_induction_score_counts_every_row_of_the_later_copies():
    # the example: two copies of arange(8); weight 1 on i - P + 1 only in the last two rows
    P = 8
    x = torch.arange(P).repeat(1, 2)
    pat = torch.zeros(1, 1, 2 * P, 2 * P)
    for i in (14, 15):
        pat[0, 0, i, i - P + 1] = 1.0
    from theorylab.measures.induction import induction_score

    assert induction_score(x, pat, P).tolist() == [pytest.approx(0.25)]  # 2 of the 8 rows i >= P (was 1.0)
    # row i = P (the second copy's first token) looks at key 1
    pat = torch.zeros(1, 1, 2 * P, 2 * P)
    pat[0, 0, P, 1] = 1.0
    assert induction_score(x, pat, P).tolist() == [pytest.approx(1 / 8)]


@pytest.mark.parametrize("B,H,P,copies", [(2, 3, 5, 2), (1, 2, 4, 3), (3, 1, 1, 6), (2, 2, 7, 2)])
def test_induction_score_matches_loop_on_random_patterns(B, H, P, copies):
    from theorylab.measures.induction import induction_score

    g = torch.Generator().manual_seed(B * 100 + P)
    first = torch.randint(0, 20, (B, P), generator=g)
    x = first.repeat(1, copies)
    pat = random_pattern(B, H, P * copies, g)
    got = induction_score(x, pat, P)
    assert got.dtype == torch.float64 and got.shape == (H,)
    assert got.tolist() == pytest.approx(ref_induction_score(x, pat, P), abs=1e-12)


def ref_previous_token_score(pattern):
    B, H, T, _ = pattern.shape
    return [sum(float(pattern[b, h, i, i - 1]) for b in range(B) for i in range(1, T)) / (B * (T - 1))
            for h in range(H)]


def ref_prefix_matching(tokens, pattern, rows=None):
    """Mean over query rows i with a key j <= i, tokens[j - 1] == tokens[i] (j >= 1), of the attention on
    all such keys; with ``rows`` only over those rows."""
    B, H, T, _ = pattern.shape
    out = []
    for h in range(H):
        vals = []
        for b in range(B):
            for i in range(T):
                if rows is not None and not bool(rows[b, i]):
                    continue
                keys = [j for j in range(1, i + 1) if int(tokens[b, j - 1]) == int(tokens[b, i])]
                if keys:
                    vals.append(sum(float(pattern[b, h, i, j]) for j in keys))
        out.append(sum(vals) / len(vals))
    return out


def test_previous_token_and_prefix_matching_match_loops_on_random_patterns():
    from theorylab.measures.induction import prefix_matching_score, previous_token_score

    g = torch.Generator().manual_seed(1)
    for B, H, T, V in [(2, 3, 9, 3), (3, 2, 12, 5), (1, 1, 6, 2)]:
        x = torch.randint(0, V, (B, T), generator=g)  # small vocabularies: many rows match several keys
        pat = random_pattern(B, H, T, g)
        assert previous_token_score(x, pat).tolist() == pytest.approx(ref_previous_token_score(pat), abs=1e-12)
        assert prefix_matching_score(x, pat).tolist() == pytest.approx(ref_prefix_matching(x, pat), abs=1e-12)
        rows = torch.rand(B, T, generator=g) < 0.5
        rows[0, -1] = True
        x[0, -1] = x[0, 0]  # at least one selected row matches
        assert prefix_matching_score(x, pat, rows).tolist() == pytest.approx(
            ref_prefix_matching(x, pat, rows), abs=1e-12)


def test_prefix_matching_ignores_nan_outside_the_counted_entries():
    # NaN rows (e.g. fully masked queries) and NaN weights on non-matching keys are not part of the score
    from theorylab.measures.induction import prefix_matching_score

    g = torch.Generator().manual_seed(2)
    x = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    pat = random_pattern(1, 2, 8, g)
    want = ref_prefix_matching(x, pat)
    pat[0, :, 2] = float("nan")  # row 2 (token 2, first occurrence) cannot match: not counted
    pat[0, :, 5, 0] = float("nan")  # row 5 (token 1) matches key 2 only
    assert prefix_matching_score(x, pat).tolist() == pytest.approx(want, abs=1e-12)
    pat[0, 0, 5, 2] = float("nan")  # a NaN on a counted entry stays NaN
    assert math.isnan(float(prefix_matching_score(x, pat)[0]))


def test_trigger_scores_match_loops():
    from theorylab.measures.induction import previous_token_after_trigger_score, trigger_induction_score

    g = torch.Generator().manual_seed(3)
    B, H, T = 3, 2, 14
    x = torch.randint(0, 4, (B, T), generator=g)
    pat = random_pattern(B, H, T, g)
    # kind 2: a repeated trigger (a token seen before); triggers are tokens 0 and 1
    kind = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        for i in range(T):
            if int(x[b, i]) in (0, 1) and int(x[b, i]) in x[b, :i].tolist():
                kind[b, i] = 2
    got = trigger_induction_score(x, pat, kind)
    assert got.tolist() == pytest.approx(ref_prefix_matching(x, pat, kind == 2), abs=1e-12)
    rows = [(b, t) for b in range(B) for t in range(1, T) if int(x[b, t - 1]) in (0, 1)]
    want = [sum(float(pat[b, h, t, t - 1]) for b, t in rows) / len(rows) for h in range(H)]
    assert previous_token_after_trigger_score(x, pat, [0, 1]).tolist() == pytest.approx(want, abs=1e-12)
    pat[:, :, 0] = float("nan")  # row 0 has no previous token: never counted
    for b, t in [(b, t) for b in range(B) for t in range(1, T) if (b, t) not in rows]:
        pat[b, :, t] = float("nan")
    assert previous_token_after_trigger_score(x, pat, [0, 1]).tolist() == pytest.approx(want, abs=1e-12)
    # no repeated trigger / no trigger: 0 (the loop logs only finite values)
    assert trigger_induction_score(x, pat, torch.zeros_like(kind)).tolist() == [0.0, 0.0]
    assert previous_token_after_trigger_score(x, pat, [7]).tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="do not match"):
        previous_token_after_trigger_score(x, pat[:, :, :-1], [0])


def _unique_argmax_is(row, target):
    """The row's highest value is at ``target`` and nowhere else."""
    best = max(float(v) for v in row)
    return float(row[target]) == best and sum(float(v) == best for v in row) == 1


def ref_memory_recall(model, triggers=None):
    W_E = model.embed.W_E.detach().double()
    W_U = model.W_U.detach().double()
    a0, a1 = model.blocks[0].attn, model.blocks[1].attn
    Q1, K1, V1, O1 = (w.detach().double() for w in (a1.W_Q, a1.W_K, a1.W_V, a1.W_O))
    V0, O0, Q0, K0 = (w.detach().double() for w in (a0.W_V, a0.W_O, a0.W_Q, a0.W_K))
    V = W_E.shape[0]
    out = {"probe_induction_output": max(
        sum(_unique_argmax_is(W_E[k] @ V1[h] @ O1[h] @ W_U, k) for k in range(V)) / V for h in range(V1.shape[0]))}
    best, best_trig = 0.0, 0.0
    for g in range(V0.shape[0]):
        for h in range(Q1.shape[0]):
            hits = []
            for k in range(V):
                q = W_E[k] @ Q1[h]
                scores = [float(q @ (W_E[j] @ V0[g] @ O0[g] @ K1[h])) for j in range(V)]
                hits.append(_unique_argmax_is(scores, k))
            best = max(best, sum(hits) / V)
            if triggers is not None:
                best_trig = max(best_trig, sum(hits[k] for k in triggers) / len(triggers))
    out["probe_induction_key"] = best
    if triggers is not None:
        out["probe_induction_key_triggers"] = best_trig
    P = model.pos_embed.W_pos.detach().double()
    T = P.shape[0]
    out["probe_prev_token"] = max(
        sum(_unique_argmax_is([float((P[t] @ Q0[h]) @ (P[s] @ K0[h])) for s in range(t + 1)], t - 1)
            for t in range(1, T)) / (T - 1) for h in range(Q0.shape[0]))
    return out


def test_memory_recall_probes_match_loops_on_random_and_tied_weights():
    from theorylab.measures.induction import memory_recall_probes
    from theorylab.models import Transformer, TransformerConfig

    cfg = TransformerConfig(d_vocab=12, n_ctx=10, d_model=16, n_layers=2, n_heads=2, d_head=4, attn_only=True,
                            norm="none", positional="learned", bias=False)
    for seed in range(3):
        model = Transformer(cfg, generator=torch.Generator().manual_seed(seed))
        got = memory_recall_probes(model, [1, 4, 7])
        assert got == pytest.approx(ref_memory_recall(model, [1, 4, 7]), abs=1e-12)
    # ties: a zero model scores every candidate equally; no token or position is recalled (the first
    # index of a tie used to count: 1/V of the tokens and 1/(T-1) of the positions)
    with torch.no_grad():
        for prm in model.parameters():
            prm.zero_()
    got = memory_recall_probes(model, [1, 4, 7])
    assert got == ref_memory_recall(model, [1, 4, 7]) == {
        "probe_induction_output": 0.0, "probe_induction_key": 0.0, "probe_induction_key_triggers": 0.0,
        "probe_prev_token": 0.0}
    # a tie between the right answer and a later one is no recall either (order must not matter)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.blocks[1].attn.W_V[:] = 0.0
        model.blocks[1].attn.W_V[:, :12, 0] = 1.0
        model.blocks[1].attn.W_O[:] = 0.0
        model.blocks[1].attn.W_O[:, 0, :12] = 1.0
        model.unembed.W_U[:] = torch.eye(16)[:, :12]  # every token's output: all ones, 12-way tie
    assert memory_recall_probes(model)["probe_induction_output"] == ref_memory_recall(model)[
        "probe_induction_output"] == 0.0


def test_in_context_gain_uses_the_tokens_predictable_from_an_earlier_copy():
    from theorylab.measures.induction import in_context_gain

    # loss on token t (entry 0 unused); the second copy's first token cannot be predicted in context
    P, T = 8, 16
    loss = torch.full((2, T), 0.5)
    loss[:, : P + 1] = 3.0
    assert in_context_gain(loss, P) == pytest.approx(2.5)  # was 3.0 - (3.0 + 7 * 0.5) / 8 = 2.1875
    g = torch.Generator().manual_seed(0)
    for P, copies in [(5, 2), (4, 3), (2, 4)]:
        loss = torch.rand(3, P * copies, generator=g)
        first = [float(loss[b, t]) for b in range(3) for t in range(1, P)]
        later = [float(loss[b, t]) for b in range(3) for t in range(P + 1, P * copies)]
        assert in_context_gain(loss, P) == pytest.approx(sum(first) / len(first) - sum(later) / len(later))
    with pytest.raises(ConfigError, match="period"):
        in_context_gain(torch.zeros(1, 8), 7)
    with pytest.raises(ConfigError, match="period"):
        in_context_gain(torch.zeros(1, 8), 1)


def test_in_context_gain_agrees_with_the_induction_task():
    from theorylab.measures.induction import in_context_gain
    from theorylab.models import Transformer, TransformerConfig
    from theorylab.tasks import make_task
    from theorylab.tasks.induction import InductionConfig

    task = make_task(InductionConfig(vocab=20, period=6, min_period=6, n_test=16), 0)
    batch = task.eval_sets()["test"]
    period = int(batch.extras["period"][0])
    assert bool((batch.extras["period"] == period).all())
    model = Transformer(TransformerConfig(d_vocab=20, n_ctx=batch.tokens.shape[1], d_model=16, n_layers=1,
                                          n_heads=2, d_head=8, attn_only=True),
                        generator=torch.Generator().manual_seed(0))
    logits = model(batch.tokens).double()
    nll = -torch.log_softmax(logits, -1).gather(-1, batch.targets.clamp_min(0)[..., None]).squeeze(-1)
    on_token = torch.zeros_like(nll)
    on_token[:, 1:] = nll[:, :-1]  # loss on token t = loss of the prediction made at t - 1
    assert in_context_gain(on_token, period) == pytest.approx(task.metrics(model, batch)["in_context_gain"],
                                                              rel=1e-9)


def ref_transition(steps, values, direction, window_frac):
    x = [-v for v in values] if direction == "down" else list(values)
    change = x[-1] - x[0]
    if change <= 0:
        return {"step": math.nan, "change": change, "sharpness": 0.0}
    frac = [(v - x[0]) / change for v in x]
    step = next(steps[i] for i in range(len(x)) if all(f >= 0.5 for f in frac[i:]))
    width = window_frac * (steps[-1] - steps[0])
    best = 0.0
    for i in range(len(x)):
        # the window's last evaluation: the latest within s_i + width, at least the next one
        inside = [j for j in range(i, len(x)) if steps[j] <= steps[i] + width]
        j = min(max(max(inside), i + 1), len(x) - 1)
        best = max(best, (x[j] - x[i]) / change)
    return {"step": float(step), "change": change, "sharpness": best}


def test_transition_matches_loop_on_noisy_curves():
    from theorylab.measures.induction import transition

    gen = np.random.default_rng(0)
    for trial in range(40):
        n = int(gen.integers(3, 30))
        steps = np.cumsum(gen.integers(1, 20, n)).astype(float)
        values = np.cumsum(gen.normal(-0.1, 1.0, n))  # noisy, non-monotone, ties when rounded
        values = np.round(values, 0) if trial % 3 == 0 else values
        for direction in ("down", "up"):
            wf = float(gen.uniform(0.05, 0.5))
            got = transition(steps, values, direction=direction, window_frac=wf)
            want = ref_transition(list(steps), list(values), direction, wf)
            assert got["change"] == pytest.approx(want["change"])
            assert got["sharpness"] == pytest.approx(want["sharpness"])
            assert (math.isnan(got["step"]) and math.isnan(want["step"])) or got["step"] == want["step"]
    with pytest.raises(ConfigError, match="finite"):
        transition([0, 1, 2], [1.0, float("nan"), 0.0])
    with pytest.raises(ConfigError, match="increasing"):
        transition([0, 2, 1], [1.0, 0.5, 0.0])


# --------------------------------------------------------------------------- fourier.py


def test_fourier_norms_match_a_dft_loop():
    from theorylab.measures import fourier as fo

    gen = np.random.default_rng(0)
    for p in (3, 7, 13):
        W = gen.normal(size=(p, 5))
        sq = []
        comp = [math.sqrt(sum(W[:, j].sum() ** 2 / p for j in range(5)))]  # constant 1/sqrt(p)
        for k in range(1, (p - 1) // 2 + 1):
            c = [sum(W[x, j] * math.cos(2 * math.pi * k * x / p) for x in range(p)) for j in range(5)]
            s = [sum(W[x, j] * math.sin(2 * math.pi * k * x / p) for x in range(p)) for j in range(5)]
            comp += [math.sqrt(sum(v * v for v in c) * 2 / p), math.sqrt(sum(v * v for v in s) * 2 / p)]
            sq.append((sum(v * v for v in c) + sum(v * v for v in s)) * 2 / p)
        Wt = torch.tensor(W)
        assert fo.component_norms(Wt, p).tolist() == pytest.approx(comp, abs=1e-12)
        assert (fo.frequency_norms(Wt, p) ** 2).tolist() == pytest.approx(sq, abs=1e-12)
    with pytest.raises(TheoryLabError, match="rows"):
        fo.component_norms(torch.zeros(6, 2), 7)


def test_model_norms_read_the_right_axes():
    from theorylab.measures import fourier as fo

    cfg, model = _grokking_model(p=7, d=8)
    p = 7
    W_U = model.W_U.detach().double()
    W_out = model.blocks[-1].mlp.W_out.detach().double()
    # the unembedding and neuron-logit map along the answer axis c (a function of c in Z_p per row)
    assert fo.unembedding_norms(model, p).tolist() == pytest.approx(
        fo.component_norms(W_U[:, :p].T.contiguous(), p).tolist(), abs=1e-12)
    W_L = [[sum(float(W_out[n, i] * W_U[i, c]) for i in range(W_U.shape[0])) for c in range(p)]
           for n in range(W_out.shape[0])]
    assert fo.neuron_logit_norms(model, p).tolist() == pytest.approx(
        fo.component_norms(torch.tensor(W_L).T.contiguous(), p).tolist(), abs=1e-9)
    assert fo.embedding_norms(model, p).tolist() == pytest.approx(
        fo.component_norms(model.embed.W_E[:p].detach().double(), p).tolist(), abs=1e-12)


def _fft_restrict(L, freqs, op):
    """Keep the 2-D DFT coefficients over (a, b) of every function of a + b (or a - b) at the given
    frequencies, and the constant: an independent reference for restricted logits."""
    p = L.shape[0]
    F = np.fft.fft2(L.numpy(), axes=(0, 1))
    keep = np.zeros((p, p), dtype=bool)
    keep[0, 0] = True
    for k in freqs:
        for s in (k, p - k):
            keep[s, s if op == "+" else (p - s) % p] = True
    return torch.tensor(np.fft.ifft2(F * keep[:, :, None], axes=(0, 1)).real)


def test_restricted_and_excluded_logits_match_a_2d_dft():
    from theorylab.measures import fourier as fo

    g = torch.Generator().manual_seed(0)
    p = 11
    L = torch.randn(p, p, p, generator=g, dtype=torch.float64)
    for op in ("+", "-"):
        for freqs in ([], [1], [2, 5], [1, 2, 3, 4, 5]):
            R = _fft_restrict(L, freqs, op)
            assert torch.allclose(fo.restricted_logits(L, freqs, op), R, atol=1e-10)
            # excluded: everything but those frequencies' directions (the constant stays)
            assert torch.allclose(fo.excluded_logits(L, freqs, op), L - R + _fft_restrict(L, [], op), atol=1e-10)


def test_cross_entropy_matches_loop_and_rejects_other_ops():
    from theorylab.measures import fourier as fo

    g = torch.Generator().manual_seed(1)
    p = 5
    L = 3 * torch.randn(p, p, p, generator=g, dtype=torch.float64)
    mask = torch.rand(p, p, generator=g) < 0.5
    for op in ("+", "-"):
        nll = {}
        for a in range(p):
            for b in range(p):
                c = (a + b) % p if op == "+" else (a - b) % p
                z = [float(v) for v in L[a, b]]
                nll[a, b] = math.log(sum(math.exp(v) for v in z)) - z[c]
        assert fo.cross_entropy(L, op, p) == pytest.approx(sum(nll.values()) / p ** 2, rel=1e-12)
        sel = [v for (a, b), v in nll.items() if mask[a, b]]
        assert fo.cross_entropy(L, op, p, mask) == pytest.approx(sum(sel) / len(sel), rel=1e-12)
    with pytest.raises(TheoryLabError, match="op"):
        fo.cross_entropy(L, "*", p)  # was the loss of a - b


def test_gini_and_weight_norm_match_loops():
    from theorylab.measures import fourier as fo

    gen = np.random.default_rng(2)
    for n in (1, 2, 5, 40):
        for c in (gen.exponential(size=n), np.round(gen.uniform(0, 3, n)), np.zeros(n)):
            total = float(c.sum())
            srt = sorted(c)
            want = 0.0 if total == 0 else 1 - 2 * sum(srt[k - 1] / total * (n - k + 0.5) / n for k in range(1, n + 1))
            assert fo.gini(c) == pytest.approx(want, abs=1e-12)
    assert math.isnan(fo.gini([1.0, float("nan")]))  # a NaN norm gives NaN, never a number
    _, model = _grokking_model(p=7, d=8)
    want = sum(float(x) ** 2 for prm in model.parameters() for x in prm.detach().flatten())
    assert fo.weight_norm_sq(model) == pytest.approx(want, rel=1e-9)


def _grokking_model(p=7, d=8, seed=0):
    from theorylab.runs import build_model_for, build_run_config

    cfg = build_run_config("grokking", [f"task.p={p}", f"model.d_model={d}", "model.d_head=4", "model.d_mlp=16"],
                           seed=seed)
    return cfg, build_model_for(cfg)


def test_progress_measures_and_checkpoint_series_match_loops():
    from theorylab.measures import fourier as fo
    from theorylab.tasks import make_task

    cfg, model = _grokking_model(p=7, d=8)
    p, op = 7, cfg.task.op
    task = make_task(cfg.task, cfg.seed)
    train, test = task.pair_split()
    L = fo.all_logits(model, p)
    freqs = [1, 3]

    def ce(logits, pairs):
        tot = 0.0
        for a, b in pairs:
            z = [float(v) for v in logits[a, b]]
            tot += math.log(sum(math.exp(v) for v in z)) - z[(a + b) % p]
        return tot / len(pairs)

    every = [(a, b) for a in range(p) for b in range(p)]
    tr = [(a, b) for a, b in every if train[a, b]]
    te = [(a, b) for a, b in every if test[a, b]]
    m = fo.progress_measures(model, task, freqs)
    assert m["train_loss"] == pytest.approx(ce(L, tr), rel=1e-9)
    assert m["test_loss"] == pytest.approx(ce(L, te), rel=1e-9)
    R = _fft_restrict(L, freqs, op)
    assert m["restricted_loss"] == pytest.approx(ce(R, every), rel=1e-9)  # on every pair
    assert m["excluded_loss"] == pytest.approx(ce(L - R + L.mean(dim=(0, 1), keepdim=True), tr), rel=1e-9)
    for k in freqs:
        Rk = _fft_restrict(L, [k], op)
        assert m["excluded_loss_per_freq"][k] == pytest.approx(ce(L - Rk + L.mean(dim=(0, 1), keepdim=True), tr),
                                                               rel=1e-9)
    # the series: every 2nd checkpoint and always the last; key frequencies from the last
    loads = []

    def load(i):
        def f():
            loads.append(i)
            return _grokking_model(p=7, d=8, seed=i)[1]
        return f

    cps = [(10 * i, load(i)) for i in range(5)]
    series = fo.measure_checkpoints(task, cps, every=3)
    assert series["steps"] == [0, 30, 40]
    final = _grokking_model(p=7, d=8, seed=4)[1]
    assert series["key_frequencies"] == fo.key_frequencies(final, p)
    assert series["freq_norms_final"] == pytest.approx(fo.frequency_norms(final.embed.W_E[:p].detach(), p).tolist())
    assert series["weight_norm_sq"][1] == pytest.approx(fo.weight_norm_sq(_grokking_model(p=7, d=8, seed=3)[1]))
    assert sorted(loads) == [0, 3, 4]  # the last one loaded once


# --------------------------------------------------------------------------- phases.py


def test_first_crossing_matches_loop():
    from theorylab.measures.phases import first_crossing

    gen = np.random.default_rng(3)
    for _ in range(100):
        n = int(gen.integers(1, 12))
        steps = list(np.cumsum(gen.integers(1, 5, n)))
        vals = [float(v) for v in np.round(gen.normal(size=n), 1)]
        for i in gen.choice(n, size=int(gen.integers(0, 3)), replace=True):
            vals[i] = float(gen.choice([math.nan, math.inf, -math.inf]))
        thr, above, start = float(np.round(gen.normal(), 1)), bool(gen.integers(2)), int(gen.integers(0, n + 1))
        want = None
        for i in range(start, n):  # the first finite value at index >= start on the right side (ties count)
            if math.isfinite(vals[i]) and (vals[i] >= thr if above else vals[i] <= thr):
                want = int(steps[i])
                break
        assert first_crossing(steps, vals, thr, above=above, start=start) == want


def ref_detect_phases(steps, train_acc, test_loss, thr=0.99, start_frac=0.1, end_frac=0.9):
    """The module docstring's rules as loops.  NaN and infinite test losses are not evaluations of the loss
    (skipped, like first_crossing skips them); a test loss of exactly 0 has collapsed all the way (f = inf)."""
    n = len(steps)
    t_mem = next((steps[i] for i in range(n) if math.isfinite(train_acc[i]) and train_acc[i] >= thr), None)
    if t_mem is None:
        return (None, None, None)
    i_mem = steps.index(t_mem)
    tail = [i for i in range(i_mem, n) if math.isfinite(test_loss[i])]
    pos = [i for i in tail if test_loss[i] > 0]
    if not pos:
        return (t_mem, None, None)
    hi = max(math.log(test_loss[i]) for i in pos)
    i_peak = next(i for i in pos if math.log(test_loss[i]) == hi)
    lo = math.log(test_loss[pos[-1]])
    if not hi - lo > math.log(10):
        return (t_mem, None, None)

    def f(i):
        return math.inf if test_loss[i] == 0 else (hi - math.log(test_loss[i])) / (hi - lo)

    def boundary(frac):
        return next((steps[i] for i in tail if i >= i_peak and all(f(j) >= frac for j in tail if j >= i)), None)

    return (t_mem, boundary(start_frac), boundary(end_frac))


def _grokking_curves(gen, n):
    steps = list(range(0, 10 * n, 10))
    acc = list(np.clip(np.linspace(0.2, 1.3, n) + gen.normal(0, 0.1, n), 0, 1))
    up = np.linspace(0, 1, n)
    log_loss = 2 * np.sin(np.pi * up) - 12 * np.clip(up - 0.5, 0, None) + gen.normal(0, 0.8, n)
    return steps, acc, [float(v) for v in np.exp(log_loss)]


def test_detect_phases_matches_loop_on_noisy_curves():
    from theorylab.measures.phases import detect_phases

    gen = np.random.default_rng(4)
    for trial in range(60):
        steps, acc, loss = _grokking_curves(gen, int(gen.integers(3, 40)))
        if trial % 3 == 1:  # evaluations whose loss is missing (NaN) or infinite
            for i in gen.choice(len(loss), size=2):
                loss[i] = float(gen.choice([math.nan, math.inf]))
        if trial % 3 == 2:  # the collapse ends in an exact zero (a float32 loss that underflowed)
            loss[-1] = 0.0
            if len(loss) > 4:
                loss[-3] = 0.0
        got = detect_phases(steps, acc, loss).steps
        assert got == ref_detect_phases(steps, acc, loss), (steps, acc, loss)


def test_detect_phases_after_a_collapse_to_zero_loss():
    # the cleanup ends in an exactly zero test loss: the boundaries are where the loss got there, not None
    from theorylab.measures.phases import detect_phases

    steps = list(range(0, 110, 10))
    acc = [0.5, 1.0] + [1.0] * 9
    loss = [4.0, 5.0, 6.0, 6.0, 5.0, 1.0, 0.1, 1e-3, 1e-5, 0.0, 0.0]
    assert detect_phases(steps, acc, loss).steps == (10, 50, 80)  # was (10, None, None)
    # and a NaN evaluation in the middle neither ends nor breaks the collapse
    loss = [4.0, 5.0, 6.0, 6.0, 5.0, 1.0, float("nan"), 1e-3, 1e-5, 1e-6, 1e-6]
    assert detect_phases(steps, acc, loss).steps == (10, 50, 90)  # was (10, 70, 90)
    with pytest.raises(TheoryLabError, match="negative"):
        detect_phases(steps, acc, [-1.0] + loss[1:])
    with pytest.raises(TheoryLabError, match="increasing"):
        detect_phases(steps[::-1], acc, loss)


# --------------------------------------------------------------------------- sensitivity.py


def test_loglog_slope_matches_scipy_linregress():
    from scipy import stats

    from theorylab.measures.sensitivity import loglog_slope

    gen = np.random.default_rng(5)
    for m in (3, 4, 7):
        ns = np.sort(gen.choice(np.arange(2, 500), size=m, replace=False))
        ys = 3.0 * ns ** -1.2 * np.exp(gen.normal(0, 0.3, m))
        r = stats.linregress(np.log(ns), np.log(ys))
        half = stats.t.ppf(0.975, m - 2) * r.stderr
        got = loglog_slope(ns, ys)
        assert (got.slope, got.lo, got.hi, got.intercept) == pytest.approx(
            (r.slope, r.slope - half, r.slope + half, r.intercept), rel=1e-9)
    two = loglog_slope([4, 8], [1.0, 0.25])
    assert two.slope == pytest.approx(-2.0) and (two.lo, two.hi) == (-math.inf, math.inf)
    for ns, ys in (([1, 2, 3], [1.0, 0.0, 1.0]), ([0, 2, 3], [1.0, 1.0, 1.0]), ([2, 2, 2], [1.0, 2.0, 3.0]),
                   ([2, 4], [1.0, 2.0, 3.0]), ([2, 4, float("nan")], [1.0, 2.0, 3.0])):
        with pytest.raises(ConfigError):
            loglog_slope(ns, ys)


def _recording(fn, seen):
    def out(bits):
        seen.append(bits.clone())
        return fn(bits)
    return out


def test_per_bit_and_average_sensitivity_match_loops():
    from theorylab.measures.sensitivity import average_sensitivity, per_bit_sensitivity

    w = torch.linspace(-1, 2, 9, dtype=torch.float64)

    def output(b):  # a real function with interactions between the bits
        return torch.tanh(b.double() @ w) + b[:, 0] * b[:, -1]

    def decide(b):
        return (output(b) > 0.5).long()

    for n, samples, positions in ((9, 6, 4), (9, 5, 9), (9, 3, 20)):
        seen = []
        got = per_bit_sensitivity(_recording(output, seen), n, samples, positions, seed=7)
        flipped, bits = seen  # the flipped copies first, then the strings
        k = min(positions, n)
        assert flipped.shape == (samples * k, n) and bits.shape == (samples, n)
        deltas = []
        for s in range(samples):
            flips = flipped[s * k:(s + 1) * k]
            pos = [int(torch.nonzero(f != bits[s]).flatten()[0]) for f in flips]
            assert all(int((f != bits[s]).sum()) == 1 for f in flips) and len(set(pos)) == k  # distinct bits
            deltas += [abs(float(output(f[None])[0] - output(bits[s][None])[0])) for f in flips]
        assert got == pytest.approx(sum(deltas) / len(deltas), rel=1e-12)

        seen = []
        got = average_sensitivity(_recording(decide, seen), n, samples, seed=7, max_positions=positions)
        flipped, bits = seen
        changed = [[int(decide(f[None])[0] != decide(bits[s][None])[0]) for f in flipped[s * k:(s + 1) * k]]
                   for s in range(samples)]
        assert got == pytest.approx(n * sum(sum(c) / k for c in changed) / samples, rel=1e-12)


def test_sensitivity_slope_of_a_zero_sensitivity_is_undefined():
    from theorylab.measures.sensitivity import loglog_slope, sensitivity_slope

    curve = {"ns": [8, 16, 32, 64], "sens": [0.5, 0.25, 0.125, 0.0625]}
    assert sensitivity_slope(curve) == pytest.approx(loglog_slope(curve["ns"], curve["sens"]).slope)
    # log 0 is undefined: a zero (e.g. an output that underflowed) used to be read as 1e-300, a slope of -299
    assert math.isnan(sensitivity_slope({"ns": [8, 16, 32, 64], "sens": [0.5, 0.25, 0.125, 0.0]}))


def test_construction_curves_are_the_measures_at_each_n():
    from theorylab.constructions import parity
    from theorylab.constructions.chiang import decision, evaluate, logit_gap
    from theorylab.measures.sensitivity import average_sensitivity, construction_curves, per_bit_sensitivity

    m = parity()
    ns, samples, positions, seed = [4, 8], 8, 3, 2
    got = construction_curves(m, "parity", ns, samples, positions, seed, acc_samples=16)
    assert got["ns"] == ns
    for i, n in enumerate(ns):
        r = evaluate(m, "parity", n, 16, seed=seed * 7919 + n)
        assert (got["ce"][i], got["acc"][i]) == (r["cross_entropy_bits"], r["accuracy"])
        assert got["sens"][i] == per_bit_sensitivity(lambda b: logit_gap(m, "parity", b), n, samples, positions,
                                                     seed * 104729 + n)
        assert got["avg_sens"][i] == average_sensitivity(lambda b: decision(m, "parity", b), n, max(2, samples // 4),
                                                         seed * 31 + n, max_positions=positions * 4)


# --------------------------------------------------------------------------- icl.py


def test_same_label_attention_matches_loop():
    from theorylab.measures.icl import same_label_attention

    g = torch.Generator().manual_seed(6)
    B, H, L = 5, 3, 6
    pat = random_pattern(B, H, L + 1, g, causal=False)
    labels = torch.randint(0, 3, (B, L), generator=g)  # three classes: ties of several same-label demos
    targets = torch.randint(0, 3, (B,), generator=g)
    want = sum(sum(float(pat[b, h, L, j]) for h in range(H) for j in range(L) if labels[b, j] == targets[b]) / H
               for b in range(B)) / B
    assert same_label_attention(pat, labels, targets) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ConfigError, match="targets"):
        same_label_attention(pat, labels, targets[:-1])


def test_concept_weight_alignment_matches_loops():
    from theorylab.measures.icl import concept_weight_alignment
    from theorylab.runs import build_model_for, build_run_config
    from theorylab.tasks import make_task

    cfg = build_run_config("concepts", ["task.d=16", "task.K=3", "model.d_model=12", "model.d_mlp=10"], seed=0)
    model, task = build_model_for(cfg), make_task(cfg.task, 0)
    dirs = task.directions()
    w = dict(model.named_parameters())
    eff = (w["embed.W_in"] @ w["blocks.0.mlp.W_in"]).detach().double()  # [2 d, d_mlp]
    d = cfg.task.d

    def top(vectors, half):
        rows = eff[:d] if half == "word" else eff[d:]
        return max(abs(sum(float(v[i]) * float(rows[i, n]) for i in range(d))) for v in vectors
                   for n in range(rows.shape[1]))

    got = concept_weight_alignment(model, dirs)
    assert got["w_concept"] == pytest.approx(max(top(dirs["word_concept"], "word"),
                                                 top(dirs["label_concept"], "label")), rel=1e-9)
    assert got["w_complement"] == pytest.approx(max(top(dirs["word_shared"], "word"),
                                                    top(dirs["label_shared"], "label")), rel=1e-9)
    assert got["w_noise"] == pytest.approx(max(top(dirs["noise"], "word"), top(dirs["noise"], "label")), rel=1e-9)
    # the Frobenius norm of the MLP's weights (W_in and W_out together), not the sum of their two norms
    sq = sum(float(x) ** 2 for k in ("blocks.0.mlp.W_in", "blocks.0.mlp.W_out") for x in w[k].detach().flatten())
    assert got["mlp_norm"] == pytest.approx(math.sqrt(sq), rel=1e-6)


def ref_exponential_rate(steps, errors, start_below=0.45, floor=0.0):
    pts = [(s, e) for s, e in zip(steps, errors) if math.isfinite(e)]  # missing evaluations are skipped
    i0 = next((i for i, (_, e) in enumerate(pts) if e < start_below), None)
    if i0 is None:
        return {"rate": math.nan, "r2": math.nan, "n": 0.0}
    end = next((i for i in range(i0, len(pts)) if pts[i][1] <= floor or pts[i][1] <= 0), len(pts))
    xs, ys = [s for s, _ in pts[i0:end]], [math.log(e) for _, e in pts[i0:end]]
    n = len(xs)
    if n < 3:
        return {"rate": math.nan, "r2": math.nan, "n": float(n)}
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    ss = sum((y - my) ** 2 for y in ys)
    res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return {"rate": -b, "r2": 1 - res / ss if ss > 0 else math.nan, "n": float(n)}


def test_exponential_rate_matches_loop():
    from theorylab.measures.icl import exponential_rate

    gen = np.random.default_rng(7)
    for trial in range(40):
        n = int(gen.integers(2, 30))
        steps = list(np.cumsum(gen.integers(1, 30, n)).astype(float))
        errs = list(np.clip(0.6 * np.exp(-0.01 * np.array(steps)) * np.exp(gen.normal(0, 0.2, n)), 0, 1))
        if trial % 4 == 1:
            errs = [round(e, 2) for e in errs]  # ties, and zeros that end the stretch
        if trial % 4 == 2 and n > 3:
            errs[int(gen.integers(0, n))] = math.nan  # a missing evaluation
        floor = float(gen.choice([0.0, 0.01]))
        got = exponential_rate(steps, errs, floor=floor)
        want = ref_exponential_rate(steps, errs, floor=floor)
        for k in ("rate", "r2", "n"):
            assert (math.isnan(got[k]) and math.isnan(want[k])) or got[k] == pytest.approx(want[k], rel=1e-9,
                                                                                           abs=1e-12), (k, errs)


# --------------------------------------------------------------------------- planning.py


def _planning_model(norm="layernorm", attn_only=False, seed=0):
    from theorylab.models import Transformer, TransformerConfig

    cfg = TransformerConfig(d_vocab=9, d_vocab_out=8, n_ctx=6, d_model=8, n_layers=1, n_heads=2, d_head=3, d_mlp=5,
                            norm=norm, attn_only=attn_only, bias=True, init_std=0.5)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # biases and norm gains away from their zero / one init
        for name, prm in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("b_V", "b_O", "b_in", "b_out", "b", "w", "b_U"):
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.5 + (1.0 if name.endswith(".w") else 0.0))
    return model


def _ln(x, mod):
    if mod.kind == "none":
        return x
    xc = x - x.mean() if mod.kind == "layernorm" else x
    y = xc / torch.sqrt((xc ** 2).mean() + mod.eps)
    return y * mod.w + (mod.b if mod.kind == "layernorm" else 0.0)


def ref_readouts(model, n, norms):
    blk = model.blocks[0]
    ident = lambda x, m: x  # noqa: E731
    ln = _ln if norms else ident

    def ffn(x):
        if blk.cfg.attn_only:
            return torch.zeros_like(x)
        h = ln(x, blk.ln2) @ blk.mlp.W_in + blk.mlp.b_in
        return torch.nn.functional.gelu(h) @ blk.mlp.W_out + blk.mlp.b_out

    def unembed(x):
        if norms and hasattr(model, "ln_final"):
            x = _ln(x, model.ln_final)
        return x @ model.W_U[:, :n]

    mlp, val = [], []
    for i in range(n):
        e = model.embed.W_E[i]
        mlp.append(unembed(e + ffn(e)))
        h = ln(e, blk.ln1)
        v = sum((h @ blk.attn.W_V[hd] + blk.attn.b_V[hd]) @ blk.attn.W_O[hd] for hd in range(blk.attn.W_V.shape[0]))
        v = v + blk.attn.b_O
        val.append(unembed(v + ffn(v)))
    return torch.stack(mlp).double().detach(), torch.stack(val).double().detach()


@pytest.mark.parametrize("norm,attn_only", [("layernorm", False), ("rmsnorm", False), ("none", False),
                                            ("layernorm", True)])
def test_readouts_match_loops(norm, attn_only):
    from theorylab.measures.planning import mlp_readout, value_readout

    model = _planning_model(norm, attn_only)
    for norms in (True, False):
        wm, wv = ref_readouts(model, 7, norms)
        assert torch.allclose(mlp_readout(model, 7, norms), wm, atol=1e-5)
        assert torch.allclose(value_readout(model, 7, norms), wv, atol=1e-5)


def ref_auc(scores, inside, outside):
    wins = total = 0.0
    for r in range(scores.shape[0]):
        for i in range(scores.shape[1]):
            for j in range(scores.shape[1]):
                if inside[r, i] and outside[r, j]:
                    total += 1
                    wins += 1.0 if scores[r, i] > scores[r, j] else 0.5 if scores[r, i] == scores[r, j] else 0.0
    return wins / total if total else math.nan


def ref_gap(scores, inside, outside):
    gaps = []
    for r in range(scores.shape[0]):
        a = [scores[r, i] for i in range(scores.shape[1]) if inside[r, i]]
        b = [scores[r, i] for i in range(scores.shape[1]) if outside[r, i]]
        if a and b:
            gaps.append(sum(a) / len(a) - sum(b) / len(b))
    return sum(gaps) / len(gaps) if gaps else math.nan


def test_within_row_auc_and_gap_match_loops():
    from theorylab.measures.planning import mean_gap, within_row_auc

    gen = np.random.default_rng(8)
    for trial in range(30):
        r, c = int(gen.integers(1, 7)), int(gen.integers(2, 9))
        scores = gen.normal(size=(r, c))
        if trial % 2:
            scores = np.round(scores)  # many ties
        inside = gen.random((r, c)) < 0.4
        outside = ~inside & (gen.random((r, c)) < 0.8)
        for fn, ref in ((within_row_auc, ref_auc), (mean_gap, ref_gap)):
            got, want = fn(scores, inside, outside), ref(scores, inside, outside)
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12)


def _fake_graph_task(n, gen):
    from types import SimpleNamespace

    adj = gen.random((n, n)) < 0.3
    obs_adj = adj & (gen.random((n, n)) < 0.7)
    true_reach = adj | (gen.random((n, n)) < 0.3)
    obs_reach = true_reach & (gen.random((n, n)) < 0.6)
    return SimpleNamespace(n_nodes=n, adj=adj, obs_adj=obs_adj, true_reach=true_reach, obs_reach=obs_reach)


def test_readout_scores_match_loops():
    from theorylab.measures.planning import mlp_readout, readout_scores, value_readout

    model = _planning_model()
    n = 7
    task = _fake_graph_task(n, np.random.default_rng(9))
    got = readout_scores(model, task)
    wm, wv = mlp_readout(model, n).numpy(), value_readout(model, n).numpy()
    off = ~np.eye(n, dtype=bool)
    adj, oadj = task.adj & off, task.obs_adj & off
    ro, rt = task.obs_reach & off, task.true_reach & off
    unobs = rt & ~ro
    want = {"adj_auc": ref_auc(wm, adj, off & ~adj), "adj_gap": ref_gap(wm, adj, off & ~adj),
            "adj_obs_auc": ref_auc(wm, oadj, off & ~oadj), "value_auc_obs": ref_auc(wv, ro, off & ~ro),
            "value_auc_true": ref_auc(wv, rt, off & ~rt), "value_auc_unobs": ref_auc(wv, unobs, off & ~rt),
            "value_auc_obs_vs_unobs": ref_auc(wv, ro, unobs), "value_gap_obs": ref_gap(wv, ro, off & ~ro),
            "value_gap_true": ref_gap(wv, rt, off & ~rt), "value_gap_unobs": ref_gap(wv, unobs, off & ~rt)}
    want["value_auc_obs_minus_true"] = want["value_auc_obs"] - want["value_auc_true"]
    assert got == pytest.approx(want, rel=1e-12, nan_ok=True)


def test_path_accuracy_by_label_matches_loop():
    from types import SimpleNamespace

    from theorylab.measures.planning import path_accuracy_by_label

    gen = np.random.default_rng(10)
    m = 40
    pairs = gen.integers(0, 9, (m, 2))
    degree = gen.choice([0, 1, 2, 3], size=m, p=[0.3, 0.3, 0.4, 0.0])  # no degree-3 pair: NaN
    calls = []

    def path_accuracy(model, prs, temperature, g):
        calls.append(temperature)
        return torch.rand(len(prs), generator=g).numpy() < 0.6

    task = SimpleNamespace(test_pairs=pairs, test_degree=degree, train_pairs=pairs[:5], train_degree=degree[:5],
                           path_accuracy=path_accuracy)
    got = path_accuracy_by_label(None, task, "test", temperature=1.0, samples=3, seed=4)
    assert calls == [1.0, 1.0, 1.0]
    # replay the same three draws
    from theorylab.tasks.base import torch_generator

    g = torch_generator(4, 0x9A7)
    ok = sum((torch.rand(m, generator=g).numpy() < 0.6).astype(float) for _ in range(3)) / 3

    def mean(sel):
        vals = [ok[i] for i in range(m) if sel(degree[i])]
        return sum(vals) / len(vals) if vals else math.nan

    want = {"accuracy": mean(lambda d: True), "accuracy_observed": mean(lambda d: d <= 1),
            "accuracy_transitive": mean(lambda d: d >= 2), "n_pairs": float(m),
            "n_observed": float(sum(d <= 1 for d in degree)), "n_transitive": float(sum(d >= 2 for d in degree))}
    for d in range(4):
        want[f"accuracy_degree{d}"] = mean(lambda x, d=d: x == d if d < 3 else x >= 3)
        want[f"n_degree{d}"] = float(sum((x == d if d < 3 else x >= 3) for x in degree))
    assert got == pytest.approx(want, rel=1e-12, nan_ok=True)
    calls.clear()
    path_accuracy_by_label(None, task, "train", temperature=0.0, samples=5)
    assert calls == [0.0]  # greedy: one pass


def test_analyze_and_summary_table_compose_the_measures():
    from theorylab.measures.planning import analyze, path_accuracy_by_label, readout_scores, summary_table

    gen = np.random.default_rng(11)
    task = _fake_graph_task(7, gen)
    task.test_pairs, task.test_degree = gen.integers(0, 7, (10, 2)), gen.integers(0, 4, 10)
    task.path_accuracy = lambda model, prs, temperature, g: torch.rand(len(prs), generator=g).numpy() < 0.5
    model = _planning_model()
    got = analyze(model, task, temperature=1.0, samples=2, seed=3)
    want = {f"test_{k}": v for k, v in path_accuracy_by_label(model, task, "test", 1.0, 2, 3).items()}
    want.update(readout_scores(model, task))
    assert got == pytest.approx(want, nan_ok=True)
    lines = summary_table({"a": 0.123456, "b": "x"}).splitlines()
    assert lines == [f"{'a':28s} 0.1235", f"{'b':28s} x"]
