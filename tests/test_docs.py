"""Every Python block in the quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "quickstart.md"


def test_quickstart_code_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert namespace["resumed"].n_evals >= 64
    assert namespace["opt"].best.y > 0.5


def test_integrations_code_blocks_run():
    import numpy as np

    page = Path(__file__).parents[1] / "docs" / "integrations.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 3
    namespace: dict = {"np": np}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    assert namespace["result"].n_evals == 80 and namespace["result"].y < 0.2
    assert len(namespace["study"].trials) == 40
    assert set(namespace["best"].config) == {"x", "lr"}
