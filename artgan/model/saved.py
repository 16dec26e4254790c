"""Saved models that carry what inference needs: class names, input size, resize policy.

The metadata rides inside the `.keras` zip as `artgan.json` (Keras ignores extra members),
so a model file copied on its own still predicts with the right labels and preprocessing.
A model file is checked before anything in it is read, by artgan or by Keras: a regular
file whose members inflate to at most `MAX_MODEL_BYTES` (zip bombs are refused).
`class_names` are ArtGAN's, indexed by ArtGAN's class ids (so models carry over to the full
data); `classes` are the ids the training data had, the only ones the model ever predicts
and the ones users read about (`model_classes`).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artgan.errors import ArtganError
from artgan.files import atomic_path, check_zip_sizes

if TYPE_CHECKING:
    import keras

METADATA_MEMBER = "artgan.json"
MAX_METADATA_BYTES = 1 << 20  # artgan.json: class names and settings, a few kB
MAX_MODEL_BYTES = 2 << 30  # every member inflated (real models: 12 MB to about 0.2 GB)


def save_model(model: keras.Model, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write `model` and its metadata to `path` atomically (temp file, then rename)."""
    with atomic_path(path, suffix=".keras") as temporary:  # Keras insists on the suffix
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2, default=str))
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The artgan metadata of a saved model, without loading TensorFlow; the file is checked
    first (`check_model_file`), so `load_model` hands Keras only checked files."""
    path = Path(path)
    check_model_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_sizes(path, archive.infolist(), MAX_MODEL_BYTES)
            member = archive.getinfo(METADATA_MEMBER)
            if member.file_size > MAX_METADATA_BYTES:
                raise ArtganError(
                    f"{path}: refused: its {METADATA_MEMBER} inflates to "
                    f"{member.file_size} bytes, more than the limit of "
                    f"{MAX_METADATA_BYTES}"
                )
            return json.loads(archive.read(member))
    except (
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        zlib.error,
        EOFError,
        NotImplementedError,
    ) as error:
        raise ArtganError(
            f"{path}: not an artgan model (.keras file with {METADATA_MEMBER}): {error}"
        ) from None


def check_model_file(path: Path) -> None:
    """ArtganError unless `path` is a regular file (a folder or a named pipe is named as such)."""
    if path.is_dir():
        raise ArtganError(f"{path}: is a directory, not a model file (.keras)")
    if not path.exists():
        raise ArtganError(f"{path}: model file not found")
    if not path.is_file():
        raise ArtganError(f"{path}: not a regular file (a named pipe or device), not a model file")


def model_classes(metadata: dict[str, Any]) -> list[int]:
    """The class ids a saved model predicts, sorted: its training data's classes. Models
    saved before they were recorded: every class (`load_model` reads them off the model)."""
    return [int(i) for i in metadata.get("classes", range(len(metadata["class_names"])))]


def load_model(path: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    """(model, metadata) for a saved artgan model, compiled-free for inference."""
    import keras

    from artgan.model.batchnorm import CUSTOM_OBJECTS
    from artgan.model.crnn import CLASS_IDS_LAYER

    metadata = read_metadata(path)
    try:
        model = keras.models.load_model(path, compile=False, custom_objects=CUSTOM_OBJECTS)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a file it refuses
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ArtganError(f"{path}: Keras refused to load this model: {reason}") from None
    if "classes" not in metadata and CLASS_IDS_LAYER in {layer.name for layer in model.layers}:
        spread = model.get_layer(CLASS_IDS_LAYER).get_weights()[0]  # (used, all) 0/1 matrix
        metadata["classes"] = sorted(int(i) for i in spread.argmax(axis=1))
    return model, metadata
