"""``evogm-opt merge --rebuild RUN --out OUT``: ``merged/`` written again from ``evogm_merge.json`` and the base and
expert folders it names — no config, no search, no task data.

The merge is put together the way the run did it (``assemble`` with the recorded method, options and layout, then
``report.apply_entry``: λ, or the coordinates after replaying the recorded basis shifts), so on the same device
the tensors are the run's. Records of format 1 (written before this command) lack the dtype, the layout and the
experts' kinds; those are read from the run folder's ``run.json`` when it is there, and refused otherwise.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_merge.merges.base import CONVENTION, check_convention
from llm_merge.run.assemble import LayoutSpec, assemble
from llm_merge.run.identity import GONE, input_change
from llm_merge.run.journal import RUN, RunError, read_json_object
from llm_merge.run.report import RECORD, RECORD_FORMAT, apply_entry, save_merged
from llm_merge.run.schema import ExpertSpec, LayoutChoice, RunSchema, SimplexChoice, default_of

_REBUILD_KEYS = ("tokenizer", "dtype", "device", "expert_names", "expert_kinds", "on_other_base", "layout")


def find_record(source: str | Path) -> Path:
    """``evogm_merge.json`` itself, or the one in a run folder's ``merged/`` (or in a ``merged/`` folder)."""
    source = Path(source)
    for path in (source, source / "merged" / RECORD, source / RECORD):
        if path.is_file():
            return path
    raise RunError(f"{source}: no {RECORD} there (give a run folder, its merged/ folder, or the file)")


