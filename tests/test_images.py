"""Decoding by content, mode conversion, resize policies, bomb guard and the on-disk cache."""

import csv
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from artgan.data import images
from artgan.data.images import (
    RESIZE_POLICIES,
    CachedImages,
    ImageError,
    cache_images,
    decode_image,
)
from artgan.errors import ArtganError
from artgan.paths import REPO_ROOT

from support import killed_on_exit, wait_for

PROVENANCE_FORMAT = {"RIFF": "WEBP", "GIF": "GIF", "PNG": "PNG", "JPEG": "JPEG"}


# ----------------------------------------------------------------------------- helpers


def wild_rows(data_dir):
    with open(data_dir / "web-genre-wild" / "provenance.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def wikiart_paths(data_dir, n):
    """The first n training images of wikiart-style7, in label-file order."""
    root = data_dir / "wikiart-style7"
    with open(root / "style_train.csv", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return [root / "images" / rel for rel, _ in rows[:n]]


def save(img, path, fmt, **kwargs):
    """Save with an explicit format, so a `.jpg` name can hold PNG/GIF/WebP content."""
    img.save(path, format=fmt, **kwargs)
    return path


def png_header_only(path, width, height):
    """A PNG signature plus an IHDR chunk claiming width x height, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = (
        struct.pack(">I", len(ihdr))
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    return path


def run_child(code, *args):
    """Start a Python process in the repo that runs `code` with sys.argv[1:] = args."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ----------------------------------------------------------------------------- real web images


def test_every_wild_image_decodes_by_content(data_dir):
    rows = wild_rows(data_dir)
    assert len(rows) == 71
    lying = 0
    for row in rows:
        path = data_dir / "web-genre-wild" / "images" / row["image_path"]
        with Image.open(path) as im:
            assert im.format == PROVENANCE_FORMAT[row["real_format"]], path
            if row["width"]:
                assert im.size == (int(row["width"]), int(row["height"])), path
        lying += im.format != "JPEG" and path.suffix in (".jpg", ".jpeg")
        out = decode_image(path, 32)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8, path
        assert out.max() > 0, path
    assert lying == 62  # 43 WebP, 12 PNG and 7 GIF files named .jpg/.jpeg


def test_largest_real_jpeg_passes_the_bomb_guard(data_dir):
    path = data_dir / "web-genre-wild" / "images" / "landscape" / "landscape_012.jpg"
    with Image.open(path) as im:
        assert im.size == (5678, 4436)
    assert decode_image(path, 48, "crop").shape == (48, 48, 3)


# ----------------------------------------------------------------------------- modes


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = save(Image.new("L", (20, 10), 77), tmp_path / "gray.jpg", "PNG")
    out = decode_image(path, 16, "stretch")
    assert (out == 77).all()


def test_bilevel_image(tmp_path):
    path = save(Image.new("1", (20, 20), 1), tmp_path / "bits.jpg", "PNG")
    assert (decode_image(path, 20, "stretch") == 255).all()


def test_rgba_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (20, 20), (0, 0, 255, 255))
    img.paste((0, 0, 0, 0), (0, 0, 10, 20))  # left half fully transparent black
    path = save(img, tmp_path / "alpha.jpg", "PNG")
    out = decode_image(path, 20, "stretch")
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:] == (0, 0, 255)).all()


def test_half_transparent_is_blended_with_white(tmp_path):
    path = save(Image.new("RGBA", (8, 8), (0, 0, 0, 128)), tmp_path / "half.png", "PNG")
    out = decode_image(path, 8, "stretch")
    assert np.abs(out.astype(int) - 127).max() <= 1


def test_la_transparent_becomes_white(tmp_path):
    path = save(Image.new("LA", (8, 8), (0, 0)), tmp_path / "la.png", "PNG")
    assert (decode_image(path, 8, "stretch") == 255).all()


def test_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    plain = save(img, tmp_path / "palette.jpg", "PNG")
    assert (decode_image(plain, 10, "stretch") == (10, 200, 30)).all()
    img.paste(0, (0, 0, 5, 10))
    clear = save(img, tmp_path / "palette_trns.png", "PNG", transparency=0)
    out = decode_image(clear, 10, "stretch")
    assert (out[:, :5] == 255).all() and (out[:, 5:] == (10, 200, 30)).all()


