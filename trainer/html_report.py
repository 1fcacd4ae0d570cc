"""Reports people read (issue 22 §2): a run's report.md rendered to HTML by the Markdown library
(tables as tables, long lines wrapped), its plots embedded, links to the runs it is compared
with, and ``runs/index.html`` listing every report under the reports folder, newest first.

One Markdown text is the source of both files: what the HTML shows is what report.md says.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 1.5rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-variant-numeric: tabular-nums; font-size: 0.88em;
        display: block; max-width: 100%; overflow-x: auto; }  /* a wide table scrolls, the page does not */
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.5rem; text-align: right; }
td { white-space: nowrap; }  /* an interval or a date range stays on one line */
table.text td, table.text th { text-align: left; }  /* words, not figures */
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
code, pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.9em; }
li, p { overflow-wrap: anywhere; }
nav { font-size: 0.9em; margin-bottom: 1rem; } nav a { margin-right: 1rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
"""


def md_to_html(md: str) -> str:
    """Markdown (tables included) to an HTML fragment; raw HTML in the text is escaped."""
    return markdown.markdown(html.escape(md, quote=False), extensions=["tables", "sane_lists"], output_format="html")


def write_html(
    md: str, files: dict[str, Path], title: str, path: Path, links: list[tuple[str, str]] | None = None
) -> None:
    """``path``: the Markdown as HTML, then every plot embedded as a data: URI under its name;
    ``links`` (label, relative href) at the top, with the index of all runs."""
    nav = [("all runs", "../index.html"), *(links or [])]
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"/><figcaption>{html.escape(name)}.png</figcaption></figure>'
        for name, p in files.items()
    )
    path.write_text(
        _page(
            f"Stairway {title}",
            "<nav>" + "".join(f'<a href="{html.escape(h)}">{html.escape(t)}</a>' for t, h in nav) + "</nav>"
            f"{md_to_html(md)}{figures}",
        )
    )
    write_index(path.parent.parent)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


_HEADLINE = re.compile(r"^\*\*(.+?)\*\*")


def write_index(reports_dir: Path) -> Path:
    """``reports_dir/index.html``: one row per run folder holding a report.md, newest first:
    its title, its outcome line and a link to its report.html."""
    rows = []
    for md_path in sorted(reports_dir.glob("*/report.md"), key=lambda p: p.stat().st_mtime, reverse=True):
        lines = md_path.read_text(errors="replace").splitlines()
        title = next((x.lstrip("# ").strip() for x in lines if x.startswith("# ")), md_path.parent.name)
        outcome = next((m.group(1) for x in lines if (m := _HEADLINE.match(x))), "")
        href = f"{md_path.parent.name}/report.html"
        rows.append(
            f'<tr><td><a href="{html.escape(href)}">{html.escape(md_path.parent.name)}</a></td>'
            f"<td>{html.escape(title)}</td><td>{html.escape(outcome)}</td></tr>"
        )
    out = reports_dir / "index.html"
    out.write_text(
        _page(
            "Stairway runs",
            "<h1>Runs</h1><table class='text'><tr><th>folder</th><th>run</th><th>outcome</th></tr>"
            + "".join(rows)
            + "</table>",
        )
    )
    return out
