"""The KerasTuner glue, and the only subpackage that imports keras_tuner: the hypermodel
(`hypermodel`), the tuner and its trial recording (`tuner`), pruning (`pruning`), the time
budget (`budget`), the run folder (`output`) and its trials table and best models
(`results`), KerasTuner's private parts (`_kt_compat`, nowhere else) and scale-out over
processes and machines (`parallel`)."""
