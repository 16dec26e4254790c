"""artgan: KerasTuner architecture search for classifying paintings (ArtGAN / WikiArt).

The package reads like the data's path, one subpackage per concern, lowest first:

    errors, paths, files, runfolder,  shared vocabulary: errors, places, safe and resumable
    progress, registry, formatting    writes, the run folder's layout and its trials-table
                                      rows, progress bars (logged lines when not a terminal),
                                      registries of named implementations, how numbers read
                                      in reports and model cards
    config/      experiment specs and search spaces; what makes two searches comparable
    data/        label files, decoding + cache, a task's splits, Keras batch generators
    model/       CRNN builders, pretrained backbones, cached embeddings, features, saved models
    tuning/      KerasTuner glue: hypermodel, tuner, run folder, results, parallel/ scale-out
    evaluation/  predictions and scores of saved models; array-in, number-out metrics
    report/      the HTML report of a run folder
    similar/     similar-painting search over the National Gallery of Art open data
    cli/         `python -m artgan ...`, one module per command group

Rules (checked by tests/test_layout.py, which reads every import):
1. A module imports its own layer or lower ones only: data/ and model/ never import
   keras_tuner, tuning/, report/ or cli/.
2. Only tuning/ imports keras_tuner, and only tuning/_kt_compat.py touches its private parts;
   only model/_tf_compat.py touches TensorFlow's (tensorflow.python).
3. report/ reads run folders through `artgan.runfolder` (the one layout, also used by the
   writer); it never imports tuning/.
4. similar/ and evaluation/ never import tuning/, report/ or cli/.
5. No import cycles. Imports inside functions only load something heavy (TensorFlow or what
   imports it, scikit-learn, matplotlib), so commands that do not need it start at once.
6. The library never prints (it logs; the CLI shows the messages), never names a command-line
   flag (messages name the parameter, `fresh`; the CLI shows `--fresh`), writes only where it
   is told (spec, arguments, `ARTGAN_CACHE`), and changes nothing when imported.
"""

__version__ = "0.1.0"
