"""How good is the similarity search, judged by the museum's own metadata?

Every indexed image is a query; the others are ranked by cosine similarity. A result is
relevant when it shares an artist (a named hand, not an "Anonymous" grouping), a style term
or a theme term with the query; each relation is scored separately. The query's own image
file and byte-identical copies of it are removed from the candidates (they are the same
photograph), and queries with no relevant candidate are skipped, as their scores are undefined.

Per query, with R relevant candidates among N and hits@i relevant results in the top i:
  precision@k = hits@k / k             recall@k = hits@k / R
  AP@k        = sum over relevant ranks i <= k of (hits@i / i), divided by min(k, R)
  RR          = 1 / rank of the first relevant result (whole ranking)
and mAP@k / MRR are their means over queries. The random baseline is the exact expectation
of each metric under a uniformly random ranking of the same candidates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from artgan.errors import ArtganError

RELEVANCE = {"artist": "artist_ids", "style": "style", "theme": "theme"}
METRICS = ("precision", "recall", "map", "mrr")
RANDOM = "random (expected)"


def query_metrics(relevant_in_rank_order, k):
    """(precision@k, recall@k, AP@k, RR) for one query, given its whole ranking's relevance."""
    relevant = np.asarray(relevant_in_rank_order, dtype=bool)
    total = int(relevant.sum())
    if total == 0:
        raise ValueError("a query needs at least one relevant candidate")
    top = relevant[:k]
    hits_at = np.cumsum(top)
    ranks = np.flatnonzero(top) + 1
    average_precision = float(np.sum(hits_at[ranks - 1] / ranks)) / min(k, total)
    first = int(np.argmax(relevant)) + 1
    return top.sum() / k, top.sum() / total, average_precision, 1.0 / first


def random_expected(candidates, relevant, k):
    """Exact expected (precision@k, recall@k, AP@k, RR) of a uniformly random ranking.

    P(rank i relevant) = R/N; given that, the i-1 earlier slots hold (i-1)(R-1)/(N-1)
    relevant items on average, so E[rel_i * hits@i / i] = R/N * (1 + (i-1)(R-1)/(N-1)) / i.
    The first relevant item is at rank r with probability prod_{j<r} (N-R-j+1)/(N-j+1) * R/(N-r+1).
    """
    n, r = int(candidates), int(relevant)
    top = min(k, n)
    i = np.arange(1, top + 1, dtype=np.float64)
    others = (i - 1) * (r - 1) / (n - 1) if n > 1 else np.zeros_like(i)
    average_precision = float(np.sum(r / n * (1 + others) / i)) / min(k, r)
    ranks = np.arange(1, n - r + 2, dtype=np.float64)
    left = n - ranks + 1  # unseen candidates when rank r is drawn
    miss_before = np.concatenate([[1.0], np.cumprod((left - r) / left)[:-1]])
    reciprocal_rank = float(np.sum(miss_before * r / left / ranks))
    return top * r / n / k, top / n, average_precision, reciprocal_rank


def shares(label_sets) -> np.ndarray:
    """(n, n) bool: items i and j have at least one label in common."""
    vocabulary = sorted({label for labels in label_sets for label in labels}, key=str)
    column = {label: j for j, label in enumerate(vocabulary)}
    onehot = np.zeros((len(label_sets), len(vocabulary)), np.float32)
    for i, labels in enumerate(label_sets):
        onehot[i, [column[label] for label in labels]] = 1
    return (onehot @ onehot.T) > 0


def evaluate_scores(scores, label_sets, file_groups, k):
    """Mean metrics (and their random expectation) of ranking by `scores[query, candidate]`."""
    scores = np.asarray(scores)
    relevant = shares(label_sets)
    groups = np.asarray(file_groups)
    same_file = groups[:, None] == groups[None, :]
    found, chance = [], []
    for q in range(len(scores)):
        candidates = np.flatnonzero(~same_file[q])
        if not relevant[q, candidates].any():
            continue
        order = candidates[np.argsort(-scores[q, candidates], kind="stable")]
        found.append(query_metrics(relevant[q, order], k))
        chance.append(random_expected(len(candidates), relevant[q, candidates].sum(), k))
    if not found:
        return 0, None, None
    return len(found), np.mean(found, axis=0), np.mean(chance, axis=0)


def evaluate(collection, indexes, k=10):
    """One row per (relevance, extractor) plus the random baseline, on the images every index shares."""
    if k < 1:
        raise ArtganError(f"`k` must be at least 1, got {k}")
    if not indexes:
        raise ArtganError(
            "no similarity index to evaluate; run `python -m artgan similar index` first"
        )
    table = collection.table.set_index("objectid", drop=False)
    common = set(table.index)
    for index in indexes:
        check_current(index, table)
        common &= set(int(i) for i in index.ids)
    if len(common) < 2:
        raise ArtganError(
            "fewer than 2 images are in every index and in the collection; nothing to evaluate"
        )
    ids = sorted(common)
    rows = table.loc[ids]
    groups = rows["sha256"].to_numpy()
    results = []
    for relation, column in RELEVANCE.items():
        labels = list(rows[column])
        chance = None
        for index in indexes:
            position = {int(objectid): row for row, objectid in enumerate(index.ids)}
            vectors = index.vectors[[position[objectid] for objectid in ids]]
            queries, means, chance = evaluate_scores(vectors @ vectors.T, labels, groups, k)
            results.append(row_for(relation, index.name, queries, means, index.layer))
        results.insert(len(results) - len(indexes), row_for(relation, RANDOM, queries, chance))
    frame = pd.DataFrame(results)
    frame.attrs.update(k=k, images=len(ids), dropped=len(table) - len(ids))
    return frame


def row_for(relation, extractor, queries, means, layer="-"):
    values = (
        dict(zip(METRICS, means)) if means is not None else dict.fromkeys(METRICS, float("nan"))
    )
    return {
        "relevance": relation,
        "extractor": extractor,
        "layer": layer,
        "queries": queries,
        **values,
    }


def check_current(index, table):
    """An index built from other image files would silently score the wrong pictures."""
    for objectid, digest in zip(index.ids, index.sha256):
        objectid = int(objectid)
        if objectid in table.index and table.at[objectid, "sha256"] != digest:
            raise ArtganError(
                f"index {index.name!r} is out of date: the image of object {objectid} changed; "
                "rerun `python -m artgan similar index`"
            )


def format_table(frame) -> str:
    """The evaluation as aligned text, with @k in the column names."""
    k = frame.attrs.get("k", "k")
    shown = frame.rename(
        columns={"precision": f"P@{k}", "recall": f"R@{k}", "map": f"mAP@{k}", "mrr": "MRR"}
    )
    return shown.to_string(index=False, float_format=lambda value: f"{value:.3f}")
