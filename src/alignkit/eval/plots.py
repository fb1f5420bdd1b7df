"""The report's figures as PNG bytes: training curves, win rates with intervals, over-optimisation.

Plain data in (lists of numbers and dicts), PNG out; no run folders, no HTML. matplotlib is imported inside
each function, with the Agg backend (no display needed), so importing alignkit never pulls it in.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from alignkit.errors import AlignkitError

# One panel per quantity; each lists the metrics.jsonl keys that measure it, whichever recipe wrote them.
# Keys starting with "eval/" are held-out evaluations and are drawn dashed with markers.
CURVE_PANELS = {
    "loss": ("loss", "eval/loss"),
    "reward": ("objective/scores", "objective/rlhf_reward", "reward", "rewards/margins", "margin",
               "eval/score", "eval/reward", "eval/rewards/margins", "eval/margin"),
    "accuracy": ("rewards/accuracies", "accuracy", "mean_token_accuracy",
                 "eval/rewards/accuracies", "eval/accuracy", "eval/mean_token_accuracy"),
    "KL": ("objective/kl", "kl", "eval/kl"),
}
SMOOTH_ABOVE = 30  # a training series longer than this is also drawn as a moving average over 1/10 of it


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise AlignkitError("the report's plots need matplotlib, which is not installed: "
                            "pip install matplotlib (or rerun `bash scripts/setup.sh`)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def curve_series(rows: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{panel: {key: (steps, values)}} for every CURVE_PANELS key present; non-finite values are skipped."""
    panels = {}
    for panel, keys in CURVE_PANELS.items():
        found = {}
        for key in keys:
            points = [(row["step"], row[key]) for row in rows
                      if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
                      and isinstance(row.get("step"), (int, float))]
            if points:
                found[key] = ([s for s, _ in points], [v for _, v in points])
        if found:
            panels[panel] = found
    return panels


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def training_curves_png(title: str, panels: dict) -> bytes:
    """One row of panels (loss, reward, accuracy, KL: those present) from curve_series()."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.0), squeeze=False)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for i, (key, (steps, values)) in enumerate(series.items()):
            color = f"C{i}"
            if key.startswith("eval/"):
                ax.plot(steps, values, "o--", color=color, markersize=4, label=key)
            elif len(values) > SMOOTH_ABOVE:
                ax.plot(steps, values, color=color, alpha=0.3, linewidth=1)
                smoothed = moving_average(values, len(values) // 10)
                ax.plot(steps, smoothed, color=color, label=f"{key} (smoothed)")
            else:
                ax.plot(steps, values, color=color, label=key)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def win_rates_png(rows: list[tuple[str, dict, float | None]]) -> bytes:
    """Win rates as points with their 95% intervals, one line per (label, win_rate dict, LC win rate)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]  # first row on top
    for y, (_, w, lc) in zip(ys, rows):
        ax.errorbar(w["win_rate"], y, xerr=[[w["win_rate"] - w["ci_low"]], [w["ci_high"] - w["win_rate"]]],
                    fmt="o", color="C0", capsize=4)
        if lc is not None:
            ax.plot(lc, y, "D", color="C1", markerfacecolor="none")
    ax.plot([], [], "o", color="C0", label="win rate, 95% CI")
    ax.plot([], [], "D", color="C1", markerfacecolor="none", label="length-controlled")
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(ys, [label for label, _, _ in rows])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("win rate against the baseline (ties count half)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def overoptimization_png(points: list[dict], title: str = "over-optimisation") -> bytes:
    """Proxy and gold reward against sqrt(KL), one point per checkpoint (see overoptimization_plot)."""
    plt = _pyplot()
    points = sorted(points, key=lambda p: p["kl"])
    # A k1 estimate can dip slightly below 0 from sampling noise; the distance it stands for cannot.
    distance = [math.sqrt(max(p["kl"], 0.0)) for p in points]
    fig, proxy_ax = plt.subplots(figsize=(7.5, 4.0))
    gold_ax = proxy_ax.twinx()  # the two rewards have different units: one axis each
    proxy_ax.plot(distance, [p["proxy"] for p in points], "o-", color="C0",
                  label="proxy reward (reward model)")
    gold_ax.plot(distance, [p["gold"] for p in points], "s-", color="C1", label="gold reward")
    peak = max(range(len(points)), key=lambda i: points[i]["gold"])
    gold_ax.axvline(distance[peak], color="C1", linestyle=":", linewidth=1)
    gold_ax.margins(y=0.15)  # room above the peak for its label
    gold_ax.annotate(f"gold peaks at step {points[peak]['step']}", (distance[peak], points[peak]["gold"]),
                     textcoords="offset points", xytext=(6, 8), fontsize=8, color="C1")
    proxy_ax.set_xlabel("sqrt(KL(policy || reference))")
    proxy_ax.set_ylabel("proxy reward", color="C0")
    gold_ax.set_ylabel("gold reward", color="C1")
    proxy_ax.grid(alpha=0.3)
    handles = proxy_ax.get_legend_handles_labels()[0] + gold_ax.get_legend_handles_labels()[0]
    proxy_ax.legend(handles, [h.get_label() for h in handles], fontsize=8, ncol=2, frameon=False,
                    loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below the axes: never over a curve
    proxy_ax.set_title(title, loc="left", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def overoptimization_plot(points: list[dict], path: str | Path) -> Path:
    """Plot proxy and gold reward against sqrt(KL) and write the PNG to `path` (atomically); returns the path.

    `points`: one dict per checkpoint with "step", "kl" (KL(policy || reference), nats per sample), "proxy"
    (the reward model's mean score) and "gold" (the gold judge's mean score). The x axis is sqrt(KL), the
    distance that Gao et al. 2022 ("Scaling Laws for Reward Model Overoptimization") plot rewards against:
    the proxy keeps rising, while the gold reward peaks and falls once optimising the proxy stops helping.
    """
    from alignkit.data.io import write_bytes

    check_overoptimization_points(points, "overoptimization_plot(points)")
    return write_bytes(path, overoptimization_png(points))


def check_overoptimization_points(points, where: str) -> list[dict]:
    """The points themselves when each is {"step": int, "kl": number, "proxy": number, "gold": number}."""
    if not isinstance(points, list) or not points:
        raise AlignkitError(f"{where}: expected a non-empty list of objects with step, kl, proxy and gold, "
                            f"one per checkpoint, got {type(points).__name__} {str(points)[:40]}")
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            raise AlignkitError(f"{where} item {i}: expected an object with step, kl, proxy and gold, "
                                f"got {point!r}")
        for key in ("step", "kl", "proxy", "gold"):
            value = point.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise AlignkitError(f"{where} item {i}: {key!r} must be a finite number, got {value!r} "
                                    "(each item needs step, kl, proxy and gold)")
    return points
