"""Write a benchmark's figures as JSON and as a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def write_report(
    out: Path, name: str, result: dict[str, Any], header: list[str], rows: list[tuple]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = {
        **result,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / f"bench-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Benchmark: {name}",
        "",
        f"{os.cpu_count()} cores; medians of {result.get('repeats', 1)} runs.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    (out / f"bench-{name}.md").write_text("\n".join(lines) + "\n")
