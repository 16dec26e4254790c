"""The report's feature-similarity section: k-NN and clustering scores of intermediate
layers against the handcrafted baseline, a t-SNE map and nearest-neighbour thumbnails."""

from __future__ import annotations

import numpy as np
import pandas as pd

from artgan.evaluation.metrics import NEIGHBOURS, feature_scores, nearest_neighbours
from artgan.report.figures import (
    tsne_figure,
)

MAX_TSNE_POINTS = 2000
MAX_QUERIES = 8


def similarity_section(evaluated, layer, baselines, writer, thumbnails):
    """Features of the best model: t-SNE map, neighbours of sample paintings, scores per
    layer and model (handcrafted features as the reference)."""
    from artgan.model.features import save_features

    if not evaluated:
        return {"note": "No saved model, so no learned features (best/ is empty).", "rows": []}
    sampled_from = len(evaluated[0].split)
    evaluated = [m.sampled() for m in evaluated]
    best = evaluated[0]
    labels = best.split.labels
    if len(labels) < 2 * NEIGHBOURS or len(np.unique(labels)) < 2:
        return {
            "note": f"Only {len(labels)} validation image(s) in "
            f"{len(np.unique(labels))} class(es): too few to compare features.",
            "rows": [],
        }
    layer = layer or next(iter(best.features))
    rows = [
        {
            "source": f"model {m.rank} (trial {m.trial_id})",
            "layer": name,
            **feature_scores(values, m.split.labels),
        }
        for m in evaluated
        for name, values in m.features.items()
    ]
    rows.append(
        {
            "source": "colour + texture (training-free)",
            "layer": "handcrafted",
            **feature_scores(baselines["val_features"], baselines["val_labels"]),
        }
    )
    names = best.metadata["class_names"]
    features = best.features[layer]
    features_file = f"features_model_1_{layer}.npz"
    save_features(writer.path(features_file), features, labels, best.split.paths, names, layer)
    coordinates, sampled = tsne(features, labels)
    writer.csv(
        pd.DataFrame(
            {
                "path": np.asarray(best.split.paths)[sampled],
                "label": labels[sampled],
                "x": coordinates[:, 0],
                "y": coordinates[:, 1],
            }
        ),
        f"tsne_model_1_{layer}.csv",
    )
    figure = tsne_figure(coordinates, labels[sampled], names)
    return {
        "note": None,
        "layer": layer,
        "rows": rows,
        "k": rows[0]["k"],
        "chance": float(np.bincount(labels).max() / len(labels)),
        "tsne_points": int(len(sampled)),
        "images": int(len(labels)),
        "sampled_from": sampled_from if sampled_from > len(labels) else None,
        "figure": writer.figure(
            figure, f"tsne_model_1_{layer}", f"t-SNE map of {layer} features, coloured by class"
        ),
        "queries": neighbour_queries(best, features, thumbnails),
        "features_file": features_file,
    }


def tsne(features, labels):
    """2-D t-SNE of L2-normalised features (a random MAX_TSNE_POINTS of them, if more)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from artgan.evaluation.metrics import l2_normalise

    rows = np.arange(len(labels))
    if len(rows) > MAX_TSNE_POINTS:
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(rows, MAX_TSNE_POINTS, replace=False))
    unit = l2_normalise(features[rows])
    if unit.shape[1] > 50 and len(rows) > 50:
        unit = PCA(50, random_state=0).fit_transform(unit)
    perplexity = float(min(30, max(2, (len(rows) - 1) // 3)))
    coordinates = TSNE(
        2, perplexity=perplexity, init="pca", max_iter=500, random_state=0
    ).fit_transform(unit)
    return coordinates, rows


def neighbour_queries(best, features, thumbnails):
    """One random query painting per class (at most MAX_QUERIES) and its nearest neighbours."""
    indices, distances = nearest_neighbours(features, NEIGHBOURS)
    labels, names = best.split.labels, best.metadata["class_names"]
    paths, root = best.split.paths, best.split.table.image_root
    rng = np.random.default_rng(0)
    queries = []
    for label in np.unique(labels)[:MAX_QUERIES]:
        query = int(rng.choice(np.flatnonzero(labels == label)))
        neighbours = [
            {
                "path": paths[j],
                "label": names[labels[j]],
                "same": bool(labels[j] == label),
                "distance": float(d),
                "thumbnail": thumbnails(root / paths[j]),
            }
            for j, d in zip(indices[query], distances[query])
        ]
        queries.append(
            {
                "path": paths[query],
                "label": names[label],
                "thumbnail": thumbnails(root / paths[query]),
                "neighbours": neighbours,
            }
        )
    return queries
