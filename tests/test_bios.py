"""The bioS synthetic biographies (task ``bios``, Allen-Zhu & Li, Part 3.1): the world, the vocabulary, the
exact information content, the text of every variant, QA rows, the stages, the evaluation, a short training
(memorising biographies, then QA fine-tuning from the pretrained parent) and bad configs."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.models import TransformerConfig, build_model
from theorylab.runs import build_run_config, train
from theorylab.tasks import IGNORE, build_task_config, make_task
from theorylab.tasks.bios import (
    ATTRIBUTES,
    MANIPULATION_WORDS,
    MONTHS,
    QA_KINDS,
    QUESTIONS,
    TEMPLATE_WORDS,
    TEMPLATES,
    BiosTask,
    attribute_bits,
    exposures,
    make_world,
    name_bits,
)

SMALL = dict(n_people=40, n_first=5, n_middle=5, n_last=6, n_years=7, n_cities=9, n_universities=8, n_majors=6,
             n_employers=11, n_eval=16)


def _cfg(**kw):
    return build_task_config({"name": "bios", **kw})


def _task(seed: int = 0, **kw) -> BiosTask:
    return make_task(_cfg(**{**SMALL, **kw}), seed)


def _model(cfg, seed: int = 0):
    return build_model(TransformerConfig(**{**cfg.model_defaults(), "d_model": 16, "n_layers": 1, "n_heads": 2,
                                            "d_mlp": 32}), seed=seed)


def _sentences(task: BiosTask, person: int, index: int = 0) -> list[tuple[list[str], list[int]]]:
    """A biography's sentences as (words, the attribute of each word's value or -1), split after each '.'."""
    ids, tags = task.biography(person, index)
    out, words, marks = [], [], []
    for i, t in zip(ids, tags):
        words.append(task.vocab.words[i])
        marks.append(t)
        if words[-1] == ".":
            out.append((words, marks))
            words, marks = [], []
    assert not words  # nothing after the last sentence
    return out


def _check_facts(task: BiosTask, person: int, sentences) -> list[int]:
    """Every sentence states exactly one attribute, with the world's values; returns the attributes in order."""
    facts = task.facts(person)
    order = []
    for words, marks in sentences:
        attrs = {m for m in marks if m >= 0}
        assert len(attrs) == 1, words
        a = attrs.pop()
        order.append(a)
        stated = sorted(task.vocab.index[w] for w, m in zip(words, marks) if m == a)
        want = sorted(t for t in facts[ATTRIBUTES[a]] if task.vocab.words[t] != ",")
        assert stated == want, (words, ATTRIBUTES[a])
    assert sorted(order) == list(range(6))
    return order


# --------------------------------------------------------------------------- the world


def test_the_world_has_n_people_with_unique_names_inside_the_pools():
    task = _task(3)
    w = task.world
    assert len(w) == 40 and w.templates.shape == w.orders.shape == (40, 1, 6)
    names = set(zip(w.first.tolist(), w.middle.tolist(), w.last.tolist()))
    assert len(names) == 40
    for arr, n in ((w.first, 5), (w.middle, 5), (w.last, 6), (w.year, 7), (w.month, 12), (w.day, 28),
                   (w.birth_city, 9), (w.university, 8), (w.major, 6), (w.employer, 11), (w.employer_city, 9)):
        assert arr.dtype == np.int64 and arr.min() >= 0 and arr.max() < n
    assert np.array_equal(w.company_city, w.employer_city[w.employer])  # the employer decides the company city
    assert w.gender.tolist() == [i % 2 for i in range(40)]
    assert len(w.p_train) == len(w.p_test) == 20
    assert sorted(np.concatenate([w.p_train, w.p_test]).tolist()) == list(range(40))
    # all 150 triples: every name used once
    full = _task(0, n_people=150)
    assert len(set(zip(full.world.first.tolist(), full.world.middle.tolist(), full.world.last.tolist()))) == 150
    # uniform attributes: the birth months of a large world
    big = make_world(_cfg(n_people=12_000), 0)
    assert np.bincount(big.month, minlength=12).min() > 850  # expected 1000 each, sd 30


def test_the_world_is_a_function_of_its_seed():
    a, b, c = _task(0).world, _task(0).world, _task(1).world
    for f in ("first", "middle", "last", "year", "birth_city", "employer", "templates", "p_train"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.first * 100 + a.last, c.first * 100 + c.last)
    assert not np.array_equal(a.birth_city, c.birth_city) and not np.array_equal(a.p_train, c.p_train)
    # world_seed overrides the run seed: runs of other seeds share the world (their batches still differ)
    x, y = _task(0, world_seed=7), _task(1, world_seed=7)
    assert np.array_equal(x.world.university, y.world.university) and np.array_equal(x.world.p_test, y.world.p_test)
    assert not torch.equal(x.train_batch(0, 16).tokens, y.train_batch(0, 16).tokens)
    # the variants redraw the biographies, not the people
    m = _task(0, multi=5, permute=True)
    for f in ("first", "year", "major", "company_city", "p_train"):
        assert np.array_equal(getattr(a, f), getattr(m.world, f))


