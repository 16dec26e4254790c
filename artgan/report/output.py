"""The report's files on disk and the images embedded in its HTML.

`Writer` records every file it writes, and the list ends up in `metrics.json`, so a rerun
into the same folder can remove what the previous report wrote before writing its own.
Figures and thumbnails are embedded as data URIs: the report is one self-contained page.
"""

from __future__ import annotations

import base64
import io
import json
from contextlib import contextmanager
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from artgan.data.images import ImageError, decode_image
from artgan.files import clear_write_errors, csv_text

THUMBNAIL_SIZE = 96
MANIFEST = "metrics.json"


def data_uri(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class Writer:
    """Writes the report's files and remembers them, so a rerun can remove stale ones."""

    def __init__(self, folder):
        self.folder = Path(folder)
        with clear_write_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        self.files = []
        self._remove_previous()

    def _remove_previous(self):
        try:
            previous = json.loads((self.folder / MANIFEST).read_text()).get("files", [])
        except (OSError, ValueError, AttributeError):
            return
        for name in previous:
            if isinstance(name, str) and "/" not in name and "\\" not in name:
                (self.folder / name).unlink(missing_ok=True)

    def path(self, name):
        self.files.append(name)
        return self.folder / name

    @contextmanager
    def writing(self, name):
        """The path of `name`, with errors writing it as one-line ArtganErrors."""
        with clear_write_errors(self.folder / name):
            yield self.path(name)

    def figure(self, figure, name, alt):
        """Save PNG and SVG; return what the template needs, PNG embedded as a data URI."""
        FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        with self.writing(f"{name}.png") as path:
            path.write_bytes(buffer.getvalue())
        with self.writing(f"{name}.svg") as path:
            figure.savefig(path, format="svg")
        return {"src": data_uri(buffer.getvalue(), "image/png"), "png": f"{name}.png",
                "svg": f"{name}.svg", "alt": alt}

    def csv(self, frame, name):
        with self.writing(name) as path:
            path.write_text(csv_text(frame), encoding="utf-8")
        return name

    def text(self, text, name):
        with self.writing(name) as path:
            path.write_text(text, encoding="utf-8")
        return self.folder / name

    def manifest(self, metrics):
        """Write `metrics` (JSON-ready) plus the list of every file written, itself included:
        the list the next run's `_remove_previous` reads."""
        with self.writing(MANIFEST) as path:
            metrics["files"] = sorted(set(self.files))
            path.write_text(json.dumps(metrics, indent=1))
        return path


def image_uri(pixels, size=THUMBNAIL_SIZE):
    """A JPEG data URI of uint8 RGB pixels, `size` px on its longer side."""
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return data_uri(buffer.getvalue(), "image/jpeg")


class Thumbnails:
    """Small JPEG data URIs of the original image files (decoded once per path)."""

    def __init__(self, resize):
        self.resize = resize
        self._uris = {}

    def __call__(self, path):
        path = str(path)
        if path not in self._uris:
            self._uris[path] = self._encode(path)
        return self._uris[path]

    def _encode(self, path):
        """None for an unreadable file: the template shows "unreadable" in its place."""
        try:
            pixels = decode_image(path, THUMBNAIL_SIZE, self.resize)
        except ImageError:
            return None
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=82)
        return data_uri(buffer.getvalue(), "image/jpeg")
