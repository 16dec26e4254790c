"""Networks: the CRNN builders (`crnn`), pretrained backbones and their weights
(`backbones`, `torch_weights`), cached backbone activations (`embeddings`), named feature
layers and extractors (`features`) and saved models with their metadata (`saved`).
Reads `config` and `data`; knows nothing of KerasTuner."""
