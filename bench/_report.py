"""Where the benchmarks write their figures: one section of BENCHMARKS.md each."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_section(section: str, markdown: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace the section headed `section` (up to the next `## `) with `markdown`, or
    append it when there is none."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _m: markdown + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + markdown + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote the '{section[3:]}' section of {path}")
