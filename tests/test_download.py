"""`python -m artgan data wikiart|nga` against a local HTTP server on 127.0.0.1.

The server serves files the tests build (a zip with the ArtGAN layout, NGA-format CSVs, IIIF
image URLs), honours `Range` (206), and can misbehave once per request on demand: drop the
connection mid-body, answer 503, or serve a truncated image; or on every request, as a hostile
or broken mirror would (`server.modes`). Any connection to another address fails the test.
"""

import hashlib
import io
import socket
import threading
import time
import warnings
import zipfile
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from artgan.cli import main
from artgan.data import download
from artgan.data.download import Retry, fetch_bytes, fetch_file
from artgan.data.nga_download import get_nga, select_images
from artgan.data.wikiart_download import get_wikiart, unpack
from artgan.errors import ArtganError
from artgan.similar.nga import load_collection

FAST = Retry(attempts=3, backoff=0.01, max_wait=0.05, timeout=5)


class Handler(BaseHTTPRequestHandler):
    """Serves `server.files`; `server.faults[path]` lists misbehaviours, one per request;
    `server.modes[path]` is one for every request."""

    def do_GET(self):
        state = self.server
        with state.lock:
            state.requests.append((self.path, self.headers.get("Range")))
            fault = state.faults[self.path].pop(0) if state.faults[self.path] else None
        body = state.files.get(self.path)
        mode = state.modes.get(self.path)
        if mode is not None:
            return self.misbehave(mode, body)
        if fault == "503":
            return self.reply(503, b"busy", {"Retry-After": "0"})
        if body is None:
            return self.reply(404, b"not found")
        if fault == "truncate":
            body = body[: len(body) // 2]
        start = (
            int(self.headers["Range"][len("bytes=") :].rstrip("-")) if self.headers["Range"] else 0
        )
        if start >= len(body) and start:
            return self.reply(416, b"", {"Content-Range": f"bytes */{len(body)}"})
        headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"} if start else {}
        self.reply(206 if start else 200, body[start:], headers, drop=fault == "drop")

    def reply(self, status, body, headers=None, drop=False):
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            if value is not None:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if drop else body)  # drop: half, then close

    def misbehave(self, mode, body):
        if len(self.server.requests) > self.server.max_requests:  # a test must end, fix or not
            return self.reply(404, b"enough")
        start = (
            int(self.headers["Range"][len("bytes=") :].rstrip("-")) if self.headers["Range"] else 0
        )
        if mode == "ignore-range":  # 200 from byte 0 whatever was asked, half, then close
            return self.reply(200, body, drop=True)
        if mode == "drip":  # honours Range, then sends one byte and closes
            rest = body[start:]
            return self.reply(
                206 if start else 200,
                rest[:1],
                {
                    "Content-Length": str(len(rest)),
                    "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"
                    if start
                    else None,
                },
            )
        if mode == "short-length":  # Content-Length says half of what is sent
            return self.reply(200, body, {"Content-Length": str(len(body) // 2)})
        if mode == "no-length":  # the end of the body is the end of the connection
            return self.reply(200, body, {"Content-Length": None})
        if mode == "keep-open":  # the whole body, then the connection stays open a while
            self.reply(200, body)
            self.wfile.flush()
            return time.sleep(1)
        if mode == "slow":  # one byte every 10 ms
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for index in range(len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if mode.startswith("redirect "):
            return self.reply(302, b"", {"Location": mode.split(" ", 1)[1]})
        raise AssertionError(mode)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.faults, httpd.modes, httpd.requests = {}, defaultdict(list), {}, []
    httpd.lock = threading.Lock()
    httpd.max_requests = 100
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_port}{path}"
    httpd.count = lambda prefix="": sum(path.startswith(prefix) for path, _ in httpd.requests)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Refuse connections outside 127.0.0.1, point the URL settings nowhere real, and record
    retry pauses instead of sleeping them."""
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    for variable in ("no_proxy", "NO_PROXY"):  # a configured HTTP proxy is not used for the tests
        monkeypatch.setenv(variable, "127.0.0.1")
    monkeypatch.setenv("ARTGAN_WIKIART_URL", "http://127.0.0.1:9/unset.zip")
    monkeypatch.setenv("ARTGAN_NGA_URL", "http://127.0.0.1:9/unset")
    monkeypatch.delenv("ARTGAN_WIKIART_SHA256", raising=False)
    pauses = []
    monkeypatch.setattr(download, "sleep", pauses.append)
    return pauses


def jpeg(seed, size=24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


# ---------------------------------------------------------------- WikiArt

LABELLED = {
    "Impressionism/monet_pond.jpg": 12,
    "Baroque/rubens_hunt.jpg": 4,
    "Impressionism/degas_dancers.jpg": 12,
}


@pytest.fixture()
def labels(tmp_path):
    """ArtGAN-format label files: a style CSV (CRLF, no header) and an artist file."""
    root = tmp_path / "labels"
    (root / "Style").mkdir(parents=True)
    (root / "Artist").mkdir()
    rows = [f"{path},{label}" for path, label in list(LABELLED.items())[:2]]
    (root / "Style" / "style_train.csv").write_bytes("\r\n".join(rows).encode() + b"\r\n")
    (root / "Artist" / "artist_train").write_text(
        "(Path to image),, (Groundtruth class)\n\nImpressionism/degas_dancers.jpg,,3\n"
    )
    return root


def build_zip(entries) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.fixture()
def wikiart_zip(server):
    images = {path: jpeg(n, 64) for n, path in enumerate([*LABELLED, "Cubism/unlabelled.jpg"])}
    server.files["/wikiart.zip"] = build_zip({f"wikiart/{p}": data for p, data in images.items()})
    return images


def test_wikiart_resumes_a_dropped_download_unpacks_the_labelled_images_and_reruns_idle(
    server, wikiart_zip, labels, tmp_path
):
    server.faults["/wikiart.zip"] = ["drop"]
    zip_bytes = server.files["/wikiart.zip"]
    result = get_wikiart(
        tmp_path / "out", url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
    )

    assert server.requests == [
        ("/wikiart.zip", None),
        ("/wikiart.zip", f"bytes={len(zip_bytes) // 2}-"),
    ]
    assert result.downloaded == len(zip_bytes)  # each byte once: half, then the rest
    assert (tmp_path / "out" / "wikiart.zip").read_bytes() == zip_bytes
    assert not (tmp_path / "out" / "wikiart.zip.part").exists()
    assert result.images == tmp_path / "out" / "wikiart"
    for path in LABELLED:
        assert (result.images / path).read_bytes() == wikiart_zip[path]
    assert not (result.images / "Cubism").exists()  # not labelled: not unpacked
    assert (result.unpacked, result.already, result.labelled) == (3, 0, 3)

    again = get_wikiart(
        tmp_path / "out", url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
    )
    assert len(server.requests) == 2  # nothing downloaded
    assert (again.downloaded, again.unpacked, again.already) == (0, 0, 3)


def test_wikiart_continues_a_part_file_left_by_an_earlier_run(
    server, wikiart_zip, labels, tmp_path
):
    zip_bytes = server.files["/wikiart.zip"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "wikiart.zip.part").write_bytes(zip_bytes[:100])
    result = get_wikiart(
        tmp_path / "out",
        url=server.url("/wikiart.zip"),
        labels=labels,
        everything=True,
        retry=FAST,
        progress=False,
    )
    assert server.requests == [("/wikiart.zip", "bytes=100-")]
    assert (result.resumed_from, result.downloaded) == (100, len(zip_bytes) - 100)
    assert (result.images / "Cubism" / "unlabelled.jpg").is_file()  # everything=True


@pytest.mark.parametrize("extra", [0, 7])
def test_a_part_file_as_long_as_or_longer_than_the_file(
    server, wikiart_zip, labels, tmp_path, extra
):
    """Killed after the last byte (416: done) or the file changed on the server (restart)."""
    zip_bytes = server.files["/wikiart.zip"]
    (tmp_path / "wikiart.zip.part").write_bytes(zip_bytes + b"x" * extra)
    get_wikiart(
        tmp_path, url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
    )
    assert (tmp_path / "wikiart.zip").read_bytes() == zip_bytes
    assert [r for _, r in server.requests] == [f"bytes={len(zip_bytes) + extra}-"] + [None] * bool(
        extra
    )


def test_a_download_that_keeps_dropping_resumes_as_long_as_it_progresses(
    server, wikiart_zip, labels, tmp_path
):
    server.faults["/wikiart.zip"] = ["drop"] * 4  # more drops than tries: each one got bytes
    zip_bytes = server.files["/wikiart.zip"]
    get_wikiart(
        tmp_path,
        url=server.url("/wikiart.zip"),
        labels=labels,
        retry=Retry(attempts=2, backoff=0.01),
        progress=False,
    )
    assert len(server.requests) == 5
    assert (tmp_path / "wikiart.zip").read_bytes() == zip_bytes


def test_a_zip_without_the_wikiart_top_folder_unpacks_to_the_same_layout(tmp_path):
    (tmp_path / "flat.zip").write_bytes(build_zip({"Baroque/a.jpg": b"a", "Baroque/b.jpg": b"b"}))
    assert unpack(tmp_path / "flat.zip", tmp_path, wanted={"Baroque/a.jpg"}, progress=False) == (
        1,
        0,
    )
    assert (tmp_path / "wikiart" / "Baroque" / "a.jpg").read_bytes() == b"a"
    assert not (tmp_path / "wikiart" / "Baroque" / "b.jpg").exists()


def test_wikiart_checks_the_configured_sha256(server, wikiart_zip, labels, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTGAN_WIKIART_SHA256", "0" * 64)
    with pytest.raises(ArtganError, match=r"wikiart.zip: downloaded file is corrupt \(sha256"):
        get_wikiart(
            tmp_path, url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
        )
    assert not list(tmp_path.glob("wikiart.zip*"))  # the corrupt download is not kept
    digest = hashlib.sha256(server.files["/wikiart.zip"]).hexdigest()
    get_wikiart(
        tmp_path,
        url=server.url("/wikiart.zip"),
        sha256=digest,
        labels=labels,
        retry=FAST,
        progress=False,
    )


def test_wikiart_command_prints_the_images_setting_and_uses_the_url_setting(
    server, wikiart_zip, labels, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("ARTGAN_WIKIART_URL", server.url("/wikiart.zip"))
    assert (
        main(["data", "wikiart", "--to", str(tmp_path), "--labels", str(labels), "--quiet"]) == 0
    )
    assert f"WIKIART_IMAGES={tmp_path / 'wikiart'}" in capsys.readouterr().out.splitlines()


def test_a_label_row_missing_from_the_zip_is_reported(server, wikiart_zip, labels, tmp_path):
    with open(labels / "Style" / "style_train.csv", "ab") as rows:
        rows.write(b"Baroque/not_in_zip.jpg,4\r\n")
    with pytest.raises(
        ArtganError, match=r"1 labelled image\(s\) missing .*Baroque/not_in_zip.jpg"
    ):
        get_wikiart(
            tmp_path, url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
        )


def test_a_zip_entry_leaving_the_folder_is_refused_by_the_command(
    server, labels, tmp_path, capsys
):
    server.files["/evil.zip"] = build_zip(
        {"wikiart/Baroque/rubens_hunt.jpg": jpeg(1), "../../x": b"x"}
    )
    code = main(
        [
            "data",
            "wikiart",
            "--to",
            str(tmp_path / "out"),
            "--url",
            server.url("/evil.zip"),
            "--labels",
            str(labels),
            "--quiet",
        ]
    )
    assert code == 2
    assert "refused: entry '../../x': its path leaves the target folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "out" / "wikiart").exists()


def test_symlinks_and_zip_bombs_are_refused(tmp_path):
    link = zipfile.ZipInfo("wikiart/link.jpg")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ArtganError, match="symbolic link"):
        unpack(tmp_path / "link.zip", tmp_path / "out")

    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("wikiart/zeros.jpg", bytes(4 << 20))
    with pytest.raises(ArtganError, match="inflates .*zip bomb"):
        unpack(tmp_path / "bomb.zip", tmp_path / "out")
    with pytest.raises(ArtganError, match="more than the limit of 1000"):
        unpack(tmp_path / "bomb.zip", tmp_path / "out", max_total=1000)
    assert not (tmp_path / "out").exists()


def test_entries_unpacking_to_the_same_file_are_refused_before_anything_is_written(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(tmp_path / "twice.zip", "w") as archive:
            archive.writestr("wikiart/Baroque/a.jpg", b"first")
            archive.writestr("wikiart/Baroque/b.jpg", b"fine")
            archive.writestr("Baroque/a.jpg", b"second, without the top folder")
            archive.writestr("wikiart/Baroque/b.jpg", b"b again")
    with pytest.raises(
        ArtganError,
        match=(
            r"twice.zip: refused: entries unpack to the same file: 'wikiart/Baroque/a.jpg' and "
            r"'Baroque/a.jpg'; 'wikiart/Baroque/b.jpg' and 'wikiart/Baroque/b.jpg'; nothing"
        ),
    ):
        unpack(tmp_path / "twice.zip", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_corrupt_entry_is_a_clean_error(tmp_path):
    data = bytearray(build_zip({"wikiart/a.jpg": jpeg(1)}))
    data[60:70] = bytes(10)  # inside the stored image bytes: the CRC check fails
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(ArtganError, match="'wikiart/a.jpg' is corrupt .*delete the zip"):
        unpack(tmp_path / "bad.zip", tmp_path, progress=False)
    assert not (tmp_path / "wikiart" / "a.jpg").exists()


def test_a_different_file_already_there_is_not_overwritten(server, wikiart_zip, labels, tmp_path):
    mine = tmp_path / "wikiart" / "Baroque" / "rubens_hunt.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    with pytest.raises(ArtganError, match="exists and differs .* does not overwrite"):
        get_wikiart(
            tmp_path, url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
        )
    assert mine.read_bytes() == b"my own file"


def test_a_missing_file_is_a_clean_error_after_one_request(server, labels, tmp_path):
    with pytest.raises(ArtganError, match=r"/nope.zip: HTTP 404"):
        get_wikiart(
            tmp_path, url=server.url("/nope.zip"), labels=labels, retry=FAST, progress=False
        )
    assert len(server.requests) == 1


def test_a_server_that_ignores_range_cannot_keep_a_download_going(
    server, wikiart_zip, labels, tmp_path
):
    """200 from byte 0 on every try, half the bytes, then closed: the later tries get no byte
    past the first one's, so they are not progress and the tries run out."""
    server.modes["/wikiart.zip"] = "ignore-range"
    with pytest.raises(ArtganError, match="download failed after 3 tries: the body has"):
        get_wikiart(
            tmp_path, url=server.url("/wikiart.zip"), labels=labels, retry=FAST, progress=False
        )
    assert len(server.requests) == 3
    half = len(server.files["/wikiart.zip"]) // 2
    assert (tmp_path / "wikiart.zip.part").stat().st_size == half  # kept: a rerun resumes it


def test_a_download_gaining_a_byte_per_try_stops_at_the_time_limit(
    server, wikiart_zip, labels, tmp_path
):
    """Each try gets one new byte (progress, so the tries never run out): `Retry.total` ends it."""
    server.modes["/wikiart.zip"] = "drip"
    server.max_requests = 1000
    started = time.monotonic()
    with pytest.raises(ArtganError, match=r"download stopped.* at the time limit for one URL"):
        get_wikiart(
            tmp_path,
            url=server.url("/wikiart.zip"),
            labels=labels,
            progress=False,
            retry=Retry(attempts=3, backoff=0.01, timeout=5, total=0.2),
        )
    assert time.monotonic() - started < 5
    assert 3 < len(server.requests) < 1000
    assert (tmp_path / "wikiart.zip.part").stat().st_size == len(server.requests)  # a byte each


def test_a_body_trickling_in_stops_at_the_time_limit(server, tmp_path):
    server.files["/slow.csv"] = b"x" * 300
    server.modes["/slow.csv"] = "slow"  # 3 s in all
    started = time.monotonic()
    with pytest.raises(ArtganError, match="still arriving at the time limit for one URL"):
        fetch_file(
            server.url("/slow.csv"),
            tmp_path / "slow.csv",
            max_bytes=1000,
            retry=Retry(attempts=3, timeout=5, total=0.3),
            progress=False,
        )
    assert time.monotonic() - started < 2
    assert not (tmp_path / "slow.csv").exists()


@pytest.mark.parametrize("mode", ["short-length", "ignore-range"])
def test_a_content_length_that_lies_is_a_failed_try(server, tmp_path, mode):
    """Content-Length half of the body, or twice the body: every try fails; nothing is kept."""
    server.files["/table.csv"] = b"a,b\n" + b"1,2\n" * 100
    server.modes["/table.csv"] = mode
    with pytest.raises(
        ArtganError, match="failed after 3 tries: the body has .* Content-Length says"
    ):
        fetch_file(
            server.url("/table.csv"),
            tmp_path / "table.csv",
            max_bytes=1 << 20,
            retry=FAST,
            progress=False,
        )
    assert not (tmp_path / "table.csv").exists()
    with pytest.raises(
        ArtganError, match="failed after 3 tries: the body has .* Content-Length says"
    ):
        fetch_bytes(server.url("/table.csv"), max_bytes=1 << 20, retry=FAST)
    assert len(server.requests) == 6


def test_a_server_keeping_the_connection_open_after_the_body_still_delivers(server):
    server.files["/table.csv"] = b"a,b\n1,2\n"
    server.modes["/table.csv"] = "keep-open"
    assert (
        fetch_bytes(server.url("/table.csv"), max_bytes=100, retry=Retry(attempts=1, timeout=0.3))
        == b"a,b\n1,2\n"
    )


def test_responses_over_the_size_limit_are_refused(server, tmp_path):
    server.files["/big.jpg"] = b"x" * 5000
    with pytest.raises(ArtganError, match="announces 5000 bytes, more than the limit of 1000"):
        fetch_bytes(server.url("/big.jpg"), max_bytes=1000, retry=FAST)
    server.modes["/big.jpg"] = "no-length"  # nothing announced: refused once 1000 bytes are in
    with pytest.raises(ArtganError, match="larger than the limit of 1000 bytes"):
        fetch_bytes(server.url("/big.jpg"), max_bytes=1000, retry=FAST)
    with pytest.raises(ArtganError, match="larger than the limit of 1000 bytes"):
        fetch_file(
            server.url("/big.jpg"),
            tmp_path / "big.jpg",
            max_bytes=1000,
            retry=FAST,
            progress=False,
        )
    assert (tmp_path / "big.jpg.part").stat().st_size == 0 and not (tmp_path / "big.jpg").exists()
    assert len(server.requests) == 3  # refused at once, not retried


def test_only_http_urls_are_opened_redirects_included(server):
    for url in ("file:///etc/hostname", "ftp://127.0.0.1:9/x.jpg", "data:,x", "/etc/hostname"):
        with pytest.raises(ArtganError, match="refused: only http and https URLs are downloaded"):
            fetch_bytes(url, max_bytes=1000, retry=FAST)
    server.modes["/moved.jpg"] = (
        "redirect ftp://127.0.0.1:9/x.jpg"  # urllib refuses file:// itself
    )
    with pytest.raises(ArtganError, match="ftp://127.0.0.1:9/x.jpg: refused: only http and https"):
        fetch_bytes(server.url("/moved.jpg"), max_bytes=1000, retry=FAST)
    assert len(server.requests) == 1


# ---------------------------------------------------------------- NGA

# objectid: (classification, open access, image)
OBJECTS = {
    1: ("Painting", "1"),
    2: ("Painting", "1"),
    3: ("painting", "1"),
    4: ("Print", "1"),
    5: ("Painting", "0"),
}


def image_path(objectid, size=64):
    return f"/iiif/uuid-{objectid}/full/!{size},{size}/0/default.jpg"


@pytest.fixture()
def nga_site(server):
    """NGA-format tables (real column names, a subset of columns) and IIIF image URLs."""
    objects = ["objectid,accessionnum,title,classification,attribution"]
    images = [
        "uuid,iiifurl,iiifthumburl,viewtype,sequence,width,height,depictstmsobjectid,openaccess"
    ]
    for objectid, (kind, open_access) in OBJECTS.items():
        objects.append(
            f'{objectid},1937.1.{objectid},"Title, {objectid}",{kind},Painter {objectid}'
        )
        base = server.url(f"/iiif/uuid-{objectid}")
        images.append(
            f'uuid-{objectid},{base},"{base}/full/!200,200/0/default.jpg",primary,0,'
            f"64,64,{objectid},{open_access}"
        )
        server.files[image_path(objectid)] = jpeg(objectid)
    images.append(f"uuid-alt,{server.url('/iiif/uuid-alt')},,alternate,1,64,64,1,1")
    tables = {
        "objects": objects,
        "published_images": images,
        "constituents": [
            "constituentid,preferreddisplayname,nationality",
            *(f"{n},Painter {n},French" for n in OBJECTS),
        ],
        "objects_constituents": [
            "objectid,constituentid,displayorder,roletype,role",
            *(f"{n},{n},1,artist,artist" for n in OBJECTS),
        ],
        "objects_terms": [
            "termid,objectid,termtype,term",
            "1,1,Style,Impressionism",
            "2,2,Theme,landscape",
        ],
    }
    for name, lines in tables.items():
        server.files[f"/nga/{name}.csv"] = ("\n".join(lines) + "\n").encode()
    return server.url("/nga")


def test_nga_fetches_open_paintings_retrying_503_and_truncated_images_then_reruns_idle(
    server, nga_site, tmp_path, local_only
):
    server.faults[image_path(1)] = ["503"]
    server.faults[image_path(2)] = ["truncate"]
    folder = tmp_path / "nga"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "3.jpg").write_bytes(jpeg(3)[:300])  # cut short by an earlier run

    result = get_nga(
        folder, url=nga_site, limit=10, size=64, workers=2, retry=FAST, progress=False
    )

    assert (result.tables_fetched, result.selected, result.fetched, result.skipped) == (5, 3, 3, 0)
    assert result.failed == []
    for objectid in (1, 2, 3):
        assert (folder / "images" / f"{objectid}.jpg").read_bytes() == jpeg(objectid)
    assert server.count(image_path(1)) == 2 and server.count(image_path(2)) == 2
    assert server.count(image_path(3)) == 1
    assert (
        server.count("/iiif/uuid-4")
        == server.count("/iiif/uuid-5")
        == server.count("/iiif/uuid-alt")
        == 0
    )
    assert sorted(local_only) == [0.0, 0.01]  # Retry-After: 0 honoured; backoff for the bad image
    assert not [p for p in (folder / "images").iterdir() if p.suffix != ".jpg"]  # no temp files

    collection = load_collection(folder)  # the layout `similar` reads
    assert list(collection.table["objectid"]) == [1, 2, 3]
    assert sorted(problem.objectid for problem in collection.problems) == [4, 5]  # not selected
    assert collection.row(1)["style"] == ("Impressionism",)

    before = len(server.requests)
    again = get_nga(folder, url=nga_site, limit=10, size=64, workers=2, retry=FAST, progress=False)
    assert len(server.requests) == before  # nothing downloaded
    assert (again.tables_fetched, again.fetched, again.skipped) == (0, 0, 3)


def test_a_table_row_naming_a_local_file_is_refused(server, nga_site, tmp_path):
    """A mirror's `iiifurl` of `file:///...#` would copy a local file into the data set."""
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(99))
    table = server.files["/nga/published_images.csv"].decode()
    server.files["/nga/published_images.csv"] = table.replace(
        server.url("/iiif/uuid-1") + ",", f"file://{secret}#,", 1
    ).encode()
    result = get_nga(tmp_path / "nga", url=nga_site, size=64, retry=FAST, progress=False)
    assert result.fetched == 2 and len(result.failed) == 1
    assert "refused: only http and https URLs are downloaded, not file" in result.failed[0]
    assert not (tmp_path / "nga" / "images" / "1.jpg").exists()


def test_nga_selection_classification_and_limit(server, nga_site, tmp_path):
    get_nga(tmp_path, url=nga_site, limit=1, size=64, retry=FAST, progress=False)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["1.jpg"]
    assert (
        list(select_images(tmp_path, "all")) == list(select_images(tmp_path, "")) == [1, 2, 3, 4]
    )
    assert list(select_images(tmp_path, "Print")) == [4]
    with pytest.raises(ArtganError, match="no Sculpture with an open-access primary image"):
        select_images(tmp_path, "Sculpture")


def test_nga_command_exits_non_zero_when_an_image_keeps_failing(
    server, nga_site, tmp_path, capsys
):
    server.faults[image_path(2)] = ["503"] * 5
    code = main(
        [
            "data",
            "nga",
            "--to",
            str(tmp_path),
            "--url",
            nga_site,
            "--size",
            "64",
            "--retries",
            "2",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "1 image(s) could not be fetched" in err and "HTTP 503" in err and "rerun" in err
    assert (tmp_path / "images" / "1.jpg").is_file() and not (
        tmp_path / "images" / "2.jpg"
    ).exists()
    assert server.count(image_path(2)) == 2