# --------------------------------------------------------------------------- tokens and bits


def test_vocabulary_and_model_defaults():
    task = _task(0)
    v, cfg = task.vocab, task.cfg
    d = cfg.model_defaults()
    assert d == {"d_vocab": len(v), "d_vocab_out": len(v) - 1, "n_ctx": d["n_ctx"], "pad_token_id": len(v) - 1}
    assert v.words[v.pad] == "<pad>" and v.words[:2] == ["<bos>", "<eos>"]
    ids = [v.first0 + 3, v.middle0, v.last0 + 5, v.year0, v.month0 + 1, v.day0]
    assert task.decode(ids) == "F3 M0 L5 1900 February 1"
    assert task.decode(v.encode("he was born in City8 .")) == "he was born in City8 ."
    # one vocabulary and one context length for every stage and for permute/multi (a QA child keeps its parent's
    # model); fullname lengthens the rows
    for kw in (dict(stage="qa"), dict(stage="mixed"), dict(multi=3, permute=True)):
        assert _cfg(**SMALL, **kw).model_defaults() == d
    full = _cfg(**SMALL, fullname=True).model_defaults()
    assert full["d_vocab"] == d["d_vocab"] and full["n_ctx"] > d["n_ctx"]
    # the paper's pools
    pools = 400 + 400 + 1000 + 200 + 12 + 28 + 200 + 300 + 100 + 263
    assert _cfg().model_defaults()["d_vocab"] == 3 + len(TEMPLATE_WORDS) + pools
    # every row fits, and the longest one fills n_ctx + 1 tokens
    for kw in (dict(), dict(permute=True, multi=2), dict(fullname=True, permute=True)):
        t = _task(0, n_people=150, **kw)
        b = t.bio_rows(np.arange(150), np.zeros(150, dtype=np.int64))
        lengths = (b.targets != IGNORE).sum(1) + 1
        assert b.tokens.shape[1] == t.cfg.model_defaults()["n_ctx"] and int(lengths.max()) <= b.tokens.shape[1] + 1


def test_exact_bits_of_the_world():
    assert attribute_bits(_cfg()) == pytest.approx(46.59, abs=0.01)  # SETUPS 5.3
    assert attribute_bits(_cfg()) == pytest.approx(math.log2(200 * 12 * 28 * 200 * 300 * 100 * 263), rel=1e-12)
    assert name_bits(_cfg(), 100_000) == pytest.approx(1.21e6, rel=0.005)
    for kw, n in ((dict(n_first=3, n_middle=4, n_last=5), 17), (dict(n_first=20, n_middle=30, n_last=40), 900),
                  (dict(n_first=400, n_middle=400, n_last=1000), 3000)):
        cfg = _cfg(**kw, n_people=n)
        m = kw["n_first"] * kw["n_middle"] * kw["n_last"]
        assert name_bits(cfg) == pytest.approx(math.log2(math.comb(m, n)), rel=1e-9)  # big-integer binomial
    assert name_bits(_cfg(n_first=2, n_middle=1, n_last=1, n_people=2)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="name triples"):
        name_bits(_cfg(), 200_000_000)


def test_exposures():
    cfg = _cfg(n_people=1000, batch=50)
    assert exposures(cfg, 2000) == 100.0 and exposures(cfg, 2000, 25) == 50.0
    assert exposures(_cfg(n_people=1000, stage="mixed", qa_fraction=0.8), 1000, 100) == pytest.approx(20.0)
    assert exposures(_cfg(stage="qa"), 1000, 100) == 0.0
    with pytest.raises(ConfigError, match="exposures"):
        exposures(cfg, -1)


# --------------------------------------------------------------------------- the text


def test_single_biography_text():
    task = _task(0)
    v = task.vocab
    for person in (0, 1, 7):
        sentences = _sentences(task, person)
        assert len(sentences) == 6
        name = task.decode(task.facts(person)["name"]).split()
        first = sentences[0][0]
        assert first[:3] == name  # the first sentence names the person in full
        assert _check_facts(task, person, sentences) == list(range(6))  # the fixed order
        pron, poss = ("he", "his") if person % 2 == 0 else ("she", "her")
        for words, _ in sentences[1:]:
            assert words[0] in (pron, poss) and not set(name) & set(words)
    # read as text: the month by name, the year in full
    words = task.decode(task.biography(2)[0]).split()
    assert v.words[v.month0 + int(task.world.month[2])] in words and str(1900 + int(task.world.year[2])) in words


