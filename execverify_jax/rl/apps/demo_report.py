"""The demo's report: the GRPO training curve's summary (report.json `grpo_curve`) and DIR/report.md."""

from __future__ import annotations

import json
from pathlib import Path

from execverify_jax.rl.infra.metrics import read_metrics


def training_curve(run_dir: Path, k: int = 5) -> dict[str, dict[str, float]]:
    """Means of the first and last k GRPO steps (training prompts, T = 1 samples) of the reward
    and the per-kind accuracies."""
    rows = read_metrics(run_dir)
    if not rows:
        return {}
    k = max(1, min(k, len(rows) // 2))
    out: dict[str, dict[str, float]] = {}
    for key in sorted({key for r in rows for key in r if key.startswith(("reward/", "acc/")) or key == "format_rate"}):
        for name, part in (("first", rows[:k]), ("last", rows[-k:])):
            vals = [r[key] for r in part if r.get(key) is not None]
            if vals:
                out.setdefault(key, {})[name] = round(sum(vals) / len(vals), 4)
    out["steps"] = {"first": float(k), "last": float(k)}
    return out


def render_report(r: dict, out: Path, pngs: list[Path]) -> str:
    """DIR/report.md."""
    def table(d: dict) -> str:
        keys = sorted(set(r["eval_sft"]) | set(r["eval_grpo"]))
        lines = ["| metric | SFT only | SFT + GRPO |", "|---|---|---|"]
        for k in keys:
            lines.append(f"| {k} | {r['eval_sft'].get(k, '-')} | {r['eval_grpo'].get(k, '-')} |")
        return "\n".join(lines)

    m = r["model"]
    w = r.get("warm_start")
    origin = ("from scratch: no weights or data downloaded" if w is None else
              f"from the warm-start policy {w['init']} (shipped, not downloaded)")
    policy = ("A Qwen2-shaped decoder trained from scratch" if w is None else
              f"A Qwen2-shaped decoder from the warm start {w['init']}, trained on {w['programs_seen']:,} other "
              "programs (none of them in this run's data)")
    tok_words = "BPE tokenizer trained on the synthesized questions" if w is None else "the warm start's BPE tokenizer"
    rel = [p.relative_to(out) for p in pngs]
    reward_png = next((p for p in rel if p.name == "reward.png"), rel[0] if rel else None)
    parts = [
        "# execverify demo report", "",
        f"Everything ran on CPU ({', '.join(r['devices'])}) {origin}.", "",
        "## Data", "",
        f"{r['data']['programs']} programs synthesized ({r['data']['programs_by_split']}), "
        f"{r['data']['questions']} questions ({r['data']['questions_by_kind']}).", "",
        *([f"CPU curriculum: questions whose call arguments have at most {r['curriculum']['max_args_chars']} "
           f"characters ({r['curriculum']['train_questions']} train / {r['curriculum']['heldout_questions']} "
           "held-out).", ""] if "curriculum" in r else []),
        "## Policy", "",
        f"{policy}: {m['num_params']:,} parameters (D={m['hidden_size']}, "
        f"L={m['num_layers']}, heads {m['num_heads']}/{m['num_kv_heads']}, vocab {m['vocab_size']}, {tok_words}).", "",
        f"SFT: {r['sft']['examples']} traced chain-of-execution rationales, {r['sft']['steps']} steps, "
        f"final {r['sft']['final']}.", "",
        f"GRPO stage I: {r['grpo']['rl_steps']} RL steps ({r['grpo']['optimizer_steps']} optimizer updates), "
        f"{r['grpo']['prompts_per_step']} prompts x G={r['grpo']['group_size']} per step, layouts "
        f"{r['grpo']['layouts']}, on {r['grpo']['prompts']} training prompts.", "",
        "## Held-out evaluation", "",
        "Greedy decoding (the paper's validation setting); `sampled/*`: n samples per question at T = 1.", "",
        table(r), "",
        "Rewards follow the paper's scale (io_mixed in {0} U [1, 2], oi 0 or 2); `acc/*` are the shares "
        "of correct outputs (io, oi) and white-box answers (path = next statement, state = value/type).", "",
    ]
    shaping = r["config"]["train"]["reward"].get("format_reward", 0.0)
    if shaping:
        parts += [f"Reward shaping in this demo: +{shaping} for a well-formed answer block (`reward.format_reward`; "
                  "the paper's reward has none), so that a policy trained from scratch for minutes gets a signal; "
                  f"`grpo.format_shaping: {r['config']['train']['grpo'].get('format_shaping', 'additive')}` "
                  "(tiebreak: the bonus only separates equally correct samples). `acc/*` are unshaped.", ""]
    call = r["config"]["train"]["reward"].get("call_reward", 0.0)
    if call:
        parts += [f"Call bonus: +{call} when an io_mixed assertion repeats the question's call, right output "
                  "or not (`reward.call_reward`; not in the paper): shaping like the format bonus, never "
                  "graded as correct.", ""]
    g = r["config"]["train"]["grpo"]
    if g.get("dynamic_sampling"):
        what = ("rewards less the shaping bonuses" if g.get("dynamic_signal") == "correctness" else "rewards")
        parts += [f"Dynamic sampling (DAPO; the paper has none): a group whose {what} are all equal is replaced "
                  f"by a group of a further prompt, up to {g.get('dynamic_max_rounds')} prompt batches per step "
                  "(`grpo.dynamic_sampling`, `grpo.dynamic_signal`); the training curve's rewards cover every "
                  "generated sample.", ""]
    if r.get("gain"):
        parts += ["Gain of SFT + GRPO over SFT only (held-out accuracies): "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in sorted(r["gain"].items())) + ".", ""]
    rows = read_metrics(out / "grpo")
    if rows:
        k = max(1, min(5, len(rows) // 2))
        def avg(key: str, part: list) -> str:
            vals = [x[key] for x in part if x.get(key) is not None]
            return f"{sum(vals) / len(vals):.4f}" if vals else "-"
        parts += ["## GRPO training curve", "",
                  f"Mean over the first / last {k} steps (training prompts, T = 1 samples):", "",
                  "| metric | first | last |", "|---|---|---|"]
        for key in ("reward/mean", "format_rate", "acc/io", "acc/oi", "acc/path", "acc/state", "acc/coverage",
                    "acc/nil", "response_len/mean", "truncated_rate"):
            parts.append(f"| {key} | {avg(key, rows[:k])} | {avg(key, rows[-k:])} |")
        parts.append("")
    if reward_png is not None:
        parts += ["## Reward curve (GRPO, training prompts)", "", f"![reward]({reward_png})", ""]
    e = r["hf_export"]
    parts += ["## Hugging Face export", "",
              f"`{e['dir']}` reloaded with transformers as {e['architecture']}: max |logit difference| "
              f"{e['max_abs_logit_diff']:.2e}, argmax agreement {e['argmax_agree']:.3f}.", "",
              "## Timings (s)", "", json.dumps(r["timings_s"]), ""]
    return "\n".join(parts)
