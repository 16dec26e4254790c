"""From label files to batches: ArtGAN label tables (`labels`), decoding with an on-disk
cache (`images`), a task's splits (`splits`) and Keras batch generators (`generators`).
Reads `config` only; never imports models or KerasTuner."""