def test_multi5_biographies_differ_and_keep_the_facts():
    task = _task(0, multi=5)
    for person in range(6):
        bios = [tuple(task.biography(person, j)[0]) for j in range(5)]
        assert len(set(bios)) == 5
        for j in range(5):
            assert _check_facts(task, person, _sentences(task, person, j)) == list(range(6))
    with pytest.raises(ConfigError, match="biographies must lie"):
        task.bio_rows(np.array([0]), np.array([5]))


def test_permute_shuffles_the_sentences_and_keeps_the_facts():
    task = _task(0, permute=True, multi=3)
    orders = set()
    for person in range(10):
        name = task.decode(task.facts(person)["name"]).split()
        for j in range(3):
            sentences = _sentences(task, person, j)
            order = _check_facts(task, person, sentences)
            assert order == task.world.orders[person, j].tolist()
            orders.add(tuple(order))
            assert sentences[0][0][:3] == name  # the name is in the first sentence of the shuffled order
            assert all(not set(name) & set(words) for words, _ in sentences[1:])
    assert len(orders) > 20  # 30 biographies, 720 orders
    single = _task(0, multi=3)
    assert set(map(tuple, single.world.orders.reshape(-1, 6).tolist())) == {tuple(range(6))}


def test_fullname_names_the_person_in_every_sentence():
    for kw in (dict(fullname=True), dict(fullname=True, permute=True, multi=5)):
        task = _task(0, **kw)
        for person in range(4):
            name = task.decode(task.facts(person)["name"]).split()
            for j in range(task.cfg.multi):
                sentences = _sentences(task, person, j)
                _check_facts(task, person, sentences)
                for words, _ in sentences:
                    assert words[:3] == name and not {"he", "she", "his", "her"} & set(words)


def test_templates_are_our_own_and_at_least_five_per_attribute():
    assert set(TEMPLATES) == set(QUESTIONS) == set(ATTRIBUTES)
    assert all(len(TEMPLATES[a]) >= 5 and len(set(TEMPLATES[a])) == len(TEMPLATES[a]) for a in ATTRIBUTES)
    task = _task(0, multi=30)
    used = {a: set(task.world.templates[:, :, i].ravel().tolist()) for i, a in enumerate(ATTRIBUTES)}
    assert all(used[a] == set(range(len(TEMPLATES[a]))) for a in ATTRIBUTES)  # each template is drawn


# --------------------------------------------------------------------------- rows


def test_qa_rows_answer_with_the_worlds_attributes_and_take_loss_only_on_the_answer():
    task = _task(0)
    people = np.array([0, 3, 3, 5, 8, 11])
    attrs = np.arange(6)
    b = task.qa_rows(people, attrs)
    assert b.tokens.shape == b.targets.shape and b.tokens.shape[1] == task.qa_width
    for r, (p, a) in enumerate(zip(people, attrs)):
        known = b.targets[r] != IGNORE
        answer = b.targets[r][known].tolist()
        assert answer == task.facts(int(p))[ATTRIBUTES[a]] + [task.vocab.eos]  # the answer, then <eos>
        assert len(answer) == (5 if a == 0 else 2)
        question = task.decode(b.tokens[r])
        assert question.startswith("<bos> ") and task.decode(task.facts(int(p))["name"]) in question
        first = int(known.nonzero()[0])
        assert task.vocab.words[int(b.tokens[r, first])] == "?"  # the loss starts after the question mark
        assert bool((b.extras["value_attr"][r][known] == torch.tensor([a] * (len(answer) - 1) + [-1])).all())
    assert task.decode(task.qa_rows(np.array([0]), np.array([1])).tokens[0]).startswith("<bos> where was")
    with pytest.raises(ConfigError, match="attributes must lie"):
        task.qa_rows(np.array([0]), np.array([6]))
    with pytest.raises(ConfigError, match="people must lie"):
        task.qa_rows(np.array([40]), np.array([0]))


def test_bio_rows_take_loss_on_every_token_after_bos():
    task = _task(0, multi=2, permute=True)
    b = task.bio_rows(np.arange(10), np.array([0, 1] * 5))
    known = b.targets != IGNORE
    assert bool((b.tokens[:, 0] == task.vocab.bos).all())
    assert bool(((b.targets == task.vocab.eos) & known).sum(1).eq(1).all())
    for r in range(10):
        n = int(known[r].sum())
        assert bool(known[r, :n].all()) and not bool(known[r, n:].any())  # left-aligned, padding ignored
        assert torch.equal(b.tokens[r, 1:n], b.targets[r, :n - 1])
        assert int(b.tokens[r, n]) == task.vocab.eos  # read, its target ignored
        assert bool((b.tokens[r, n + 1:] == task.vocab.pad).all())