def test_cmyk_jpeg(tmp_path):
    path = save(
        Image.new("CMYK", (32, 32), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG", quality=95
    )
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    out = decode_image(path, 16).astype(int)
    assert np.abs(out - (255, 0, 0)).max() <= 12


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    levels = np.repeat(np.array([[0, 32768, 65535]], np.uint16), 4, axis=0).repeat(4, axis=1)
    path = save(Image.fromarray(levels), tmp_path / "deep.jpg", "PNG")
    with Image.open(path) as im:
        assert im.mode == "I;16"
    out = decode_image(path, 12, "stretch")
    assert (out[:, :4] == 0).all() and (out[:, 4:8] == 128).all() and (out[:, 8:] == 255).all()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(tmp_path, fmt):
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    extra = {"lossless": True} if fmt == "WEBP" else {}
    path = save(
        red, tmp_path / "anim.jpg", fmt, save_all=True, append_images=[blue], duration=100, **extra
    )
    with Image.open(path) as im:
        assert im.n_frames == 2
    out = decode_image(path, 16, "stretch").astype(int)
    assert np.abs(out - (255, 0, 0)).max() <= 2


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: the stored 40x20 landscape shows as 20x40 portrait
    path = save(
        Image.new("RGB", (40, 20), (200, 0, 0)),
        tmp_path / "rotated.jpg",
        "JPEG",
        exif=exif.tobytes(),
    )
    out = decode_image(path, 40)
    assert (out[:, :10] == 0).all() and (
        out[:, 30:] == 0
    ).all()  # padded left/right, not top/bottom
    assert out[:, 12:28].min(axis=(0, 1))[0] > 150


# ----------------------------------------------------------------------------- resize policies


def three_bands(tmp_path):
    """300x100: blue | red | green, each 100x100."""
    img = Image.new("RGB", (300, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 100))
    img.paste((0, 255, 0), (200, 0, 300, 100))
    return save(img, tmp_path / "bands.png", "PNG")


def test_letterbox_keeps_aspect_and_pads_black(tmp_path):
    wide = save(Image.new("RGB", (200, 100), (200, 100, 50)), tmp_path / "wide.png", "PNG")
    out = decode_image(wide, 64)
    assert (out[:16] == 0).all() and (out[48:] == 0).all()
    assert (out[16:48] == (200, 100, 50)).all()
    tall = save(Image.new("RGB", (100, 200), (200, 100, 50)), tmp_path / "tall.png", "PNG")
    out = decode_image(tall, 64, "letterbox")
    assert (out[:, :16] == 0).all() and (out[:, 48:] == 0).all()
    assert (out[:, 16:48] == (200, 100, 50)).all()


def test_crop_takes_the_centre_square(tmp_path):
    out = decode_image(three_bands(tmp_path), 32, "crop")
    assert out.shape == (32, 32, 3)
    assert (out == (255, 0, 0)).all()


def test_stretch_squashes_the_whole_image(tmp_path):
    out = decode_image(three_bands(tmp_path), 33, "stretch")
    assert out.shape == (33, 33, 3)
    assert (out[:, :10] == (0, 0, 255)).all()
    assert (out[:, 12:21] == (255, 0, 0)).all()
    assert (out[:, 23:] == (0, 255, 0)).all()


def test_small_images_are_enlarged(tmp_path):
    path = save(Image.new("RGB", (18, 9), (9, 99, 199)), tmp_path / "tiny.gif", "PNG")
    for policy in RESIZE_POLICIES:
        out = decode_image(path, 64, policy)
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_bad_policy_or_size_is_a_user_error(tmp_path):
    path = save(Image.new("RGB", (8, 8)), tmp_path / "x.png", "PNG")
    with pytest.raises(ArtganError, match="resize policy"):
        decode_image(path, 8, "zoom")
    with pytest.raises(ArtganError, match="positive integer"):
        decode_image(path, 0)
    with pytest.raises(ArtganError, match="resize policy"):
        cache_images([path], 8, "pad", cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------- reduced-scale JPEG


def test_big_jpeg_is_decoded_at_reduced_scale(data_dir, monkeypatch):
    path = data_dir / "web-genre-wild" / "images" / "landscape" / "landscape_023.jpg"
    full = decode_image(path, 64)  # drafted
    drafted = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafted.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = decode_image(path, 64)
    # 6848x4248 -> letterbox 64x40 needs only a 1/8-scale decode: 856x531 pixels.
    assert drafted == [((64, 40), (856, 531))]
    assert np.array_equal(out, full)

    monkeypatch.setattr(images, "_draft_jpeg", lambda *args: None)
    undrafted = decode_image(path, 64)
    assert np.abs(out.astype(int) - undrafted.astype(int)).mean() < 2.0  # same picture


def test_small_jpeg_is_not_drafted(data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, *a: calls.append(a))
    path = data_dir / "web-genre-wild" / "images" / "still_life" / "stillife_122.jpg"
    assert decode_image(path, 64).shape == (64, 64, 3)
    assert calls == []


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("side", [100_000, 11_000])  # Pillow's own error / warning thresholds
def test_decompression_bomb_header_is_refused(tmp_path, side):
    path = png_header_only(tmp_path / "bomb.jpg", side, side)
    with pytest.raises(ImageError, match="decompression.bomb") as info:
        decode_image(path, 32)
    assert str(path) in str(info.value)


def test_max_pixels_is_checked_before_decoding(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (100, 100)), tmp_path / "big.png", "PNG")
    monkeypatch.setattr(images, "MAX_PIXELS", 9_999)
    with pytest.raises(ImageError, match=r"too large: 100x100") as info:
        decode_image(path, 32)
    assert str(path) in str(info.value)


def make_bad_files(tmp_path, data_dir):
    good = wikiart_paths(data_dir, 1)[0].read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    fake_jpeg = tmp_path / "header_only.jpg"
    fake_jpeg.write_bytes(good[:300])
    return {
        truncated: "truncated",
        noise: "not a recognised image",
        empty: "not a recognised image",
        fake_jpeg: "truncated",
        tmp_path / "missing.jpg": "file not found",
        tmp_path: "directory",
    }


def test_bad_files_raise_image_error_naming_the_path(tmp_path, data_dir):
    for path, reason in make_bad_files(tmp_path, data_dir).items():
        with pytest.raises(ImageError) as info:
            decode_image(path, 32)
        assert str(path) in str(info.value) and reason in str(info.value)
        assert isinstance(info.value, ArtganError) and info.value.path == str(path)


def test_a_named_pipe_is_refused_at_once_not_read(tmp_path):
    """`Image.open` on a FIFO would wait for a writer for ever; the watchdog releases it after
    10 s so that a regression fails instead of hanging."""
    fifo = tmp_path / "painting.jpg"
    os.mkfifo(fifo)
    outcome = []

    def decode():
        try:
            decode_image(fifo, 32)
        except ImageError as error:
            outcome.append(error)

    worker = threading.Thread(target=decode, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(10)
    if worker.is_alive():  # blocked in open(): become its writer, close, let it end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
    assert time.monotonic() - started < 5, "decoding a FIFO blocked"
    assert str(outcome[0]) == (
        f"{fifo}: not a regular file but a named pipe (FIFO); only image files are read"
    )
    with pytest.raises(ImageError, match="not a regular file but a character device"):
        decode_image("/dev/zero", 32)


def test_bad_files_in_cache_are_reported_not_fatal(tmp_path, data_dir, cache_dir):
    bad = make_bad_files(tmp_path, data_dir)
    good = wikiart_paths(data_dir, 3)
    paths = [good[0], *list(bad)[:3], good[1], *list(bad)[3:], good[2]]
    result = cache_images(paths, 32, progress=False)
    bad_rows = {i for i, p in enumerate(paths) if p in bad}
    assert result.ok.tolist() == [i not in bad_rows for i in range(len(paths))]
    assert set(result.errors) == bad_rows
    for i in bad_rows:
        assert bad[paths[i]] in result.errors[i]
        assert not result.array[i].any()
    for i, p in ((0, good[0]), (4, good[1]), (len(paths) - 1, good[2])):
        assert np.array_equal(result.array[i], decode_image(p, 32))
    again = cache_images(paths, 32, progress=False)
    assert again.decoded == 0 and again.errors == result.errors and (again.ok == result.ok).all()


# ----------------------------------------------------------------------------- cache reuse


def test_cache_is_reused_and_invalidated(tmp_path, data_dir, cache_dir):
    paths = []
    for src in wikiart_paths(data_dir, 8):
        paths.append(tmp_path / f"{len(paths)}.jpg")
        shutil.copy(src, paths[-1])

    first = cache_images(paths, 32, progress=False)
    assert isinstance(first, CachedImages) and first.decoded == 8 and first.ok.all()
    assert first.cache_file.parent == cache_dir and first.cache_file.suffix == ".npy"
    assert isinstance(first.array, np.memmap) and not first.array.flags.writeable
    assert first.array.shape == (8, 32, 32, 3) and first.array.dtype == np.uint8
    meta = json.loads(first.cache_file.with_suffix(".json").read_text())
    assert meta["paths"] == [str(p) for p in paths] and meta["size"] == 32
    assert meta["resize"] == "letterbox" and meta["ok"] == [True] * 8 and meta["created"]

    second = cache_images([str(p) for p in paths], 32, progress=False)
    assert second.decoded == 0 and second.cache_file == first.cache_file
    assert np.array_equal(second.array, first.array)

    def rebuilt(*args, **kwargs):
        result = cache_images(*args, progress=False, **kwargs)
        assert result.decoded > 0 and result.cache_file != first.cache_file
        return result

    rebuilt(paths, 48)
    rebuilt(paths, 32, "crop")
    rebuilt(paths[:-1], 32)
    rebuilt(paths[::-1], 32)
    stat = paths[3].stat()
    os.utime(paths[3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = rebuilt(paths, 32)
    assert np.array_equal(touched.array, first.array)  # same pixels, new key
    with open(paths[5], "ab") as handle:
        handle.write(b"\0")  # new size, same mtime second-ish: still a new key
    rebuilt(paths, 32)
    assert cache_images(paths, 32, progress=False).decoded == 0


def test_empty_path_list(cache_dir):
    result = cache_images([], 16, progress=False)
    assert result.array.shape == (0, 16, 16, 3) and result.ok.shape == (0,) and result.errors == {}


def test_parallel_decode_matches_serial(tmp_path, data_dir, monkeypatch):
    paths = wikiart_paths(data_dir, 80)
    serial = cache_images(paths, 32, cache_dir=tmp_path / "serial", workers=1, progress=False)

    def no_in_process(jobs, out):
        raise AssertionError("workers=2 must use the process pool")

    monkeypatch.setattr(images, "_decode_in_process", no_in_process)
    parallel = cache_images(paths, 32, cache_dir=tmp_path / "parallel", workers=2, progress=False)
    assert serial.decoded == parallel.decoded == 80
    assert serial.ok.all() and parallel.ok.all()
    assert np.array_equal(serial.array, parallel.array)


# ----------------------------------------------------------------------------- processes sharing a cache

CONCURRENT_CHILD = """
    import json, os, sys, time
    from pathlib import Path
    from artgan.data.images import cache_images
    cache_dir, paths_file, ready, go = sys.argv[1:]
    paths = json.loads(Path(paths_file).read_text())
    Path(ready).touch()
    while not os.path.exists(go):
        time.sleep(0.001)
    result = cache_images(paths, 32, cache_dir=cache_dir, workers=1, progress=False)
    print(json.dumps({"decoded": result.decoded, "sum": int(result.array.sum(dtype="int64"))}))
"""


def test_two_processes_decode_only_once(tmp_path, data_dir):
    paths = [str(p) for p in wikiart_paths(data_dir, 80)]
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(json.dumps(paths))
    go = tmp_path / "go"
    readies = [tmp_path / f"ready{i}" for i in range(2)]
    children = [
        run_child(CONCURRENT_CHILD, tmp_path / "cache", paths_file, r, go) for r in readies
    ]
    wait_for(lambda: all(r.exists() for r in readies), 30, "both children to be ready")
    go.touch()  # both start at once: one builds, the other waits on the lock, then reuses
    reports = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    assert sorted(r["decoded"] for r in reports) == [0, 80]
    assert reports[0]["sum"] == reports[1]["sum"] > 0


KILLED_CHILD = """
    import json, sys, time
    from pathlib import Path
    import artgan.data.images as images
    import artgan.files
    artgan.files.SAVE_SECONDS = 0  # record progress after every row
    real = images.decode_image
    def slow(*args, **kwargs):
        time.sleep(0.2)  # slow enough to be killed mid-build
        return real(*args, **kwargs)
    images.decode_image = slow
    images.cache_images(json.loads(Path(sys.argv[2]).read_text()), 32, cache_dir=sys.argv[1], workers=1, progress=False)
"""


def test_killed_build_resumes_where_it_stopped(tmp_path, data_dir):
    """kill -9 half way: the partial array is never trusted as a cache, and the next build
    decodes only the rows the killed one had not recorded as done."""
    cache = tmp_path / "cache"
    paths = [str(p) for p in wikiart_paths(data_dir, 40)]
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(json.dumps(paths))
    key = images.cache_key(paths, 32, "letterbox")
    record = cache / f"{key}.progress.json"
    child = run_child(KILLED_CHILD, cache, paths_file)
    try:
        wait_for(
            lambda: record.exists() and json.loads(record.read_text())["done"] >= 5,
            60,
            "the child to decode 5 rows",
            child,
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    done = json.loads(record.read_text())["done"]
    assert 5 <= done < 40 and (cache / f"{key}.npy.partial").exists()
    assert not (cache / f"{key}.npy").exists() and not (cache / f"{key}.json").exists()

    result = cache_images(paths, 32, cache_dir=cache, progress=False)  # stale lock does not block
    assert result.decoded == 40 - done and result.ok.all()
    assert not list(cache.glob("*.partial")) and not record.exists()
    expected = np.stack([decode_image(path, 32) for path in paths])
    assert np.array_equal(result.array, expected)  # rows before and after the kill


def test_a_script_without_a_main_guard_gets_an_error_not_a_hang(tmp_path, data_dir):
    """Decoding workers run the main script again; unguarded, that used to wait forever for
    the lock its parent holds. Now the worker refuses and the parent says why."""
    paths = tmp_path / "paths.json"
    paths.write_text(json.dumps([str(p) for p in wikiart_paths(data_dir, images.MIN_PARALLEL)]))
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from artgan.data.images import cache_images\n"
        f"paths = json.loads(open({str(paths)!r}).read())\n"
        f"cache_images(paths, 32, cache_dir={str(tmp_path / 'cache')!r}, workers=2, progress=False)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "if __name__ == '__main__':" in done.stderr


def test_incomplete_or_damaged_cache_is_rebuilt(tmp_path, data_dir, cache_dir):
    paths = wikiart_paths(data_dir, 10)
    first = cache_images(paths, 32, progress=False)
    expected = np.array(first.array)
    meta = first.cache_file.with_suffix(".json")

    meta.unlink()  # killed between writing the array and its JSON
    assert cache_images(paths, 32, progress=False).decoded == 10

    with open(first.cache_file, "r+b") as handle:  # array cut short
        handle.truncate(first.cache_file.stat().st_size // 2)
    again = cache_images(paths, 32, progress=False)
    assert again.decoded == 10 and np.array_equal(again.array, expected)

    meta.write_text("{not json")
    assert cache_images(paths, 32, progress=False).decoded == 10


def process_tree(root):
    """{pid: (parent pid, start time)} of every process below `root`, from /proc (Linux)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        found[int(stat.parent.name)] = (int(fields[1]), fields[19])
    tree, todo = {}, [root]
    while todo:
        parent = todo.pop()
        below = {pid: info for pid, info in found.items() if info[0] == parent}
        tree.update(below)
        todo += below
    return tree


def still_running(pid, start):
    """Neither gone, nor a zombie, nor a new process that reuses the pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == start


POOL_CHILD = """
    import json, sys
    from pathlib import Path
    from artgan.data.images import cache_images
    cache_images(json.loads(Path(sys.argv[2]).read_text()), 32, cache_dir=sys.argv[1], workers=2, progress=False)
"""


def test_kill_9_during_a_pool_build_leaves_no_process_behind(tmp_path, data_dir):
    """The pool's forkserver and workers must go with the process that started the build."""
    stuck = tmp_path / "stuck.jpg"
    os.mkfifo(stuck)  # opening it blocks until a writer comes: the build never finishes
    paths = [str(p) for p in wikiart_paths(data_dir, 200)] + [str(stuck)]
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(json.dumps(paths))
    child = run_child(POOL_CHILD, tmp_path / "cache", paths_file)
    tree = {}

    def pool_started():  # the forkserver below the child, its 2 workers below that
        below = process_tree(child.pid)
        return sum(parent != child.pid for parent, _ in below.values()) >= 2 and below

    def survivors():
        return [pid for pid, (_, start) in tree.items() if still_running(pid, start)]

    try:
        with killed_on_exit(child):
            wait_for(
                lambda: any((tmp_path / "cache").glob("*.partial")),
                60,
                "the build to start",
                child,
            )
            tree = wait_for(pool_started, 60, "the forkserver and 2 workers", child)
            child.send_signal(signal.SIGKILL)
            child.wait()
        wait_for(lambda: not survivors(), 3, f"every process of the pool ({tree}) to end")
    finally:
        for pid in survivors():  # a failed check must not leave them running
            os.kill(pid, signal.SIGKILL)
