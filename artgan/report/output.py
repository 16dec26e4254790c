"""The report's files on disk and the images embedded in its HTML.

`Writer` writes only into an empty folder or one an earlier report made: such a folder holds
`.artgan-report`, the names of the files that report wrote (each added before its file is
written, so a killed report is listed too). A rerun removes exactly those files (links
themselves, never what they point to), and refuses to replace any file it did not write.
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
from artgan.errors import ArtganError
from artgan.files import clear_write_errors, csv_text

THUMBNAIL_SIZE = 96
MANIFEST = "metrics.json"
MARKER = ".artgan-report"  # what makes a folder a report folder: the files artgan wrote there


def data_uri(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class Writer:
    """Writes the report's files and remembers them, so a rerun can remove stale ones."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.marker = self.folder / MARKER
        #: the folders this writer makes (the output folder and missing parents), outermost first
        self.made = [p for p in (*reversed(self.folder.parents), self.folder) if not p.exists()]
        with clear_write_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        self.files = []
        self._remove_previous()

    @contextmanager
    def discarded_on_failure(self):
        """On any error, remove what this writer wrote and the folders it made (when they
        are empty then), so a failed report leaves nothing behind; then re-raise."""
        try:
            yield self
        except BaseException:
            for name in set(self.files):
                (self.folder / name).unlink(missing_ok=True)
            if self.folder in self.made:  # the marker of a folder this writer made goes too
                self.marker.unlink(missing_ok=True)
            for folder in reversed(self.made):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise

    def _remove_previous(self):
        """Delete what the previous report here wrote, as its marker lists it; a folder without
        the marker must be empty (it is not artgan's). The marker starts afresh."""
        if self.marker.is_symlink() or (self.marker.exists() and not self.marker.is_file()):
            raise ArtganError(
                f"{self.marker}: a link or folder, not a file artgan wrote; "
                "artgan does not write a report here: choose another `out` folder"
            )
        if not self.marker.exists():
            foreign = sorted(entry.name for entry in self.folder.iterdir())
            if foreign:
                named = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise ArtganError(
                    f"{self.folder}: holds {named} but no {MARKER} file, so an artgan report did "
                    "not make it (reports of earlier versions have none: delete one yourself); "
                    "artgan writes reports only into empty folders or its own: choose another "
                    "`out` folder"
                )
        with clear_write_errors(self.marker):
            previous = self.marker.read_text(encoding="utf-8") if self.marker.exists() else ""
            for name in previous.splitlines():
                target = self.folder / name
                if _plain_name(name) and (target.is_symlink() or target.is_file()):
                    target.unlink()  # a link itself, never what it points to
            self.marker.write_text("", encoding="utf-8")

    def path(self, name):
        """Where to write `name`, listed in the marker first; a file already there was not
        written by artgan (the previous report's are gone), so it is refused, not replaced."""
        if name not in self.files:
            target = self.folder / name
            if not _plain_name(name):
                raise ValueError(f"report file name {name!r} is not a plain file name")
            if target.exists() or target.is_symlink():
                raise ArtganError(
                    f"{target}: exists and artgan did not write it; not replaced: "
                    "move it away or choose another `out` folder"
                )
            with clear_write_errors(self.marker), open(self.marker, "a", encoding="utf-8") as out:
                out.write(name + "\n")
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
        return {
            "src": data_uri(buffer.getvalue(), "image/png"),
            "png": f"{name}.png",
            "svg": f"{name}.svg",
            "alt": alt,
        }

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


def _plain_name(name):
    """A file name inside the folder itself: no separators, no `.`/`..`, not the marker."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..", MARKER)
        and not any(character in name for character in "/\\\n\0")
    )


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
