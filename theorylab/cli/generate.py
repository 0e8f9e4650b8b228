"""``theorylab generate RUN``: continue a prompt with a stored run's model."""

from __future__ import annotations

import torch
import typer

from theorylab.cli.app import JSON_OPT, app, emit
from theorylab.errors import ConfigError


@app.command()
def generate(
    run: str = typer.Argument(..., help="run id or unique prefix"),
    prompt: list[str] = typer.Option(..., "--prompt", "-p",
                                     help="words for tasks with a vocabulary (e.g. lm), else space-separated token "
                                          "ids; repeat for a batch (left-padded)"),
    strategy: str = typer.Option("greedy", "--strategy", help="greedy | beam | sample"),
    max_new_tokens: int = typer.Option(20, "--max-new-tokens", "-n"),
    num_beams: int = typer.Option(4, "--num-beams", help="beam search only"),
    length_penalty: float = typer.Option(1.0, "--length-penalty"),
    early_stopping: str = typer.Option("false", "--early-stopping", help="true | false | never"),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_k: int = typer.Option(0, "--top-k", help="0 = off"),
    top_p: float = typer.Option(1.0, "--top-p", help="1 = off"),
    num_samples: int = typer.Option(1, "--num-samples", help="sampling only: how many continuations"),
    seed: int = typer.Option(0, "--seed", help="sampling generator seed"),
    stop_at_eos: bool = typer.Option(True, "--stop-at-eos/--no-stop-at-eos",
                                     help="stop at the task's end token (token 0 for lm)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Generate from a trained run with greedy, beam or sampling decoding."""
    from theorylab.models.decoding import generate as gen
    from theorylab.runs import load_run_model
    from theorylab.store import Store

    if strategy not in ("greedy", "beam", "sample"):
        raise ConfigError(f"--strategy: {strategy!r} is not allowed; allowed: greedy, beam, sample")
    es = {"true": True, "false": False, "never": "never"}.get(early_stopping.lower())
    if es is None:
        raise ConfigError(f"--early-stopping: {early_stopping!r}; allowed: true, false, never")
    if num_samples < 1:
        raise ConfigError(f"--num-samples: {num_samples}; give a count >= 1")
    store = Store()
    cfg, model = load_run_model(store, run)
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    encode = getattr(task, "encode", None)
    decode = getattr(task, "decode", None)
    batch = []
    for text in prompt:
        if encode is not None:
            ids = encode(text)
        else:
            try:
                ids = [int(t) for t in text.split()]
            except ValueError:
                raise ConfigError("--prompt: this task has no vocabulary; give space-separated token ids") from None
        if not text.split():
            raise ConfigError("--prompt: empty")
        batch += [(text, ids)] * (num_samples if strategy == "sample" else 1)
    eos = 0 if (stop_at_eos and encode is not None) else None
    width = max(len(ids) for _, ids in batch)
    x = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, (_, ids) in enumerate(batch):  # left padding: every row's last column is its last token
        x[i, width - len(ids):] = torch.tensor(ids)
        mask[i, width - len(ids):] = 1
    out = gen(model, x, max_new_tokens, strategy=strategy, num_beams=num_beams if strategy == "beam" else 1,
              length_penalty=length_penalty, early_stopping=es, temperature=temperature, top_k=top_k, top_p=top_p,
              eos_token_id=eos, generator=torch.Generator().manual_seed(seed), attention_mask=mask)
    rows = [r[width:].tolist() for r in out]
    if eos is not None:
        rows = [r[: r.index(eos) + 1] if eos in r else r for r in rows]
    texts = [decode(r) if decode is not None else " ".join(map(str, r)) for r in rows]
    prompts = [text for text, _ in batch]
    emit({"run_id": cfg.run_id(), "prompt": prompt[0] if len(prompt) == 1 else prompt, "prompts": prompts,
          "strategy": strategy, "tokens": rows, "texts": texts},
         as_json, lambda: [print(f"{p} | {t}") for p, t in zip(prompts, texts, strict=True)])
