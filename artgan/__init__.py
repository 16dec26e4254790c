"""artgan: KerasTuner architecture search for classifying paintings (ArtGAN / WikiArt)."""

__version__ = "0.1.0"
