"""The documentation: README stays a short front door whose links resolve, and
docs/benchmarks.md is what `make bench` wrote (bench/benchdoc.py), section by section."""

import re
import sys

from artgan.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))

import benchdoc  # noqa: E402

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_short_and_every_link_resolves():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in [
        REPO_ROOT / "README.md",
        REPO_ROOT / "CONTRIBUTING.md",
        *(REPO_ROOT / "docs").glob("*.md"),
    ]:
        for target in LINK.findall(page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
    for page in (REPO_ROOT / "docs").glob("*.md"):  # every page is reachable from README
        assert f"docs/{page.name}" in readme, page.name


def test_bench_rewrites_what_it_measured_and_keeps_the_rest(tmp_path):
    doc = tmp_path / "benchmarks.md"
    benchdoc.update(
        {"pipeline": "== input pipeline\nlater epochs 1 i/s"}, ["--only", "pipeline"], doc
    )
    benchdoc.update({"training": "== training\ntraining 2 images/s"}, ["--only", "training"], doc)
    text = doc.read_text()
    assert "later epochs 1 i/s" in text and "training 2 images/s" in text
    assert "`make bench ARGS='--only training'`" in text and "Sizes below" not in text
    assert 'Not measured yet: `make bench ARGS="--only search"`' in text
    chatter = "Search: Running Trial #1\nTrial 1 Complete\n"  # KerasTuner's, before the results
    benchdoc.update(
        {"pipeline": chatter + "== input pipeline\nlater epochs 3 i/s"}, ["--images", "200"], doc
    )
    text = doc.read_text()
    assert "later epochs 3 i/s" in text and "later epochs 1 i/s" not in text
    assert "Running Trial" not in text and "Sizes below the defaults" in text
    assert "training 2 images/s" in text
    assert [m.group(1) for m in benchdoc._BLOCK.finditer(text)] == list(benchdoc.SECTIONS)


def test_the_shipped_benchmarks_page_was_written_by_the_bench():
    text = (REPO_ROOT / "docs" / "benchmarks.md").read_text()
    assert text.startswith(benchdoc.HEADER)
    blocks = {m.group(1): m.group(0) for m in benchdoc._BLOCK.finditer(text)}
    assert list(blocks) == list(benchdoc.SECTIONS)
    for name, block in blocks.items():
        assert re.search(r"Measured .+ with `make bench.*` on .+ cores", block), name