def test_stages_draw_the_right_rows():
    qa = _task(0, stage="qa")
    b = qa.train_batch(0, 500)
    assert b.tokens.shape[1] == qa.qa_width and bool((b.extras["attribute"] >= 0).all())
    assert set(b.extras["person"].tolist()) <= set(qa.world.p_train.tolist())
    assert len(set(b.extras["person"].tolist())) == 20  # all of p_train, none of p_test
    mixed = _task(0, stage="mixed")
    rows = [mixed.train_batch(s, 500) for s in range(8)]
    is_qa = torch.cat([r.extras["attribute"] >= 0 for r in rows])
    assert float(is_qa.double().mean()) == pytest.approx(0.8, abs=0.03)  # 4000 rows: sd 0.006
    people = torch.cat([r.extras["person"] for r in rows])
    assert set(people[is_qa].tolist()) <= set(mixed.world.p_train.tolist())
    assert set(people[~is_qa].tolist()) & set(mixed.world.p_test.tolist())  # biographies of everyone
    for r in rows[:2]:
        bio = r.extras["attribute"] < 0
        assert bool((r.tokens[bio, 0] == mixed.vocab.bos).all())
        assert bool(((r.targets[~bio] != IGNORE).sum(1) <= 5).all())  # QA rows: the answer and <eos> only
    assert not bool((_task(0, stage="mixed", qa_fraction=0.0).train_batch(0, 100).extras["attribute"] >= 0).any())
    bio = _task(0)
    b = bio.train_batch(4, 64)
    assert b.tokens.shape == (64, bio.cfg.model_defaults()["n_ctx"]) and bool((b.extras["attribute"] < 0).all())
    # a pure function of (seed, step); the default batch is cfg.batch
    assert torch.equal(bio.train_batch(4, 64).tokens, b.tokens) and not torch.equal(bio.train_batch(5, 64).tokens,
                                                                                     b.tokens)
    assert len(_task(0, batch=24).train_batch(0, None)) == 24


# --------------------------------------------------------------------------- evaluation


def test_evaluation_of_an_untrained_model():
    task = _task(1, multi=2, permute=True, n_eval=8)
    model = _model(task.cfg)
    m = task.evaluate(model, "cpu", None, 7)
    keys = {f"{s}/{k}" for s in ("qa_train", "qa_test", "bio") for k in ("accuracy", "loss", *ATTRIBUTES)}
    assert set(m) == keys and all(isinstance(v, float) for v in m.values())
    for k, v in m.items():
        assert (v > 0) if k.endswith("/loss") else (0 <= v <= 1), (k, v)
    assert m["bio/loss"] == pytest.approx(math.log(task.cfg.model_defaults()["d_vocab_out"]), rel=0.2)
    assert m == pytest.approx(task.evaluate(model, "cpu", None, 1000))  # chunks change nothing
    assert len(task.eval_people["qa_test"]) == 8 and set(task.eval_people["qa_test"]) <= set(task.world.p_test)
    assert set(task.eval_sets()) == {"bio", "qa_train", "qa_test"}


def test_task_code_follows_the_device():
    from theorylab.runs.devices import audit_devices

    task = _task(0, stage="mixed", n_eval=4)
    audit_devices(task, _model(task.cfg))


def test_evaluation_reads_exact_answers():
    """A model that returns the true next token as its argmax scores 1 everywhere; shifting one answer breaks it."""
    task = _task(0, n_eval=8)
    lookup = _true_next(task)
    d_out = task.cfg.model_defaults()["d_vocab_out"]
    m = task.evaluate(_Oracle(lookup, d_out), "cpu", None, 64)
    assert all(m[k] == 1.0 for k in m if not k.endswith("loss"))
    qa = task.eval_sets()["qa_test"]
    row, tgt = qa.tokens[0].tolist(), qa.targets[0].tolist()  # the first test person's birth date
    last = max(t for t, y in enumerate(tgt) if y != IGNORE) - 1  # the year
    lookup[tuple(row[:last + 1])] = tgt[last] + 1
    m = task.evaluate(_Oracle(lookup, d_out), "cpu", None, 64)
    assert m["qa_test/accuracy"] == pytest.approx(1 - 1 / 48) and m["qa_test/birth_date"] == pytest.approx(7 / 8)
    assert m["qa_train/accuracy"] == 1.0


# --------------------------------------------------------------------------- training


