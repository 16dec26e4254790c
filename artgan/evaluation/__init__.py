"""Scoring saved models: prediction and evaluation on labelled folders (`predict`),
training-free baseline features (`baselines`) and array-in, number-out metrics (`metrics`)."""