def _from_run_json(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """A format-1 record completed from its run folder's ``run.json`` (the resolved config)."""
    run_file = path.parent.parent / RUN
    try:
        config = read_json_object(run_file, "")["config"]
        if not isinstance(config, dict) or not isinstance(config.get("experts"), list):
            raise KeyError("experts")
    except (RunError, KeyError):
        raise RunError(
            f"{path} predates the rebuild command (no dtype, layout or expert kinds in it) and no readable {RUN} "
            f"beside its run folder ({run_file}) holds them; rebuild from the run folder, or run the merge again"
        ) from None
    if config.get("base") != record["base"] or config.get("method") != record["method"]:
        raise RunError(f"{run_file} is the config of another run than {path} (base or method differ)")
    specs = [e if isinstance(e, dict) else {"path": e, "name": Path(str(e)).name} for e in config["experts"]]
    if "dtype" not in config:
        raise RunError(f"{run_file}: its config has no dtype; rebuild from a run folder written by this evogm-opt")
    return {
        **record,
        "tokenizer": config.get("tokenizer"),
        "dtype": config["dtype"],
        "device": config.get("device", default_of(RunSchema, "device")),
        "expert_names": [e["name"] for e in specs],
        "expert_kinds": [e.get("kind", default_of(ExpertSpec, "kind")) for e in specs],
        "on_other_base": config.get("on_other_base", default_of(RunSchema, "on_other_base")),
        "layout": {  # a key the config lacks: the schema's default (no simplex unless asked for)
            "name": config.get("layout", default_of(RunSchema, "layout").name),
            "groups": config.get("layout_groups", default_of(LayoutChoice, "groups")),
            "simplex": config.get("simplex", default_of(RunSchema, "simplex") is not None),
            "sharpness": config.get("simplex_sharpness", default_of(SimplexChoice, "sharpness")),
        },
    }


def read_record(path: Path) -> dict[str, Any]:
    """The record, checked for what a rebuild needs (format 1 completed from ``run.json``); any damage — not
    JSON, not an object, a missing or mistyped field — is one line naming the file and the field."""
    record = read_json_object(path, "give the evogm_merge.json a run wrote")
    fmt = record.get("format", 1)
    if not isinstance(fmt, int) or fmt > RECORD_FORMAT:
        raise RunError(f"{path}: format {fmt!r}, newer than this evogm-opt reads ({RECORD_FORMAT}); upgrade evogm-opt")
    missing = [k for k in ("base", "experts", "method", "lambda", "basis_version") if k not in record]
    if missing:
        raise RunError(f"{path}: not an evogm-opt merge record (missing {', '.join(missing)})")
    if fmt == 1:
        record = _from_run_json(record, path)
    missing = [k for k in (*_REBUILD_KEYS, "method_options") if k not in record]
    if record["basis_version"] and ("shift_rows" not in record or record.get("coordinates") is None):
        missing.append("shift_rows/coordinates")
    if missing:
        raise RunError(f"{path}: cannot rebuild, missing {', '.join(missing)}")
    _check_types(record, path)
    try:  # a 0.1 record of the removed convention: refused before the base loads, saying where its code is
        check_convention(record["method"], record["method_options"].get("convention", CONVENTION))
    except ValueError as exc:
        raise RunError(f"{path}: {exc}") from None
    return record


def _check_types(record: dict[str, Any], path: Path) -> None:
    """Each field the rebuild reads has the type a run writes (an edited record is refused, not half-used)."""

    def strings(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(s, str) for s in v)

    n = len(record["experts"]) if isinstance(record["experts"], list) else -1
    checks = {
        "base": isinstance(record["base"], str),
        "experts": strings(record["experts"]) and n > 0,
        "expert_names": strings(record["expert_names"]) and len(record["expert_names"]) == n,
        "expert_kinds": strings(record["expert_kinds"]) and len(record["expert_kinds"]) == n,
        "method": isinstance(record["method"], str),
        "method_options": isinstance(record["method_options"], dict),
        "dtype": isinstance(record["dtype"], str),
        "device": isinstance(record["device"], str),
        "tokenizer": record["tokenizer"] is None or isinstance(record["tokenizer"], str),
        "layout": isinstance(record["layout"], dict)
        and set(record["layout"]) <= {"name", "groups", "simplex", "sharpness"},
        "lambda": isinstance(record["lambda"], list) and all(isinstance(v, (int, float)) for v in record["lambda"]),
        "basis_version": record["basis_version"] is None or type(record["basis_version"]) is int,
    }
    if record["basis_version"]:
        checks["coordinates"] = isinstance(record["coordinates"], list)
        checks["shift_rows"] = isinstance(record["shift_rows"], list)
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise RunError(
            f"{path}: {bad[0]} is not what a run writes there ({record[bad[0]]!r:.60}); the record was edited"
        )


def check_inputs(record: dict[str, Any], path: Path) -> None:
    """Refuse an expert (or base) whose content differs from what the run loaded: the rebuild would write
    another merge under the run's name. Records written before identities were recorded are not checked."""
    recorded = [("base", record.get("base_input"))]
    inputs = record.get("expert_inputs")
    if isinstance(inputs, list):
        recorded += [(f"expert '{e.get('name')}'", e) for e in inputs if isinstance(e, dict)]
    for label, entry in recorded:
        if not isinstance(entry, dict) or not isinstance(entry.get("identity"), dict) or "path" not in entry:
            continue
        source = str(entry["path"])
        why = input_change(source, entry["identity"])
        if why == GONE:
            raise RunError(
                f"{path}: {label} is no longer at {source} (moved or deleted after the run loaded it); put it back "
                "there to rebuild"
            )
        if why is not None:
            raise RunError(
                f"{path}: {label} at {source} changed since the run loaded it ({why}); restore it — the rebuild "
                "would write another merge"
            )


def rebuild(
    source: str | Path, out: str | Path, *, device: str | None = None, say: Callable[..., Any] = print
) -> dict[str, Any]:
    """Write the merge ``source`` records (a run folder or its ``evogm_merge.json``) into the new folder ``out``:
    weights, config, tokenizer and a copy of the record. Refuses an existing ``out``; returns the record."""
    out = Path(out)
    if out.exists():
        raise RunError(f"--out {out} exists; the rebuild writes a new folder and overwrites nothing")
    path = find_record(source)
    record = read_record(path)
    check_inputs(record, path)
    named = zip(record["experts"], record["expert_names"], record["expert_kinds"])
    experts = [ExpertSpec(path=p, name=n, kind=k) for p, n, k in named]
    asm = assemble(
        record["base"],
        experts,
        [],
        method=record["method"],
        method_options=record["method_options"],
        dtype=record["dtype"],
        device=device or record["device"],
        tokenizer=record["tokenizer"],
        layout=LayoutSpec(**record["layout"]),
        on_other_base=record["on_other_base"],
        model_type=record.get("model_type", "auto"),  # absent before encoder–decoders: auto reads the base
    )
    shifts = record.get("shift_rows", [])
    say(
        f"rebuilding {record['method']} of {len(experts)} experts on {asm.model.device}"
        + (f", after {len(shifts)} basis shift(s)" if record["basis_version"] else "")
    )
    apply_entry(asm.fitness, shifts, record)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{time.time_ns()}"  # a crash leaves no half OUT
    staging.mkdir()  # the umask's permissions (mkdtemp's would be 0700)
    try:
        save_merged(asm, staging)
        shutil.copyfile(path, staging / RECORD)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record