WORLD = ["task.n_people=64", "task.n_first=8", "task.n_middle=8", "task.n_last=8", "task.n_years=10",
         "task.n_cities=10", "task.n_universities=10", "task.n_majors=10", "task.n_employers=10", "task.n_eval=64",
         "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "train.batch_size=32", "train.lr=1e-2"]


def test_biographies_are_memorised_then_qa_fine_tuning_learns_the_training_people(store):
    # Measured on a CPU (seeds 0-2): bio/accuracy 0.003 before training, 0.34 after 50 steps and 1.0, 0.99, 0.99
    # after 200 steps of batch 32 (100 exposures per person), about 5 s; qa accuracy stays 0 (the model never saw a
    # question).  QA fine-tuning from that parent (stage qa, 100 steps): qa_train/accuracy 0.57, 0.55, 0.47 while
    # qa_test/accuracy stays near chance (0.13, 0.13, 0.11: bioS single, so not extractable), about 1 s.
    parent = train(build_run_config("bios", WORLD + ["train.steps=200", "train.eval_every=200"]), store,
                   progress=False)
    assert parent.status == "finished"
    curve = store.metrics(parent.run_id, split="bio", name="accuracy")["bio"]["accuracy"]
    assert curve[0][1] < 0.1 and curve[-1][0] == 200 and curve[-1][1] > 0.8, curve
    assert parent.metrics["qa_train/accuracy"] < 0.1
    child = train(build_run_config("bios", WORLD + [f"parent={parent.run_id}", "task.stage=qa", "train.steps=100",
                                                    "train.eval_every=100"]), store, progress=False)
    assert child.status == "finished"
    assert child.metrics["qa_train/accuracy"] > 0.3, child.metrics
    assert child.metrics["qa_train/accuracy"] > child.metrics["qa_test/accuracy"] + 0.2


# --------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize("kw,needle", [
    (dict(n_people=1001, n_first=10, n_middle=10, n_last=10), r"task: .*n_people \(1001\) exceeds the 1000"),
    (dict(n_people=200_001), r"task\.n_people"), (dict(n_people=1), r"task\.n_people"),
    (dict(multi=0), r"task\.multi"), (dict(stage="pretrain"), r"task\.stage"),
    (dict(qa_fraction=1.5), r"task\.qa_fraction"), (dict(qa_fraction=-0.1), r"task\.qa_fraction"),
    (dict(n_cities=0), r"task\.n_cities"), (dict(colour="red"), r"task\.colour"),
])
def test_bad_configs_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        _cfg(**kw)
    assert "\n" not in str(err.value)


def test_bad_inputs_to_the_helpers():
    task = _task(0)
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        task.decode([len(task.vocab)])
    with pytest.raises(ConfigError, match="unknown words"):
        task.vocab.encode("he was born on Mars")
    with pytest.raises(ConfigError, match="people must lie"):
        task.facts(-1)
    with pytest.raises(ConfigError, match="do not fit width 10"):
        task.bio_rows(np.array([0]), np.array([0]), width=10)


# --------------------------------------------------------------------------- knowledge manipulation (Part 3.2)


def _answer(batch, r: int) -> list[int]:
    return batch.targets[r][batch.targets[r] != IGNORE].tolist()


def _question(task: BiosTask, batch, r: int) -> list[str]:
    """The words of row r's question: after <bos>, up to and including the '?' (where the loss starts)."""
    first = int((batch.targets[r] != IGNORE).nonzero()[0])
    return [task.vocab.words[int(t)] for t in batch.tokens[r, 1:first + 1]]


def _month(word: str) -> int:
    """Calendar month number of a month name: January 1 .. December 12."""
    return MONTHS.index(word) + 1


