"""Training-free image features: the yardstick deep features must beat.

Colour histograms (HSV, which separates hue from lighting) plus simple texture statistics
(gradient-orientation histogram, edge density) computed from the cached uint8 pixels. They
need no model, so reports and similarity search work before any search has run.
"""

from collections.abc import Iterable

import cv2
import numpy as np

HUE_BINS, SATURATION_BINS, VALUE_BINS = 12, 4, 4
ORIENTATION_BINS = 8


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """Normalised joint HSV histogram of an (H, W, 3) uint8 RGB image."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist(
        [hsv], [0, 1, 2], None, [HUE_BINS, SATURATION_BINS, VALUE_BINS], [0, 180, 0, 256, 0, 256]
    ).ravel()
    return histogram / max(histogram.sum(), 1.0)


def texture_statistics(image: np.ndarray) -> np.ndarray:
    """Magnitude-weighted gradient-orientation histogram plus edge density and contrast."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    dx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    dy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    magnitude, angle = cv2.cartToPolar(dx, dy)
    bins = (angle % np.pi) / np.pi * ORIENTATION_BINS
    orientation = np.bincount(
        np.minimum(bins.astype(int), ORIENTATION_BINS - 1).ravel(),
        weights=magnitude.ravel(),
        minlength=ORIENTATION_BINS,
    )
    orientation = orientation / max(orientation.sum(), 1e-6)
    edges = float((magnitude > 0.25).mean())
    return np.concatenate([orientation, [edges, float(gray.std())]])


def handcrafted_features(images: Iterable[np.ndarray]) -> np.ndarray:
    """(N, D) float32 features for an (N, H, W, 3) uint8 array (e.g. a cache memmap)."""
    return np.stack(
        [np.concatenate([colour_histogram(image), texture_statistics(image)]) for image in images]
    ).astype(np.float32)
