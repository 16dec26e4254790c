"""Progress output: a bar on a terminal, a logged line every 10 % (or minute) elsewhere."""

import io
import logging

from artgan import progress as progress_module
from artgan.data.images import cache_images
from artgan.progress import ProgressLines, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_anything_else_lines():
    assert not isinstance(progress_bar(total=3, stream=Terminal()), ProgressLines)
    assert isinstance(progress_bar(total=3, stream=io.StringIO()), ProgressLines)


def test_lines_every_tenth_with_rate_and_time_left(caplog):
    now = [0.0]
    caplog.set_level(logging.INFO, logger="artgan")
    with ProgressLines(total=1000, desc="decoding", unit="img", clock=lambda: now[0]) as bar:
        for _ in range(1000):
            now[0] += 0.01
            bar.update(1)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 10  # 10 % .. 90 %, then the closing line
    assert lines[0] == "decoding: 100/1,000 img (10%), 100.0 img/s, about 9 s left"
    assert lines[-1] == "decoding: 1,000 img in 10 s (100.0 img/s)"


def test_slow_work_still_reports_every_minute(caplog):
    now = [0.0]
    caplog.set_level(logging.INFO, logger="artgan")
    bar = ProgressLines(
        total=10**6, desc="embedding", unit="img", initial=500, clock=lambda: now[0]
    )
    for _ in range(3):
        now[0] += progress_module.EVERY_SECONDS
        bar.update(1)
    assert [r.getMessage().split(", ")[0] for r in caplog.records] == [
        "embedding: 501/1,000,000 img (0%)",
        "embedding: 502/1,000,000 img (0%)",
        "embedding: 503/1,000,000 img (0%)",
    ]
    assert "0.017 img/s" in caplog.records[-1].getMessage()  # the resumed 500 do not count


def test_a_cache_build_in_a_log_file_writes_no_bar(tmp_path, data_dir, capsys, caplog):
    caplog.set_level(logging.INFO, logger="artgan")
    paths = sorted((data_dir / "wikiart-style7" / "images" / "Baroque").iterdir())[:30]
    cache_images(paths, 16, cache_dir=tmp_path, workers=1, progress=True, desc="decoding")
    assert "\r" not in capsys.readouterr().err  # pytest's stderr is no terminal
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decoding:")]
    assert 9 <= len(steps) <= 11 and steps[-1].startswith("decoding: 30 img in")
