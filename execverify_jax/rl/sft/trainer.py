"""SFT warm-up: masked cross-entropy on assistant tokens, chat template applied, length-bucketed.

Data: ShareGPT-style JSONL (`{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}`
or `{"messages": [{"role", "content"}]}`), or built-in rationales from a synth directory
(rl/sft/rationales.py: traced chains of execution, no teacher). Sequences longer than `max_len` are
cut (LLaMA-Factory's cutoff_len); examples without any assistant token left are skipped and
counted. Batches hold `batch_size` sequences of similar length (sorted into `buckets`, shuffled by
the seed each epoch), padded on the right to their bucket, so a jitted step compiles once per bucket.
The result is an Orbax model checkpoint (RUN/model, with the tokenizer files copied in) that
`execverify train` takes as `model.init`.
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from execverify_jax.buckets import bucket_for
from execverify_jax.jsonl import read_jsonl

ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
           "system": "system", "model": "assistant"}


def read_conversations(path: str | Path) -> tuple[list[list[dict]], int]:
    """(conversations as role/content lists, malformed lines skipped) from a ShareGPT JSONL
    (gzipped when it ends in .gz) or a JSON list."""
    text = None if Path(path).suffix == ".gz" else Path(path).read_text(encoding="utf-8")
    rows: list[Any]
    if text is not None and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        bad_lines: collections.Counter = collections.Counter()
        rows = [row for _, row in read_jsonl(path, bad_lines, objects_only=False)]
        rows += [None] * sum(bad_lines.values())  # counted below with the other malformed rows
    convs, bad = [], 0
    for row in rows:
        try:
            if "conversations" in row:
                msgs = [{"role": ROLE_OF[m["from"]], "content": str(m["value"])} for m in row["conversations"]]
            else:
                msgs = [{"role": ROLE_OF[m["role"]], "content": str(m["content"])} for m in row["messages"]]
            if not any(m["role"] == "assistant" for m in msgs):
                raise ValueError("no assistant turn")
            convs.append(msgs)
        except (KeyError, TypeError, ValueError):
            bad += 1
    return convs, bad


def tokenize_conversation(tok: Any, messages: Sequence[dict], max_len: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, loss_mask) with the chat template; loss_mask marks every assistant turn's tokens
    (the end-of-turn token included). None when nothing to learn survives the cut."""
    ids: list[int] = []
    mask: list[bool] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat(list(messages[:i]), add_generation_prompt=True)
        full = tok.apply_chat(list(messages[: i + 1]), add_generation_prompt=False)
        if full[: len(prefix)] != prefix:
            raise ValueError("the chat template does not render conversations incrementally")
        new_prompt = prefix[len(ids):] if prefix[: len(ids)] == ids else prefix[len(ids):]
        ids += new_prompt
        mask += [False] * len(new_prompt)
        answer = full[len(prefix):]
        ids += answer
        mask += [True] * len(answer)
    ids, mask = ids[:max_len], mask[:max_len]
    if not any(mask[1:]):
        return None
    return np.asarray(ids, np.int32), np.asarray(mask, bool)


