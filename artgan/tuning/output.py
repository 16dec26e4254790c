"""The run folder as a search writes it: created or resumed, locked while a search runs,
and refused when it holds a search that was scored differently (`fingerprint`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from artgan.config.spec import ExperimentSpec, differences
from artgan.errors import ArtganError
from artgan.files import (
    check_removable,
    clear_folder,
    clear_write_errors,
    folder_lock,
    read_json,
    write_text_atomic,
)
from artgan.runfolder import RunFolder


@contextmanager
def run_folder(spec: ExperimentSpec, fresh: bool) -> Iterator[Path]:
    """The prepared run folder, locked while the block runs: a second search on it is
    refused. `fresh` refuses a folder artgan did not make before writing anything there."""
    if fresh:
        check_removable(spec.output_dir, RunFolder(spec.output_dir).fingerprint.name)
    with folder_lock(spec.output_dir):
        yield prepare_output(spec, fresh)


def prepare_output(spec: ExperimentSpec, fresh: bool) -> Path:
    """Create (or, with `fresh`, empty) the run folder; refuse to resume a different search.
    Only `fresh` deletes, and only in a folder artgan made (see `clear_folder`)."""
    output = spec.output_dir
    folder = RunFolder(output)
    fingerprint_file = folder.fingerprint
    if fresh:
        clear_folder(output, fingerprint_file.name)
    with clear_write_errors(output):
        output.mkdir(parents=True, exist_ok=True)
    comparable = spec.comparable()
    fingerprint = spec.fingerprint()
    if fingerprint_file.exists() and fingerprint_file.read_text().strip() != fingerprint:
        details = differences(comparable, read_json(folder.comparable))
        raise ArtganError(
            f"{output} holds a search whose trials were scored differently "
            f"({'; '.join(details) or 'other data, search space, tuner, seed or budget'}). "
            "Start over there with `fresh`, or set output: to a new folder."
        )
    write_text_atomic(fingerprint_file, fingerprint + "\n")
    write_text_atomic(folder.comparable, json.dumps(comparable, indent=1, default=str))
    write_text_atomic(folder.spec, yaml.safe_dump(spec.resolved(), sort_keys=False))
    return output
