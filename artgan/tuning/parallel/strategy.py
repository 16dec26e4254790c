"""Which devices a search uses: `tf.distribute` for several GPUs inside one trial, and one
group of GPUs per local worker process."""

import logging

from artgan.errors import ArtganError

log = logging.getLogger(__name__)


def distribution_strategy(spec):
    """The tf.distribute strategy for one trial, from the spec's `distribution:` section."""
    if spec.distribution.strategy == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        log.info(f"MirroredStrategy over {strategy.num_replicas_in_sync} device(s)")
        return strategy
    return None


def gpu_groups(gpus, workers):
    """'0,1,2,3' over 2 workers -> ['0,2', '1,3']: every worker gets its own GPUs."""
    if gpus is None:
        return None
    ids = [g.strip() for g in str(gpus).split(",") if g.strip()]
    if workers and len(ids) < workers:
        raise ArtganError(
            f"`gpus` lists {len(ids)} GPU(s) for {workers} workers: give each worker at least "
            "one (two processes on one GPU each try to take all its memory)"
        )
    return [",".join(ids[i::workers]) for i in range(workers)] if workers else []
