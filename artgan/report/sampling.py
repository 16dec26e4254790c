"""What a report of a large run computes on a sample of the paintings, and the words that
say so on the page.

Predictions, scores, confusion matrices, calibration, examples and model cards cover every
validation painting when the model reads the activations of its frozen backbone that the
search cached (`artgan.model.features.predict_from_embeddings`: seconds for 25,000
paintings). What stays heavy at full size uses at most `SAMPLE_SIZE` paintings of a split,
stratified by class (`artgan.data.labels.stratified_rows`), the same ones for the same run:
feature similarity and suspect labels (nearest neighbours and k-means over every pair), the
colour + texture baseline (features of every painting, then a logistic regression), and a
model whose backbone must run on every image it scores. Runs no larger than that are
reported whole, as before.
"""

from artgan.data.labels import stratified_rows

#: The most paintings of a split that the heavy sections of a report use.
SAMPLE_SIZE = 2000


def sample_rows(labels, seed):
    """Positions of the (at most `SAMPLE_SIZE`) paintings the heavy sections use."""
    return stratified_rows(labels, SAMPLE_SIZE, seed)


def sample_of(split, seed):
    """`split` (a `SplitImages`) itself, or its paintings at `sample_rows`."""
    rows = sample_rows(split.labels, seed)
    return split if len(rows) == len(split) else split.subset(rows)


def sampling_notes(evaluated, baselines, seed):
    """Sentences for the top of the page: which sections used a sample, and of how many
    paintings (none when nothing was sampled)."""
    notes = []
    for m in evaluated:
        if len(m.split) < m.population:
            notes.append(
                f"Model {m.rank} (trial {m.trial_id}) was re-run on a stratified "
                f"sample of {len(m.split):,} of the {m.population:,} validation "
                "paintings: its backbone would run on every painting (the search "
                "cached no activations it can read), so its scores, confusion "
                "matrix, calibration and examples are of that sample."
            )
    best = evaluated[0].sampled() if evaluated else None
    if best is not None and len(best.split) < len(evaluated[0].split):
        notes.append(
            f"Feature similarity and suspect labels are computed on a stratified "
            f"sample of {len(best.split):,} of the {len(evaluated[0].split):,} "
            "validation paintings (they compare every pair of paintings)."
        )
    b = baselines
    if b["train_images"] < b["train_total"] or b["val_images"] < b["val_total"]:
        notes.append(
            f"The colour + texture baseline is trained on a stratified sample of "
            f"{b['train_images']:,} of {b['train_total']:,} training paintings and "
            f"scored on {b['val_images']:,} of {b['val_total']:,} validation paintings."
        )
    if notes:
        notes.append(
            f"Each sample keeps every class's share of its split and is the same "
            f"for the same run (seed {seed}); at most {SAMPLE_SIZE:,} paintings a "
            "split, so the report's cost stays bounded at any size."
        )
    return notes
