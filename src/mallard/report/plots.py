"""The report's plots: matplotlib figures rendered to inline base64 PNG data URIs.

Figures are built as `Figure` objects on an Agg canvas, never through pyplot: no global figure
registry to leak into (nothing to close), and the process-wide backend is left alone for any
notebook or app that imports mallard. PNG rather than SVG: matplotlib's SVG carries namespace
URLs and text in comments, a PNG data URI carries nothing but pixels. The PNG "Software"
metadata is dropped so the same data always gives the same bytes.

matplotlib and scikit-learn are imported when a plot is drawn, not with the module: together
they cost over a second of start-up, and only rendering a report draws.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BEST = "#d95f02"
OTHER = "#7f7f7f"
MAIN = "#1b6ca8"


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def cv_spread(cv: pl.DataFrame, metric: str, greater_is_better: bool) -> str:
    """Per candidate: a box over all fold scores, each config's folds as a dot row beside it,
    the config with the best mean in orange. Candidates sorted best first, top to bottom."""
    means = cv.group_by("candidate", "params").agg(pl.col("value").mean().alias("mean"))
    best = means.sort(
        "mean", "params", descending=[greater_is_better, False], nulls_last=True
    ).unique("candidate", keep="first", maintain_order=True)
    order = list(best["candidate"])
    fig, (ax,) = _figure(8, 1.2 + 0.6 * len(order))
    for y, candidate in enumerate(order):
        rows = cv.filter(pl.col("candidate") == candidate)
        values = rows["value"].drop_nulls().to_numpy()
        if values.size:
            ax.boxplot([values], positions=[y], orientation="horizontal", widths=0.5)
        best_params = best.filter(pl.col("candidate") == candidate)["params"][0]
        configs = sorted(set(rows["params"]))
        # Deterministic offsets instead of random jitter: the same run always draws the same.
        offsets = np.linspace(-0.25, 0.25, len(configs)) if len(configs) > 1 else [0.0]
        for offset, params in zip(offsets, configs, strict=True):
            folds = rows.filter(pl.col("params") == params)["value"].to_numpy()
            colour = BEST if params == best_params else OTHER
            ax.scatter(folds, np.full(folds.size, y + offset), s=12, color=colour, zorder=3)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} per CV fold ({'higher' if greater_is_better else 'lower'} is better)")
    ax.grid(axis="x", alpha=0.3)
    return _uri(fig)


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, model_id: str) -> str:
    fig, (ax,) = _figure(5.5, 5)
    ax.scatter(actual, predicted, s=10, alpha=0.6, color=MAIN)
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color=OTHER, linestyle="--", label="perfect")
    ax.set(xlabel="actual", ylabel="predicted", title=f"{model_id}: test split")
    ax.legend(loc="upper left")
    return _uri(fig)


def residuals(actual: np.ndarray, predicted: np.ndarray, model_id: str) -> str:
    residual = actual - predicted
    fig, (left, right) = _figure(10, 4, ncols=2)
    left.scatter(predicted, residual, s=10, alpha=0.6, color=MAIN)
    left.axhline(0, color=OTHER, linestyle="--")
    left.set(xlabel="predicted", ylabel="actual - predicted", title=f"{model_id}: residuals")
    right.hist(residual, bins=min(30, max(5, residual.size // 5)), color=MAIN)
    right.axvline(0, color=OTHER, linestyle="--")
    right.set(xlabel="actual - predicted", ylabel="rows", title="residual distribution")
    return _uri(fig)


def _mark_threshold(ax: Axes, x: float, y: float, threshold: float) -> None:
    ax.scatter([x], [y], color=BEST, zorder=4, label=f"decision threshold {threshold:.3g}")


def roc(y_true: np.ndarray, score: np.ndarray, threshold: float | None, title: str) -> str:
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, thresholds = roc_curve(y_true, score)
    fig, (ax,) = _figure(5.5, 5)
    ax.plot(fpr, tpr, color=MAIN, label=f"ROC (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color=OTHER, linestyle="--", label="chance")
    if threshold is not None:
        # roc_curve's thresholds fall; the last one at or above the decision threshold is it.
        i = (
            int(np.flatnonzero(thresholds >= threshold)[-1])
            if (thresholds >= threshold).any()
            else 0
        )
        _mark_threshold(ax, fpr[i], tpr[i], threshold)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return _uri(fig)


def pr(y_true: np.ndarray, score: np.ndarray, threshold: float | None, title: str) -> str:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, score)
    fig, (ax,) = _figure(5.5, 5)
    ap = average_precision_score(y_true, score)
    ax.plot(recall, precision, color=MAIN, label=f"PR (average precision {ap:.3f})")
    ax.axhline(y_true.mean(), color=OTHER, linestyle="--", label="positive rate (chance)")
    if threshold is not None and thresholds.size:
        i = int(np.searchsorted(thresholds, threshold).clip(0, thresholds.size - 1))
        _mark_threshold(ax, recall[i], precision[i], threshold)
    ax.set(xlabel="recall", ylabel="precision", title=title, ylim=(0, 1.05))
    ax.legend(loc="lower left")
    return _uri(fig)


def threshold_curve(y_true: np.ndarray, score: np.ndarray, threshold: float | None) -> str:
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, score)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    fig, (ax,) = _figure(7, 4.5)
    ax.plot(thresholds, precision, label="precision", color=MAIN)
    ax.plot(thresholds, recall, label="recall", color="#1b9e77")
    ax.plot(thresholds, f1, label="F1", color="#7570b3")
    if threshold is not None:
        ax.axvline(
            threshold, color=BEST, linestyle="--", label=f"decision threshold {threshold:.3g}"
        )
    ax.set(xlabel="threshold on P(positive)", ylabel="score", ylim=(0, 1.05))
    ax.legend(loc="best")
    return _uri(fig)


def heatmap(
    values: np.ndarray,
    rows: list[str],
    columns: list[str],
    labels: list[list[str]] | None,
    *,
    xlabel: str,
    ylabel: str,
    cmap: str,
    scale: str,
    centred: bool = False,
) -> str:
    """A matrix with each cell's text; `centred` uses a diverging map symmetric around 0."""
    fig, (ax,) = _figure(1.5 + 0.8 * len(columns), 1.2 + 0.5 * len(rows))
    limit = float(np.nanmax(np.abs(values))) if values.size else 1.0
    limit = limit or 1.0
    span = (-limit, limit) if centred else (0.0, limit)
    image = ax.imshow(values, cmap=cmap, vmin=span[0], vmax=span[1], aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=45 if len(columns) > 4 else 0)
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if labels is not None:
        for i, row in enumerate(labels):
            for j, text in enumerate(row):
                dark = abs(values[i, j]) > 0.6 * limit
                ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label=scale)
    return _uri(fig)