def test_each_kind_of_question_states_the_facts_and_answers_them():
    task = _task(0, n_people=150, qa_kinds=list(QA_KINDS))
    v, w = task.vocab, task.world
    word = v.words
    people = np.arange(150)
    assert set((w.month + 1).tolist()) == set(range(1, 13))  # every month, both parities
    yes, no, eos = v.index["yes"], v.index["no"], v.eos
    # inverse: every fact of the person in the question, the name as the answer
    b = task.question_rows("inverse", people)
    assert b.tokens.shape[1] == task.kind_width["inverse"]
    for r in people:
        facts, q = task.facts(int(r)), _question(task, b, r)
        assert q[0] == "which" and q[-1] == "?"
        for a in ATTRIBUTES[:-1]:  # the company city follows from the employer
            assert all(word[t] in q for t in facts[a]), (a, q)
        assert not {word[t] for t in facts["name"]} & set(q)
        assert _answer(b, r) == facts["name"] + [eos]
        assert b.extras["answer_part"][r][b.targets[r] != IGNORE].tolist() == [0, 0, 0, -1]
    text = task.decode(task.question_rows("inverse", np.array([3])).tokens[0])
    assert text.startswith("<bos> which person attended Univ") and text.endswith("? " + task.decode(
        task.facts(3)["name"]))
    # classify: yes iff the calendar month is even (January = 1: no); with CoT the month comes first
    b, cot = task.question_rows("classify", people), task.question_rows("classify_cot", people)
    verdicts = set()
    for r in people:
        name = [word[t] for t in task.facts(int(r))["name"]]
        month = word[v.month0 + int(w.month[r])]
        for batch in (b, cot):
            q = _question(task, batch, r)
            assert q[1:4] == name and "even" in q and month not in q
        verdict = yes if _month(month) % 2 == 0 else no
        verdicts.add((month, word[verdict]))
        assert _answer(b, r) == [verdict, eos]
        assert _answer(cot, r) == [v.month0 + int(w.month[r]), v.index[","], verdict, eos]
        assert cot.extras["answer_part"][r][cot.targets[r] != IGNORE].tolist() == [0, 0, 1, -1]
    assert ("January", "no") in verdicts and ("February", "yes") in verdicts and ("December", "yes") in verdicts
    assert len(verdicts) == 12
    # compare: yes iff A's calendar month is earlier than B's; with CoT both months first, A's then B's
    mates = task.partners(people, w.p_train, np.random.default_rng(0))
    assert bool((w.month[mates] != w.month[people]).all()) and set(mates.tolist()) <= set(w.p_train.tolist())
    b, cot = task.question_rows("compare", people, partners=mates), task.question_rows("compare_cot", people,
                                                                                     partners=mates)
    answers = set()
    for r in people:
        a_name = [word[t] for t in task.facts(int(r))["name"]]
        b_name = [word[t] for t in task.facts(int(mates[r]))["name"]]
        q = _question(task, cot, r)
        assert q[1:4] == a_name and q[-4:-1] == b_name and "earlier" in q
        ma, mb = word[v.month0 + int(w.month[r])], word[v.month0 + int(w.month[mates[r]])]
        verdict = yes if _month(ma) < _month(mb) else no
        answers.add(verdict)
        assert _answer(b, r) == [verdict, eos]
        assert [word[t] for t in _answer(cot, r)] == [ma, mb, ",", word[verdict], "<eos>"]
        assert int(b.extras["partner"][r]) == mates[r] and int(b.extras["attribute"][r]) == -2
    assert answers == {yes, no}
    # retrieval through question_rows is qa_rows
    r = task.question_rows("retrieval", people[:6], np.arange(6))
    assert torch.equal(r.tokens, task.qa_rows(people[:6], np.arange(6)).tokens)
    # refused inputs
    for call, needle in ((lambda: task.question_rows("compare", people[:2]), "need partners"),
                         (lambda: task.question_rows("compare", people[:2], partners=people[:2]), "different months"),
                         (lambda: task.question_rows("compare", people[:2], partners=people[:1]), "partners for"),
                         (lambda: task.question_rows("guess", people[:2]), "unknown question kind"),
                         (lambda: task.question_rows("retrieval", people[:2]), "need their attributes"),
                         (lambda: task.question_rows("classify", np.array([150])), "people must lie"),
                         (lambda: task.question_rows("inverse", people[:2], width=10), "do not fit width 10")):
        with pytest.raises(ConfigError, match=needle):
            call()
    one_month = people[w.month == w.month[0]]
    with pytest.raises(ConfigError, match="one birth month only"):
        task.partners(one_month[:1], one_month, np.random.default_rng(0))


def test_inverse_questions_can_be_ambiguous_in_small_worlds():
    tiny = _task(0, n_people=150, n_years=1, n_cities=1, n_universities=1, n_majors=1, n_employers=1)
    w = tiny.world
    facts = [tuple(int(getattr(w, f)[i]) for f in ("year", "month", "day", "birth_city", "university", "major",
                                                   "employer")) for i in range(150)]
    shared = np.array([facts.count(f) > 1 for f in facts])
    assert np.array_equal(w.inverse_ambiguous, shared) and shared.any()
    assert w.inverse_collisions == pytest.approx(shared.mean())
    assert _task(0).world.inverse_collisions == 0.0  # 40 people, about 1.1e7 profiles


