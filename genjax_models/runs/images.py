"""Writing image grids as PNG files (Pillow)."""

from __future__ import annotations

import math
import os

import numpy as np


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles images into one uint8 picture.

    Args:
      images: float[n, h, w, c] in [-1, 1] (c = 1 or 3).
      columns: images per row (default: ceil(sqrt(n))).
      padding: pixels of black border between tiles.

    Returns:
      uint8[rows * (h + padding) + padding, columns * (w + padding) + padding, c].
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"image_grid expects float[n, h, w, 1 or 3], got shape {images.shape}")
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    grid = np.zeros(
        (rows * (h + padding) + padding, columns * (w + padding) + padding, c), np.uint8
    )
    for i in range(n):
        top = padding + (i // columns) * (h + padding)
        left = padding + (i % columns) * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def save_image_grid(
    images: np.ndarray, path: str, columns: int | None = None, scale: int = 2
) -> str:
    """Writes ``image_grid(images)`` to ``path`` as PNG, enlarged ``scale`` times; returns path."""
    from PIL import Image

    grid = image_grid(images, columns)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)
    return path
