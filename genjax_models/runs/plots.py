"""Pictures of the discriminative / generative comparison, written as PNG with matplotlib.

Each function draws one figure from plain arrays (no model code here) and returns the path it
wrote. matplotlib is imported inside the functions (object-oriented API, no pyplot state, no
display needed); install it with ``pip install 'genjax-models[data]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CLASS_COLORS = ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
GRID_POINTS = 200


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "matplotlib is needed for plots: pip install 'genjax-models[data]'"
        ) from e
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(figure: Any, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def feature_grid(
    features: np.ndarray, points: int = GRID_POINTS, margin: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``points`` x ``points`` grid over ``features: float[n, 2]`` from each feature's minimum
    to its 99.5th percentile (the last few outliers are left out of view), plus a margin.

    Returns:
      ``(xx, yy, grid)``: float64[points, points] twice and float32[points * points, 2].
    """
    low, high = features.min(axis=0), np.percentile(features, 99.5, axis=0)
    pad = margin * (high - low)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], points)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], points)
    xx, yy = np.meshgrid(xs, ys)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def _scatter(ax: Any, features: np.ndarray, labels: np.ndarray, names: Sequence[str], **kw) -> None:
    for k, name in enumerate(names):
        rows = labels == k
        ax.scatter(*features[rows].T, s=6, color=CLASS_COLORS[k], label=name, **kw)


def _axes_labels(ax: Any, feature_names: Sequence[str], title: str, xx: Any, yy: Any) -> None:
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_xlabel(feature_names[0].replace("_", " ").replace(" mm", " (mm)"))
    ax.set_ylabel(feature_names[1].replace("_", " ").replace(" mm", " (mm)"))
    ax.set_title(title, fontsize=10)


def plot_decision_boundaries(
    path: str,
    features: np.ndarray,
    labels: np.ndarray,
    posteriors: dict[str, Callable[[np.ndarray], np.ndarray]],
    *,
    feature_names: Sequence[str] = ("x0", "x1"),
    class_names: Sequence[str] = ("class 0", "class 1"),
) -> str:
    """One panel per classifier: ``p(y=1 | x)`` shaded over the scatter, the boundary at 0.5.

    Args:
      path: PNG to write.
      features: float[n, 2] points to scatter (e.g. the test split); labels: int[n] in {0, 1}.
      posteriors: ``{title: posterior}`` where ``posterior(grid: float32[m, 2])`` returns
        float[m, 2] class probabilities.
    """
    from matplotlib.colors import LinearSegmentedColormap

    fig = _figure(4.2 * len(posteriors), 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(posteriors), sharey=True))
    xx, yy, grid = feature_grid(features)
    shades = LinearSegmentedColormap.from_list("classes", [CLASS_COLORS[0], "w", CLASS_COLORS[1]])
    for ax, (title, posterior) in zip(axes, posteriors.items(), strict=True):
        p1 = np.asarray(posterior(grid))[:, 1].reshape(xx.shape)
        ax.contourf(xx, yy, p1, levels=np.linspace(0, 1, 11), cmap=shades, alpha=0.3)
        _scatter(ax, features, labels, class_names, alpha=0.6, linewidths=0)
        ax.contour(xx, yy, p1, levels=[0.5], colors="black", linewidths=1.5)
        _axes_labels(
            ax, feature_names, f"{title}: p({class_names[1]} | x), boundary at 0.5", xx, yy
        )
    axes[0].legend(loc="upper left", markerscale=2)
    return _save(fig, path)


def _gaussian_log_density(grid: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    diff = grid - mean
    precision = np.linalg.inv(covariance)
    _, log_det = np.linalg.slogdet(covariance)
    maha = np.einsum("nd,de,ne->n", diff, precision, diff)
    return -0.5 * (maha + log_det + len(mean) * np.log(2 * np.pi))


def plot_class_densities(
    path: str,
    features: np.ndarray,
    labels: np.ndarray,
    gaussians: dict[str, np.ndarray],
    samples: np.ndarray,
    sample_labels: np.ndarray,
    *,
    feature_names: Sequence[str] = ("x0", "x1"),
    class_names: Sequence[str] = ("class 0", "class 1"),
    title: str = "generative model",
) -> str:
    """Data (faint), each class density ``p(x | y)`` as contours, samples ``x ~ p(x | y)``
    (crosses) and the Bayes boundary ``p(y | x) = 0.5`` (dashed).

    Args:
      features, labels: float[n, 2], int[n] data points.
      gaussians: ``prior`` [K], ``mean`` [K, 2], ``covariance`` [K, 2, 2] (data units).
      samples, sample_labels: float[m, 2] draws and the classes they were drawn for.
    """
    fig = _figure(5.2, 4.4)
    ax = fig.subplots()
    xx, yy, grid = feature_grid(np.concatenate([features, samples]))
    _scatter(ax, features, labels, class_names, alpha=0.15, linewidths=0)
    log_joint = []
    for k, name in enumerate(class_names):
        log_density = _gaussian_log_density(grid, gaussians["mean"][k], gaussians["covariance"][k])
        log_joint.append(log_density + np.log(gaussians["prior"][k]))
        peak = log_density.max()  # contours at 1, 2, 3 "sigma" of a 2-D Gaussian
        levels = sorted(peak - 0.5 * np.array([9.0, 4.0, 1.0]))
        ax.contour(
            xx, yy, log_density.reshape(xx.shape), levels=levels, colors=CLASS_COLORS[k],
            linestyles="solid",
        )  # fmt: skip
        rows = sample_labels == k
        ax.scatter(
            *samples[rows].T, s=18, marker="x", color=CLASS_COLORS[k], label=f"{name} samples"
        )
    margin = (log_joint[1] - log_joint[0]).reshape(xx.shape)
    ax.contour(xx, yy, margin, levels=[0.0], colors="black", linestyles="--", linewidths=1.5)
    _axes_labels(ax, feature_names, f"{title}: p(x | y) contours, samples, Bayes boundary", xx, yy)
    ax.legend(loc="upper left", markerscale=1.5)
    return _save(fig, path)


def plot_class_rows(
    path: str,
    images: np.ndarray,
    *,
    row_names: Sequence[str] | None = None,
    title: str = "",
) -> str:
    """A grid with one row per class: ``images: float[rows, columns, H, W, C]`` in [-1, 1]."""
    rows, columns = images.shape[:2]
    fig = _figure(0.55 * columns + 0.6, 0.55 * rows + (0.4 if title else 0.1))
    axes = fig.subplots(rows, columns, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    for r in range(rows):
        for c in range(columns):
            ax = axes[r, c]
            pixels = np.clip((images[r, c] + 1.0) / 2.0, 0.0, 1.0)
            ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(
                    str(r if row_names is None else row_names[r]), rotation=0, labelpad=10
                )
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