def test_stage_qa_draws_every_kind_about_training_people_only():
    kinds = ["retrieval", "inverse", "classify_cot", "compare"]
    task = _task(0, stage="qa", qa_kinds=kinds)
    w = task.world
    b = task.train_batch(0, 400)
    assert b.tokens.shape[1] == max(task.kind_width[k] for k in kinds) == task.cfg.stage_width()
    kind = b.extras["kind"].numpy()
    share = np.bincount(kind, minlength=len(QA_KINDS))[[QA_KINDS.index(k) for k in kinds]] / 400
    assert share == pytest.approx([0.25] * 4, abs=0.08)  # 400 rows: sd 0.022
    person, partner = b.extras["person"].numpy(), b.extras["partner"].numpy()
    assert set(person.tolist()) <= set(w.p_train.tolist())
    is_cmp = kind == QA_KINDS.index("compare")
    assert set(partner[is_cmp].tolist()) <= set(w.p_train.tolist()) and bool((partner[~is_cmp] == -1).all())
    assert bool((w.month[partner[is_cmp]] != w.month[person[is_cmp]]).all())
    assert bool(((b.extras["attribute"] >= 0).numpy() == (kind == 0)).all())  # -2 for the manipulations
    for r in range(40):  # each row is its kind's question about its person, padded
        k = QA_KINDS[kind[r]]
        one = task.question_rows(k, person[r:r + 1], b.extras["attribute"][r:r + 1].numpy(),
                                 partner[r:r + 1] if k.startswith("compare") else None)
        t = one.tokens.shape[1]
        assert torch.equal(b.tokens[r, :t], one.tokens[0]) and torch.equal(b.targets[r, :t], one.targets[0])
        assert bool((b.tokens[r, t:] == task.vocab.pad).all()) and bool((b.targets[r, t:] == IGNORE).all())
    # mixed: the questions only of the configured kinds, the biographies of kind -1
    mixed = _task(0, stage="mixed", qa_kinds=["classify", "compare_cot"])
    m = mixed.train_batch(1, 300)
    is_q = m.extras["attribute"] != -1
    assert set(m.extras["kind"][is_q].tolist()) == {QA_KINDS.index("classify"), QA_KINDS.index("compare_cot")}
    assert bool((m.extras["kind"][~is_q] == -1).all()) and bool((m.tokens[~is_q, 0] == mixed.vocab.bos).all())
    assert set(m.extras["person"][is_q].tolist()) <= set(mixed.world.p_train.tolist())
    assert m.tokens.shape[1] == mixed.cfg.model_defaults()["n_ctx"]
    # one vocabulary and one n_ctx whatever the kinds or the stage (a child keeps its parent's model)
    d = _cfg(**SMALL).model_defaults()
    for kw in (dict(qa_kinds=list(QA_KINDS)), dict(stage="qa", qa_kinds=["inverse"]), dict(stage="mixed")):
        assert _cfg(**SMALL, **kw).model_defaults() == d
    assert d["n_ctx"] >= max(task.kind_width.values())


def test_evaluation_of_each_kind_on_an_untrained_model():
    task = _task(1, qa_kinds=list(QA_KINDS), n_eval=8)
    model = _model(task.cfg)
    m = task.evaluate(model, "cpu", None, 5)
    retrieval = {f"{s}/{k}" for s in ("qa_train", "qa_test", "bio") for k in ("accuracy", "loss", *ATTRIBUTES)}
    kinds = {f"{s}/{k}" for s in ("qa_train", "qa_test") for k in (*QA_KINDS[1:], "classify_cot_final",
                                                                      "compare_cot_final")}
    assert set(m) == retrieval | kinds
    for k, val in m.items():
        assert (val > 0) if k.endswith("/loss") else (0 <= val <= 1), (k, val)
    assert m == pytest.approx(task.evaluate(model, "cpu", None, 1000))  # chunks change nothing
    w = task.world
    for split in ("qa_train", "qa_test"):  # one fixed partner per evaluation person, of the same split
        p, q = task.eval_people[split], task.eval_partners[split]
        assert set(q.tolist()) <= set(p.tolist()) and bool((w.month[p] != w.month[q]).all())
        assert len(task.eval_sets()[f"{split}/compare"]) == len(p)
    # without retrieval, its keys are left out
    only = _task(1, qa_kinds=["classify_cot"], n_eval=8)
    assert set(only.evaluate(_model(only.cfg), "cpu", None, 64)) == (
        {f"{s}/{k}" for s in ("qa_train", "qa_test") for k in ("classify_cot", "classify_cot_final")}
        | {f"bio/{k}" for k in ("accuracy", "loss", *ATTRIBUTES)})
    assert set(only.eval_sets()) == {"bio", "qa_train/classify_cot", "qa_test/classify_cot"}


def _true_next(task) -> dict[tuple[int, ...], int]:
    """Every evaluation prefix (a tuple of tokens) -> the true next token, where the loss is taken."""
    lookup = {}
    for b in task.eval_sets().values():
        for row, tgt in zip(b.tokens.tolist(), b.targets.tolist()):
            for t, y in enumerate(tgt):
                if y != IGNORE:
                    lookup[tuple(row[:t + 1])] = y
    return lookup


class _Oracle(torch.nn.Module):
    """Predicts a lookup of prefix -> next token (uniform logits elsewhere)."""

    def __init__(self, lookup, d_vocab_out):
        super().__init__()
        self.lookup, self.d = lookup, d_vocab_out
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        out = torch.zeros(*tokens.shape, self.d)
        for r, row in enumerate(tokens.tolist()):
            for t in range(len(row)):
                nxt = self.lookup.get(tuple(row[:t + 1]))
                if nxt is not None:
                    out[r, t, nxt] = 1.0
        return out