def bucketed_batches(examples: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int,
                     buckets: Sequence[int], pad_id: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled batches of similar-length examples, right-padded to their bucket."""
    rng = np.random.default_rng(seed)
    by_bucket: dict[int, list[int]] = {}
    for i, (ids, _) in enumerate(examples):
        b = bucket_for(len(ids), buckets, over=max(buckets))  # longer ones are cut to the largest
        by_bucket.setdefault(b, []).append(i)
    batches = []
    for b, idx in by_bucket.items():
        idx = list(rng.permutation(idx))
        for s in range(0, len(idx), batch_size):
            batches.append((b, idx[s:s + batch_size]))
    for j in rng.permutation(len(batches)):
        T, idx = batches[j]
        B = batch_size
        ids_BT = np.full((B, T), pad_id, np.int32)
        attn_BT = np.zeros((B, T), bool)
        loss_BT = np.zeros((B, T), bool)
        for r, i in enumerate(idx):
            ids, m = examples[i]
            n = min(len(ids), T)
            ids_BT[r, :n], attn_BT[r, :n], loss_BT[r, :n] = ids[:n], True, m[:n]
        yield {"ids_BT": ids_BT, "attn_BT": attn_BT, "loss_mask_BT": loss_BT}


def run_sft(cfg: Any, run_dir: Any, conversations: list[list[dict]], tokenizer: Any,
            params: Any = None, model_cfg: Any = None, log: Any = print) -> dict[str, Any]:
    """Trains, writes RUN/model (Orbax params + model config + tokenizer files) and
    RUN/metrics.jsonl; returns a summary. `cfg` is a TrainConfig (its `sft` section)."""
    import jax
    from tqdm import tqdm

    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import save_params
    from execverify_jax.model.hf_export import copy_tokenizer_files
    from execverify_jax.paths import run_path
    from execverify_jax.rl.builders import build_model_config, load_init_params
    from execverify_jax.rl.infra.guards import check_finite
    from execverify_jax.rl.infra.metrics import MetricsWriter
    from execverify_jax.rl.infra.optim import build_optimizer, lr_schedule
    from execverify_jax.rl.infra.packing import pack_sft, prediction_positions
    from execverify_jax.rl.infra.train_steps import make_sft_update, put_batch
    from execverify_jax.rl.infra.train_state import create_train_state, state_shardings

    s = cfg.sft
    run_dir = run_path(run_dir)  # local or gs:// (etils.epath)
    run_dir.mkdir(parents=True, exist_ok=True)
    if s.max_samples is not None:
        conversations = conversations[: s.max_samples]
    examples, dropped = [], 0
    for conv in conversations:
        ex = tokenize_conversation(tokenizer, conv, s.max_len)
        if ex is None:
            dropped += 1
        else:
            examples.append(ex)
    if not examples:
        raise ValueError("no SFT example has assistant tokens within max_len")
    if s.packing and s.pack_len < s.max_len:
        raise ValueError(f"sft.pack_len={s.pack_len!r} is shorter than sft.max_len={s.max_len!r}")
    mesh = shd.make_mesh(cfg.mesh)
    if model_cfg is None:
        model_cfg, init = build_model_config(cfg, tokenizer.vocab_size)
        if init is not None and params is None:
            params = load_init_params(init, model_cfg, mesh)
    tokenizer.check_model_vocab(model_cfg.vocab_size) if hasattr(tokenizer, "check_model_vocab") else None
    steps_per_epoch = -(-len(examples) // s.batch_size)
    total = steps_per_epoch * s.epochs
    tx = build_optimizer(s.optim, total)
    graphdef, state = create_train_state(model_cfg, tx, seed=cfg.seed, mesh=mesh, params=params)
    update = make_sft_update(graphdef, tx, mesh, state_shardings(model_cfg, tx, mesh),
                             micro_batch_size=s.micro_batch_size, mode=s.mode,
                             lr_schedule=lr_schedule(s.optim, total), packed=s.packing)
    # Logits only at the positions whose next token is learned: one width per bucket (its
    # examples' most targets), so unpacked batches compile once per bucket as before.
    width = {}
    for ids, m in examples:
        T = bucket_for(len(ids), s.buckets, over=max(s.buckets))
        width[T] = max(width.get(T, 1), int(np.asarray(m[1:T]).sum()))
    writer = MetricsWriter(run_dir, resume_step=None, enabled=jax.process_index() == 0, tensorboard=cfg.tensorboard)
    bar = tqdm(total=total, desc="SFT", disable=not cfg.progress, dynamic_ncols=True)
    step, t_start, last = 0, time.perf_counter(), {}
    for epoch in range(s.epochs):
        for batch in bucketed_batches(examples, s.batch_size, s.buckets, tokenizer.pad_id, cfg.seed + epoch):
            t0 = time.perf_counter()
            if s.packing:
                fed = pack_sft(batch, s.pack_len, s.micro_batch_size)[0]
                fed["pred_pos_BC"] = prediction_positions(fed["loss_mask_BT"], granule=max(s.pack_len // 8, 1))
            else:
                fed = dict(batch, pred_pos_BC=prediction_positions(batch["loss_mask_BT"], width[batch["ids_BT"].shape[1]]))
            state, m = update(state, put_batch(fed, mesh))
            m = {f"sft/{k}": float(v) for k, v in jax.device_get(m).items()}
            check_finite(step + 1, m, ("sft/loss", "sft/grad_norm"))
            dt = time.perf_counter() - t0
            m["sft/tokens_per_s"] = float(batch["attn_BT"].sum()) / dt
            m["sft/epoch"] = float(epoch)
            m["time/step"] = dt
            step += 1
            writer.write(step, m)
            last = m
            bar.update(1)
            bar.set_postfix(ce=f"{m['sft/ce']:.3f}", acc=f"{m['sft/accuracy']:.3f}")
    bar.close()
    writer.close()
    out = run_dir / "model"
    if out.exists() and jax.process_index() == 0:
        out.rmtree()
    if jax.process_count() > 1:  # nobody saves into the directory while process 0 removes it
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("sft_model_dir")
    save_params(out, model_cfg, state.params)
    tok_dir = getattr(tokenizer, "path", None)
    if tok_dir is not None and Path(tok_dir).is_dir() and jax.process_index() == 0:
        copy_tokenizer_files(tok_dir, out)
    summary = {"examples": len(examples), "dropped_examples": dropped, "steps": step,
               "wall_s": time.perf_counter() - t_start, "last": last, "model": str(out)}
    if jax.process_index() == 0:
        (run_dir / "sft_summary.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "params": state.params, "graphdef": graphdef, "model_cfg": model_cfg}
