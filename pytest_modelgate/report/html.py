"""Render the report context to one self-contained HTML file, and write the JSON twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..baseline import atomic_write_text


def render_html(context: dict[str, Any]) -> str:
    """HTML with autoescape on: class names and test ids are user data."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("pytest_modelgate", "report/templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)


def write_reports(context: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``modelgate.html`` and ``modelgate.json`` into ``directory``; return both paths."""
    html_path = directory / "modelgate.html"
    json_path = directory / "modelgate.json"
    atomic_write_text(json_path, json.dumps(context, indent=2, sort_keys=True) + "\n")
    atomic_write_text(html_path, render_html(context))
    return html_path, json_path
