"""PNG curves of a run's metrics.jsonl (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from execverify_jax.rl.infra.metrics import read_metrics

DEFAULT_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("reward/mean", "reward/io_mixed/mean", "reward/oi/mean", "reward/codegen/mean", "reward/toy/mean")),
    ("accuracy", ("acc/io", "acc/oi", "acc/path", "acc/state", "acc/coverage", "acc/pass_rate", "format_rate")),
    ("response length", ("response_len/mean",)),
    ("optimisation", ("train/grad_norm", "train/clip_frac", "train/approx_kl", "policy/entropy_mc")),
    ("time per step (s)", ("time/generate", "time/logprob", "time/score_wait", "time/update")),
    ("SFT", ("sft/ce", "sft/accuracy")),
)


def _smooth(y: list[float], k: int) -> list[float]:
    if k <= 1:
        return y
    out = []
    for i in range(len(y)):
        w = y[max(0, i - k + 1): i + 1]
        out.append(sum(w) / len(w))
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None,
             panels: Sequence[tuple[str, Sequence[str]]] = DEFAULT_PANELS, smooth: int = 1) -> list[Path]:
    """Writes one PNG per non-empty panel (RUN/plots/<panel>.png by default); returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    if not rows:
        raise ValueError(f"{run_dir}: no metrics.jsonl rows to plot")
    out_dir = Path(out) if out is not None else Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for title, keys in panels:
        present = [k for k in keys if any(r.get(k) is not None for r in rows)]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for k in present:
            pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None]
            ax.plot([p[0] for p in pts], _smooth([p[1] for p in pts], smooth), label=k)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / (title.split(" (")[0].replace(" ", "_") + ".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