def cluster_sizes(clusters: list[str], sizes: list[int]) -> str:
    fig, (ax,) = _figure(6, 1.2 + 0.4 * len(clusters))
    ax.barh(clusters, sizes, color=MAIN)
    ax.invert_yaxis()
    ax.set(xlabel="rows", ylabel="cluster")
    for y, size in enumerate(sizes):
        ax.text(size, y, f" {size}", va="center")
    return _uri(fig)


def cluster_map(standardised: np.ndarray, clusters: list[str], sizes: list[int]) -> str:
    """Clusters placed by a 2-D PCA of their standardised feature means, area ~ rows."""
    centred = standardised - standardised.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    share = s**2 / max(float((s**2).sum()), 1e-12)
    fig, (ax,) = _figure(6, 5)
    area = 2000 * np.asarray(sizes, dtype=float) / max(max(sizes), 1)
    ax.scatter(coords[:, 0], coords[:, 1], s=area, alpha=0.5, color=MAIN)
    for (x, y), name in zip(coords, clusters, strict=True):
        ax.annotate(name, (x, y), ha="center", va="center")
    ax.set(xlabel=f"PC1 ({share[0]:.0%})", ylabel=f"PC2 ({share[1]:.0%})")
    ax.margins(0.25)
    return _uri(fig)


def importance(features: list[str], mean: np.ndarray, std: np.ndarray, model_id: str) -> str:
    fig, (ax,) = _figure(7, 1.2 + 0.35 * len(features))
    ax.barh(features, mean, xerr=std, color=MAIN, ecolor=OTHER, capsize=3)
    ax.invert_yaxis()
    ax.axvline(0, color=OTHER, linewidth=0.8)
    ax.set(xlabel="importance (mean ± std)", title=model_id)
    return _uri(fig)