def test_cot_final_reads_the_verdict_given_the_true_months():
    task = _task(0, qa_kinds=["classify_cot", "compare_cot", "inverse"], n_eval=8)
    lookup = _true_next(task)
    d = task.cfg.model_defaults()["d_vocab_out"]
    m = task.evaluate(_Oracle(lookup, d), "cpu", None, 64)
    assert all(m[k] == 1.0 for k in m if not k.endswith("loss"))
    b = task.eval_sets()["qa_test/compare_cot"]
    row, tgt = b.tokens[0].tolist(), b.targets[0].tolist()
    start = min(t for t, y in enumerate(tgt) if y != IGNORE)
    wrong_month = dict(lookup)
    wrong_month[tuple(row[:start + 1])] = tgt[start] + 1 if tgt[start] + 1 < d else tgt[start] - 1  # A's month
    m = task.evaluate(_Oracle(wrong_month, d), "cpu", None, 64)
    assert m["qa_test/compare_cot"] == pytest.approx(7 / 8) and m["qa_test/compare_cot_final"] == 1.0
    yes, no = task.vocab.index["yes"], task.vocab.index["no"]
    wrong_verdict = dict(lookup)
    wrong_verdict[tuple(row[:start + 3 + 1])] = yes + no - tgt[start + 3]  # the verdict, after "A B ,"
    m = task.evaluate(_Oracle(wrong_verdict, d), "cpu", None, 64)
    assert m["qa_test/compare_cot"] == m["qa_test/compare_cot_final"] == pytest.approx(7 / 8)
    assert m["qa_train/compare_cot"] == m["qa_test/classify_cot"] == m["qa_test/inverse"] == 1.0


# Rows of the default config, hashed with <pad> read as -1, saved from the code before the question kinds
# existed: the kinds leave every row of a retrieval-only config as it was.  Only the vocabulary grew (the
# manipulation words come after the pools, so the one id that moved is <pad>, the last: 2992 -> 3001).
DEFAULT_ROWS = {"bio": "e2a8432af97307a2", "qa": "bbe1d9cd36f8e423", "mixed": "12833ddeb5d4085d",
                "eval_bio": "d7780c20ec743288", "eval_qa_train": "1a7039126fa7c866", "eval_qa_test": "d647ead1f327c0e2"}


def _digest(task: BiosTask, *tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        a = t.numpy().astype(np.int64)
        a = np.where(a == task.vocab.pad, -1, a)
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_the_default_config_draws_the_rows_it_drew_before_the_kinds():
    got = {}
    for stage in ("bio", "qa", "mixed"):
        task = make_task(_cfg(stage=stage), 0)
        b = task.train_batch(0, 8)
        got[stage] = _digest(task, b.tokens, b.targets, b.extras["person"], b.extras["attribute"])
        assert bool((b.extras["kind"] == torch.where(b.extras["attribute"] >= 0, 0, -1)).all())
    got |= {f"eval_{k}": _digest(task, v.tokens, v.targets, v.extras["value_attr"])
            for k, v in task.eval_sets().items()}
    assert got == DEFAULT_ROWS
    d = task.cfg.model_defaults()
    assert d["n_ctx"] == 58 and d["d_vocab"] == 2993 + len(MANIPULATION_WORDS)
    assert MANIPULATION_WORDS == ("and", "earlier", "even", "have", "month", "no", "person", "than", "yes")
    assert task.vocab.manipulation0 == task.vocab.employer0 + task.cfg.n_employers
    assert _cfg().qa_kinds == ["retrieval"] and _cfg().to_dict()["qa_kinds"] == ["retrieval"]


@pytest.mark.parametrize("kinds,needle", [
    ([], r"task\.qa_kinds"), (["retrieval", "retrieval"], r"task: .*qa_kinds lists retrieval more than once"),
    (["lookup"], r"task\.qa_kinds\.0"), ("classify", r"task\.qa_kinds"),
])
def test_bad_qa_kinds_are_one_line_errors(kinds, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        _cfg(qa_kinds=kinds)
    assert "\n" not in str(err.value)


def test_a_bio_parent_then_a_child_on_retrieval_and_classification_with_cot(store):
    # Measured on a CPU (seed 0), about 1 s: parent bio/accuracy 0.29 after 40 steps; child (40 steps) qa_train
    # retrieval 0.11, classify_cot 0.0 (its verdict alone 0.56), qa_test 0.07, 0.0 (0.44).  No accuracy bound: the
    # run is too short.  With 200 + 200 steps (about 5 s): parent 0.98; child qa_train retrieval 0.48,
    # classify_cot 1.0 (1.0), qa_test 0.08, 0.03 (0.63): the test people's months are not extractable (bioS single).
    parent = train(build_run_config("bios", WORLD + ["train.steps=40", "train.eval_every=40"]), store,
                   progress=False)
    assert parent.status == "finished"
    child = train(build_run_config("bios", WORLD + [f"parent={parent.run_id}", "task.stage=qa",
                                                    "task.qa_kinds=[retrieval,classify_cot]", "train.steps=40",
                                                    "train.eval_every=40"]), store, progress=False)
    assert child.status == "finished"
    for split in ("qa_train", "qa_test"):
        for k in ("accuracy", "classify_cot", "classify_cot_final"):
            assert 0 <= child.metrics[f"{split}/{k}"] <= 1
