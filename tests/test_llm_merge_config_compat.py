"""A config's fingerprint (what ``run.json`` records, and a resume compares) does not change across releases: run
folders written before keep resuming. Pinned from the schema as it was before the restructure (issue 28): the
resolved config of six YAML configs, and the fingerprints those gave in the folder where they were recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.run.config import parse_config

from tests.test_llm_merge_run import workspace  # noqa: F401

PINS = json.loads((Path(__file__).parent / "data" / "llm_merge_config_pins.json").read_text())
RECORDED_AT = "/tmp/lm_base/before/ws"  # the workspace the pins were recorded in (their paths, hashed)
# what a fingerprint leaves out: where the run is written, when it stops, how fast it runs, whether it warns
LEFT_OUT = ("output", "baselines", "save_model", "stopping", "threads", "on_other_base", "model_type")


def fingerprint_of(resolved: dict) -> str:
    data = {k: v for k, v in resolved.items() if k not in LEFT_OUT}
    data["optimizer"] = {k: v for k, v in data["optimizer"].items() if k != "budget"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def at(root: str, pinned: dict) -> dict:
    return json.loads(json.dumps(pinned).replace("{root}", root))


@pytest.mark.parametrize("name", sorted(PINS))
def test_the_resolved_config_and_its_fingerprint_are_the_ones_recorded(workspace, name):  # noqa: F811
    pin = PINS[name]
    assert fingerprint_of(at(RECORDED_AT, pin["to_dict"])) == pin["fingerprint_at_recording"]
    cfg = parse_config(pin["yaml"], workspace)
    resolved = json.loads(json.dumps(cfg.to_dict(), default=str))
    assert resolved == at(str(workspace), pin["to_dict"])
    assert cfg.fingerprint() == fingerprint_of(resolved)
