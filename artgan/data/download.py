"""HTTP downloads that survive flaky networks: resumable files, polite retries, verification.

Two shapes of download share one retry policy:

* `fetch_file` streams a large file into `<dest>.part` and resumes it with an HTTP `Range`
  request after a dropped connection (in this run or a later one); the file gets its final
  name only once its size (and sha256, when one is given) has been checked.
* `fetch_bytes` returns a small response body whole (tables, images), for callers that check
  the content themselves and write it atomically.

Retries: connection errors, truncated bodies and HTTP 429/5xx are retried with exponential
backoff (or the server's `Retry-After`, capped); other HTTP errors are an `ArtganError`
naming the URL at once. Only the standard library talks to the network.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from time import sleep

from artgan.errors import ArtganError
from artgan.files import clear_write_errors, file_sha256
from artgan.progress import progress_bar

log = logging.getLogger(__name__)

USER_AGENT = "artgan-data/1 (+https://github.com/cs-chan/ArtGAN)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK = 1 << 20  # bytes read per loop while streaming a file
PART_SUFFIX = ".part"


def setting(variable, default):
    """A download setting: the environment variable `variable` when set and non-empty, else
    `default` (so a mirror can be configured once, outside any command line)."""
    value = os.environ.get(variable, "").strip()
    return value or default


@dataclass(frozen=True)
class Retry:
    """How hard to try: `attempts` requests per URL, waiting `backoff * 2**n` seconds (at most
    `max_wait`) between them; `timeout` is the socket timeout of one request."""

    attempts: int = 6
    backoff: float = 1.0
    max_wait: float = 60.0
    timeout: float = 60.0

    def wait(self, attempt, retry_after=None):
        """Seconds to sleep before try `attempt + 1`: the server's Retry-After when it sent a
        number, else exponential backoff; both capped at `max_wait`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        return min(self.backoff * 2**attempt, self.max_wait)


