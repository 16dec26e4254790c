"""Files a person reads: the evaluation table (CSV + HTML) and a query's gallery page.

Pages are rendered with jinja2 autoescaping (titles and names come from data files) and are
self-contained: thumbnails are embedded as small JPEG data URIs, so a page can be mailed.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from jinja2 import Environment
from PIL import Image

from artgan.files import clear_write_errors, csv_text, write_text_atomic
from artgan.similar.nga import joined
from artgan.similar.retrieval import RANDOM
from artgan.similar.retrieval import __doc__ as METRIC_NOTES

THUMBNAIL = 180

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222 }
table { border-collapse: collapse } td, th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right }
td.text, th.text { text-align: left } tr.random { color: #888; font-style: italic }
.grid { display: flex; flex-wrap: wrap; gap: 14px } .card { width: 200px; font-size: 12px }
.card img { max-width: 190px; max-height: 190px; display: block; margin-bottom: 4px }
pre { background: #f6f6f6; padding: 1em; white-space: pre-wrap }
"""

EVALUATION = """<!doctype html>
<html><head><meta charset="utf-8"><title>Similar paintings: retrieval evaluation</title>
<style>{{ style }}</style></head><body>
<h1>Similar paintings: retrieval evaluation</h1>
<p>{{ images }} images from <code>{{ root }}</code>, k = {{ k }}.
Each image queries all others; its own file and byte-identical copies are excluded.</p>
<table><tr><th class="text">relevance</th><th class="text">extractor</th><th class="text">layer</th><th>queries</th>
<th>precision@{{ k }}</th><th>recall@{{ k }}</th><th>mAP@{{ k }}</th><th>MRR</th></tr>
{% for row in rows %}<tr class="{{ 'random' if row.extractor == random else '' }}">
<td class="text">{{ row.relevance }}</td><td class="text">{{ row.extractor }}</td><td class="text">{{ row.layer }}</td><td>{{ row.queries }}</td>
<td>{{ '%.3f' % row.precision }}</td><td>{{ '%.3f' % row.recall }}</td><td>{{ '%.3f' % row.map }}</td><td>{{ '%.3f' % row.mrr }}</td></tr>
{% endfor %}</table>
<h2>Exact duplicate image files</h2>
{% if duplicates %}<ul>{% for group in duplicates %}<li>objects {{ group | join(', ') }}</li>{% endfor %}</ul>
{% else %}<p>none</p>{% endif %}
<h2>Problems ({{ problems | length }})</h2>
{% if problems %}<ul>{% for problem in problems %}<li>{{ problem }}</li>{% endfor %}</ul>{% else %}<p>none</p>{% endif %}
<h2>Definitions</h2><pre>{{ notes }}</pre>
</body></html>
"""

GALLERY = """<!doctype html>
<html><head><meta charset="utf-8"><title>Similar to {{ label }}</title>
<style>{{ style }}</style></head><body>
<h1>Most similar to {{ label }}</h1>
<p>extractor: {{ extractor }}{% if excluded %}; excluded exact copies of the query image: {{ excluded | join(', ') }}{% endif %}</p>
<div class="grid">
<div class="card"><img src="{{ query.thumbnail }}" alt="query"><b>query</b><br>{{ query.caption }}</div>
{% for card in cards %}<div class="card">{% if card.thumbnail %}<img src="{{ card.thumbnail }}" alt="object {{ card.objectid }}">{% endif %}
<b>#{{ card.rank }} object {{ card.objectid }}</b> ({{ '%.3f' % card.score }})<br>{{ card.caption }}</div>
{% endfor %}</div></body></html>
"""

_environment = Environment(autoescape=True)


def write_evaluation(frame, collection, out_dir) -> tuple[Path, Path]:
    """`evaluation.csv`, `evaluation.html` and the per-image metadata `nga_images.csv`."""
    out_dir = Path(out_dir)
    csv_path, html_path = out_dir / "evaluation.csv", out_dir / "evaluation.html"
    with clear_write_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(csv_path, csv_text(frame.assign(k=frame.attrs["k"]), float_format="%.4f"))
    write_text_atomic(out_dir / "nga_images.csv", csv_text(collection_csv(collection)))
    html = _environment.from_string(EVALUATION).render(
        style=STYLE,
        rows=frame.to_dict("records"),
        random=RANDOM,
        k=frame.attrs["k"],
        images=frame.attrs["images"],
        root=collection.root,
        duplicates=collection.duplicates,
        problems=[str(problem) for problem in collection.problems],
        notes=METRIC_NOTES.strip(),
    )
    write_text_atomic(html_path, html)
    return csv_path, html_path


def collection_csv(collection):
    """The per-image table with list columns joined by '; '."""
    table = collection.table.copy()
    for column in table.columns:
        if table[column].map(lambda value: isinstance(value, tuple)).any():
            table[column] = table[column].map(joined)
    return table


def write_gallery(
    path, label, query_image, query_caption, hits, collection, extractor, excluded=()
) -> Path:
    """A page with the query's thumbnail and the top-k results' thumbnails and captions."""
    cards = []
    for hit in hits:
        row = collection.row(hit.objectid)
        cards.append(
            {
                "rank": hit.rank,
                "objectid": hit.objectid,
                "score": hit.score,
                "thumbnail": thumbnail(row["path"]),
                "caption": caption(row),
            }
        )
    html = _environment.from_string(GALLERY).render(
        style=STYLE,
        label=label,
        extractor=extractor,
        excluded=list(excluded),
        cards=cards,
        query={"thumbnail": thumbnail(query_image), "caption": query_caption},
    )
    return write_text_atomic(path, html)


def caption(row) -> str:
    parts = [
        row["title"],
        joined(row["artists"]) or "artist unknown",
        joined(row["style"]),
        joined(row["theme"], ", "),
    ]
    return " | ".join(part for part in parts if part)


def thumbnail(path) -> str:
    """A JPEG data URI no larger than THUMBNAIL px, or '' if the file cannot be read."""
    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - a missing thumbnail must not lose the page
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
