"""HTTP downloads that survive flaky networks: resumable files, polite retries, verification.

Two shapes of download share one retry policy:

* `fetch_file` streams a large file into `<dest>.part` and resumes it with an HTTP `Range`
  request after a dropped connection (in this run or a later one); the file gets its final
  name only once its size (and sha256, when one is given) has been checked.
* `fetch_bytes` returns a small response body whole (images), for callers that check
  the content themselves and write it atomically.

Retries: connection errors, truncated bodies and HTTP 429/5xx are retried with exponential
backoff (or the server's `Retry-After`, capped); other HTTP errors are an `ArtganError`
naming the URL at once. A failed try restores the tries left only when it got bytes past the
furthest any try held, and one URL gets `Retry.total` seconds in all, so a server that
ignores `Range` or trickles cannot keep a download going for ever.

What a server (or a table naming URLs) can make artgan read is bounded: only http and https
URLs are opened, redirects included (any host: the NGA tables name their own image server);
every body is read to the end of the connection and is a failed try when its length differs
from its `Content-Length`; and each caller gives a size limit for its kind of file, beyond
which the download is refused. Only the standard library talks to the network.
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
from time import monotonic, sleep
from urllib.parse import urlsplit

from artgan.errors import ArtganError
from artgan.files import clear_write_errors, file_sha256
from artgan.progress import progress_bar

log = logging.getLogger(__name__)

USER_AGENT = "artgan-data/1 (+https://github.com/cs-chan/ArtGAN)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK = 1 << 20  # bytes read per loop while streaming a file
PART_SUFFIX = ".part"
SCHEMES = ("http", "https")


def setting(variable, default):
    """A download setting: the environment variable `variable` when set and non-empty, else
    `default` (so a mirror can be configured once, outside any command line)."""
    value = os.environ.get(variable, "").strip()
    return value or default


@dataclass(frozen=True)
class Retry:
    """How hard to try: `attempts` requests per URL, waiting `backoff * 2**n` seconds (at most
    `max_wait`) between them; `timeout` is the socket timeout of one request, `total` the
    seconds one URL may take in all (tries and pauses; a rerun resumes a file)."""

    attempts: int = 6
    backoff: float = 1.0
    max_wait: float = 60.0
    timeout: float = 60.0
    total: float = 24 * 3600.0

    def wait(self, attempt, retry_after=None):
        """Seconds to sleep before try `attempt + 1`: the server's Retry-After when it sent a
        number, else exponential backoff; both capped at `max_wait`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        return min(self.backoff * 2**attempt, self.max_wait)


class TransientError(Exception):
    """A failure worth retrying (dropped connection, 429/5xx, short or corrupt body);
    `progressed` says the failed try got bytes past the furthest any try held, which restores
    the tries left."""

    def __init__(self, reason, retry_after=None, progressed=False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.progressed = progressed


NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    socket.timeout,
    TimeoutError,
)


class TooLarge(ArtganError):
    """A response over the size limit for its kind of file."""


class WrongLength(TransientError):
    """A body longer or shorter than its `Content-Length`: `longer` when the server sent more."""

    def __init__(self, received, declared):
        super().__init__(f"the body has {received} bytes, its Content-Length says {declared}")
        self.longer = received > declared


def with_retries(url, attempt_once, retry: Retry):
    """Call `attempt_once(deadline)` (a `monotonic` time) until it returns, retrying
    `TransientError` and network errors; after `retry.attempts` failures in a row without
    progress, or `retry.total` seconds, raise ArtganError naming `url` and the last reason (a
    long download over a flaky line resumes as often as it needs within that time)."""
    failures = 0
    started = monotonic()
    deadline = started + retry.total
    while True:
        try:
            return attempt_once(deadline)
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
        if monotonic() + pause > deadline:
            raise out_of_time(url, monotonic() - started, retry, failure)
        log.info(
            "%s: %s; retrying in %.1f s (try %d of %d)",
            url,
            failure,
            pause,
            failures + 1,
            retry.attempts,
        )
        sleep(pause)


def out_of_time(url, spent, retry: Retry, reason) -> ArtganError:
    return ArtganError(
        f"{url}: download stopped after {spent:.1f} s at the time limit for one "
        f"URL, {retry.total:g} s (last try: {reason}); rerun to try again"
    )


def classify_http_error(url, error: urllib.error.HTTPError) -> TransientError:
    """A retryable HTTP status as TransientError; any other status is the user's to fix."""
    if error.code not in RETRY_STATUSES:
        raise ArtganError(
            f"{url}: HTTP {error.code} {error.reason}; check the URL or mirror setting"
        ) from None
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


def check_scheme(url) -> None:
    """ArtganError unless `url` is http or https (no local files, FTP or data URLs)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise ArtganError(
            f"{url}: refused: only http and https URLs are downloaded, "
            f"not {scheme or 'a URL without a scheme'}"
        )


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https URLs only."""

    def redirect_request(self, request, fp, code, msg, headers, newurl):
        check_scheme(newurl)
        return super().redirect_request(request, fp, code, msg, headers, newurl)


OPENER = urllib.request.build_opener(HttpOnlyRedirects)