class TransientError(Exception):
    """A failure worth retrying (dropped connection, 429/5xx, short or corrupt body);
    `progressed` says the failed try still got some bytes, which restores the tries left."""

    def __init__(self, reason, retry_after=None, progressed=False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.progressed = progressed


NETWORK_ERRORS = (
    urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError,
)


def with_retries(url, attempt_once, retry: Retry):
    """Call `attempt_once()` until it returns, retrying `TransientError` and network errors;
    after `retry.attempts` failures in a row without progress raise ArtganError naming `url`
    and the last reason (a long download over a flaky line resumes as often as it needs)."""
    failures = 0
    while True:
        try:
            return attempt_once()
        except urllib.error.HTTPError as error:
            failure = classify_http_error(url, error)
        except TransientError as error:
            failure = error
        except NETWORK_ERRORS as error:
            failure = TransientError(describe(error))
        failures = 1 if failure.progressed else failures + 1
        if failures >= retry.attempts:
            raise ArtganError(f"{url}: download failed after {failures} tries: {failure}")
        pause = retry.wait(failures - 1, failure.retry_after)
        log.info("%s: %s; retrying in %.1f s (try %d of %d)", url, failure, pause,
                 failures + 1, retry.attempts)
        sleep(pause)


def classify_http_error(url, error: urllib.error.HTTPError) -> TransientError:
    """A retryable HTTP status as TransientError; any other status is the user's to fix."""
    if error.code not in RETRY_STATUSES:
        raise ArtganError(f"{url}: HTTP {error.code} {error.reason}; "
                          "check the URL or mirror setting") from None
    return TransientError(f"HTTP {error.code} {error.reason}", retry_after_seconds(error.headers))


def retry_after_seconds(headers):
    """The `Retry-After` header in seconds, when it is a number (dates are ignored)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(error) -> str:
    """A short reason for a network error (urllib wraps the interesting part in `.reason`)."""
    reason = getattr(error, "reason", None) or error
    return f"{type(error).__name__}: {reason}"


def open_url(url, retry: Retry, start=0):
    """Open `url` (from byte `start` with a Range request); the caller closes the response."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=retry.timeout)


# ------------------------------------------------------------------ small bodies


def fetch_bytes(url, retry: Retry = Retry(), check=None) -> bytes:
    """The whole body of `url`, retried as `with_retries` says. `check(body)` may raise
    TransientError (e.g. an image that does not decode) to have it fetched again."""

    def once():
        with open_url(url, retry) as response:
            body = response.read()  # http.client raises IncompleteRead on a short body
        if check is not None:
            check(body)
        return body

    return with_retries(url, once, retry)


# ------------------------------------------------------------------ large files


def part_path(dest) -> Path:
    """Where `fetch_file` keeps the bytes of an unfinished download of `dest`."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


@dataclass
class FileResult:
    """What `fetch_file` did: bytes received now, the offset it resumed from, whether the
    file was already there (nothing downloaded)."""

    path: Path
    size: int
    received: int = 0
    resumed_from: int = 0
    skipped: bool = False


def fetch_file(url, dest, retry: Retry = Retry(), sha256=None, progress=True) -> FileResult:
    """Download `url` to `dest`, resuming `<dest>.part` with Range requests.

    An existing `dest` is taken as done (it only gets its name after verification). Raises
    ArtganError when the size the server announced or the configured sha256 does not match;
    the partial file is then removed so a rerun starts clean.
    """
    dest = Path(dest)
    if dest.is_file():
        log.info("%s: already downloaded, nothing to fetch", dest)
        return FileResult(dest, dest.stat().st_size, skipped=True)
    part = part_path(dest)
    with clear_write_errors(part):
        part.parent.mkdir(parents=True, exist_ok=True)
        part.touch()
    result = FileResult(dest, 0, resumed_from=part.stat().st_size)
    if result.resumed_from:
        log.info("%s: resuming at byte %d", url, result.resumed_from)
    bar = progress_bar(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024,
                       initial=result.resumed_from, disable=not progress, leave=False)
    with bar:
        result.size = with_retries(url, lambda: stream_into(url, part, retry, bar, result), retry)
    verify_file(url, part, result.size, sha256)
    os.replace(part, dest)
    return result


def stream_into(url, part: Path, retry: Retry, bar, result: FileResult) -> int:
    """One request: append the rest of `url` to `part`; returns the file's total size."""
    start = part.stat().st_size
    try:
        response = open_url(url, retry, start)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left after `start`
            total = content_range_total(error.headers.get("Content-Range"))
            if total == start:
                return total  # the earlier run got every byte
            part.write_bytes(b"")  # longer than the file on the server: start over
            raise TransientError(f"partial file ({start} bytes) does not match the server's "
                                 f"({total} bytes); restarting") from None
        raise
    with response:
        if start and response.status != 206:  # the server ignored Range: start over
            log.info("%s: server does not resume; downloading from the start", url)
            start = 0
            result.resumed_from = 0
            bar.reset()
        total = expected_total(response, start)
        bar.total = total
        with clear_write_errors(part), open(part, "r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            copy_body(response, out, result, bar)
    size = part.stat().st_size
    if total is not None and size < total:
        raise TransientError(f"connection closed at byte {size} of {total}", progressed=size > start)
    return total if total is not None else size


def copy_body(response, out, result: FileResult, bar) -> None:
    """Append the response body to `out`; a connection lost after some bytes arrived is a
    TransientError that counts as progress (the next try resumes where this one stopped)."""
    received = 0
    try:
        while block := response.read(CHUNK):
            out.write(block)
            received += len(block)
            result.received += len(block)
            bar.update(len(block))
    except NETWORK_ERRORS as error:
        out.flush()
        raise TransientError(f"{describe(error)} after {received} bytes", progressed=received > 0) from None


def expected_total(response, start) -> int | None:
    """The full file size the server announced (Content-Range on 206, else Content-Length)."""
    if response.status == 206:
        return content_range_total(response.headers.get("Content-Range"))
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def content_range_total(value) -> int | None:
    """`bytes 100-199/200` or `bytes */200` -> 200 (None when absent or unknown)."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def verify_file(url, path: Path, size, sha256=None) -> None:
    """Check size and, when given, sha256; on mismatch delete `path` and raise ArtganError."""
    actual = path.stat().st_size
    problem = None
    if size is not None and actual != size:
        problem = f"size {actual} bytes, expected {size}"
    elif sha256:
        digest = file_sha256(path)
        if digest.lower() != sha256.strip().lower():
            problem = f"sha256 {digest}, expected {sha256}"
    if problem:
        path.unlink(missing_ok=True)
        raise ArtganError(f"{url}: downloaded file is corrupt ({problem}); "
                          "it was removed, rerun to fetch it again")
    log.info("%s: verified (%d bytes%s)", url, actual, ", sha256 ok" if sha256 else "")