def open_url(url, retry: Retry, start=0):
    """Open `url` (from byte `start` with a Range request); the caller closes the response."""
    check_scheme(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return OPENER.open(request, timeout=retry.timeout)


def copy_body(url, response, write, max_bytes, deadline) -> int:
    """Pass the body to `write` block by block and return its length. It is read to the end
    of the connection (urllib asks servers to close it), so a body longer or shorter than its
    Content-Length is a `WrongLength`; one over `max_bytes`, or still arriving at `deadline`,
    is an ArtganError (`TooLarge` for the first). A connection lost mid-way is a
    TransientError."""
    declared = None if response.chunked else response.headers.get("Content-Length", "")
    declared = int(declared) if declared and declared.isdigit() else None
    response.length = None  # http.client would stop at Content-Length without a word
    received = 0
    try:
        while block := response.read1(CHUNK):
            received += len(block)
            if received > max_bytes:
                raise TooLarge(
                    f"{url}: refused: the response is larger than the limit of "
                    f"{max_bytes} bytes for this kind of file"
                )
            if monotonic() > deadline:
                raise ArtganError(
                    f"{url}: download stopped: still arriving at the time limit "
                    "for one URL; rerun to try again"
                )
            write(block)
    except NETWORK_ERRORS as error:
        if isinstance(error, TimeoutError) and received == declared:
            return received  # a server that keeps the connection open after the whole body
        raise TransientError(f"{describe(error)} after {received} bytes") from None
    if declared is not None and received != declared:
        raise WrongLength(received, declared)
    return received


def refuse_announced(url, size, max_bytes) -> None:
    """ArtganError, before any byte is read, when the server announces more than `max_bytes`."""
    if size is not None and size > max_bytes:
        raise TooLarge(
            f"{url}: refused: the server announces {size} bytes, more than the "
            f"limit of {max_bytes} for this kind of file"
        )


# ------------------------------------------------------------------ small bodies


def fetch_bytes(url, *, max_bytes, retry: Retry = Retry(), check=None) -> bytes:
    """The whole body of `url` (at most `max_bytes`), retried as `with_retries` says.
    `check(body)` may raise TransientError (e.g. an image that does not decode) to have it
    fetched again."""

    def once(deadline):
        blocks = []
        with open_url(url, retry) as response:
            refuse_announced(url, expected_total(response, 0), max_bytes)
            copy_body(url, response, blocks.append, max_bytes, deadline)
        body = b"".join(blocks)
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
    file was already there (nothing downloaded); `furthest`: the most bytes the partial file
    has held, which a failed try must pass to count as progress."""

    path: Path
    size: int
    received: int = 0
    resumed_from: int = 0
    skipped: bool = False
    furthest: int = 0


def fetch_file(
    url, dest, *, max_bytes, retry: Retry = Retry(), sha256=None, progress=True
) -> FileResult:
    """Download `url` to `dest` (at most `max_bytes`), resuming `<dest>.part` with Range
    requests.

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
    result.furthest = result.resumed_from
    if result.resumed_from:
        log.info("%s: resuming at byte %d", url, result.resumed_from)
    bar = progress_bar(
        desc=dest.name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        initial=result.resumed_from,
        disable=not progress,
        leave=False,
    )
    with bar:
        result.size = with_retries(
            url,
            lambda deadline: stream_into(url, part, retry, bar, result, max_bytes, deadline),
            retry,
        )
    verify_file(url, part, result.size, sha256)
    os.replace(part, dest)
    return result


def stream_into(
    url, part: Path, retry: Retry, bar, result: FileResult, max_bytes, deadline
) -> int:
    """One request: append the rest of `url` to `part`; returns the file's total size. A
    failed try counts as progress only when `part` now holds more than it ever did."""
    try:
        return request_rest(url, part, retry, bar, result, max_bytes, deadline)
    except TransientError as error:
        held = part.stat().st_size
        error.progressed = held > result.furthest
        result.furthest = max(result.furthest, held)
        raise


def request_rest(
    url, part: Path, retry: Retry, bar, result: FileResult, max_bytes, deadline
) -> int:
    start = part.stat().st_size
    try:
        response = open_url(url, retry, start)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left after `start`
            total = content_range_total(error.headers.get("Content-Range"))
            if total == start:
                return total  # the earlier run got every byte
            part.write_bytes(b"")  # longer than the file on the server: start over
            raise TransientError(
                f"partial file ({start} bytes) does not match the server's "
                f"({total} bytes); restarting"
            ) from None
        raise
    with response:
        if start and response.status != 206:  # the server ignored Range: start over
            log.info("%s: server does not resume; downloading from the start", url)
            start = 0
            result.resumed_from = 0
            bar.reset()
        total = expected_total(response, start)
        refuse_announced(url, total, max_bytes)
        bar.total = total

        def write(block):
            out.write(block)
            result.received += len(block)
            bar.update(len(block))

        with clear_write_errors(part), open(part, "r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            try:
                copy_body(url, response, write, max_bytes - start, deadline)
            except WrongLength as error:
                if error.longer:  # more than announced: nothing of this try is trusted
                    out.truncate(start)
                raise
            except TooLarge:
                out.truncate(0)  # the partial file of a file too large is of no use
                raise
    size = part.stat().st_size
    if total is not None and size < total:
        raise TransientError(f"connection closed at byte {size} of {total}")
    return total if total is not None else size


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
        raise ArtganError(
            f"{url}: downloaded file is corrupt ({problem}); "
            "it was removed, rerun to fetch it again"
        )
    log.info("%s: verified (%d bytes%s)", url, actual, ", sha256 ok" if sha256 else "")
