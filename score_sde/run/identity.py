"""Which run wrote a checkpoint, so that a resumed run never silently mixes two.

    ident = identity.of(cfg, run_id(workdir))   # recorded in every checkpoint (its checksum item)
    identity.check_resume(restored_identity, ident, path, allow=cfg.training.allow_foreign_checkpoint)

An identity is {"run_id", "seed", "config_hash", "fields"}: the run id is made at a run's first
start and kept in <workdir>/run.json; `fields` are the config fields that change the model, the
SDE or the data (`fields`), `config_hash` their digest. Resuming from a checkpoint of another run
(another run id: copied in from elsewhere) or of other such fields is refused with one error that
names both and the flag that allows it on purpose (fine-tuning from another run's weights). Other
fields (steps, logging, eval and snapshot frequencies, batch size, optimizer) may change on resume
(but for consistency training the step count, which sets its curriculum);
`changed_fields` lists them for the log (but config.logging: where the run reports, not what it
is).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np

from score_sde import parallel
from score_sde.config import Config
from score_sde.store import fs
from score_sde.store import workdir as wd

RUN_FILE = "run.json"
ALLOW = "--config.training.allow_foreign_checkpoint=True"
# The fields a run's checkpoints belong to: every model field, these of the data and training.
_DATA = ("dataset", "image_size", "num_channels", "dim", "centered", "category")
_TRAINING = ("sde", "continuous", "loss")


def fields(cfg: Config) -> dict:
    """{"seed": ..., "model.<name>": ..., "data.<name>": ..., "training.<name>": ...} (JSON
    values) of the fields that change the model, the SDE or the data."""
    d = cfg.to_dict()
    out = {"seed": d["seed"]}
    out.update({f"model.{k}": v for k, v in d["model"].items()})
    out.update({f"data.{k}": d["data"][k] for k in _DATA})
    out.update({f"training.{k}": d["training"][k] for k in _TRAINING})
    if cfg.training.loss == "consistency_training":  # the curriculum N(k) is set by these
        out.update({f"training.{k}": d["training"][k] for k in ("n_iters", "ct_s0", "ct_s1")})
    return json.loads(json.dumps(out))  # tuples -> lists, as they come back from a checkpoint


def of(cfg: Config, run_id: str) -> dict:
    """The identity recorded in this run's checkpoints."""
    f = fields(cfg)
    digest = hashlib.sha256(json.dumps(f, sort_keys=True).encode()).hexdigest()[:16]
    return {"run_id": run_id, "seed": cfg.seed, "config_hash": digest, "fields": f}


def run_id(workdir: str, main: bool, *, adopt: str | None = None) -> str:
    """This work directory's run id: <workdir>/run.json's, else `adopt` (the id in its newest
    checkpoint, when run.json is missing), else a new one. Every process gets the
    same id (process 0 reads or makes it; one all-gather). Nothing is written: `record` does."""
    path = os.path.join(workdir, RUN_FILE)
    number = 0
    if main:
        p = fs.path(path)
        try:
            number = int(json.loads(p.read_text())["run_id"] if p.exists() else adopt or "0", 16)
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{path} is not a run file of score_sde (no hexadecimal run_id in it); restore it "
                "from a backup, or remove it to let the newest checkpoint's run id stand"
            ) from None
        if number == 0:
            number = int(np.random.default_rng().integers(1, 2**31 - 1))
    return f"{parallel.max_over_processes(number):08x}"


def record(workdir: str, rid: str) -> None:
    """Writes <workdir>/run.json with `rid` unless it exists (process 0 only)."""
    path = os.path.join(workdir, RUN_FILE)
    if not fs.path(path).exists():
        wd.write_json(path, {"run_id": rid, "started": time.time()})


def check_resume(stored: dict | None, current: dict, path: str, *, allow: bool) -> list[str]:
    """Raises one ValueError when the checkpoint at `path` (identity `stored`) belongs to another
    run or to other model/SDE/data fields than `current`, unless `allow`; returns the log lines
    of what was allowed. A checkpoint that records no identity (one without checksums, or one
    saved without `Checkpoints.identity` set, as by score_sde.convert) is accepted as it is."""
    if stored is None:
        return []
    theirs = stored.get("fields", {})
    differ = [
        f"{k}: {theirs.get(k)!r} in the checkpoint, {v!r} now"
        for k, v in current["fields"].items()
        if theirs.get(k) != v
    ]
    problems = []
    if stored.get("run_id") != current["run_id"]:
        problems.append(
            f"it was written by run {stored.get('run_id')} (seed {stored.get('seed')}), not by "
            f"this work directory's run {current['run_id']} (seed {current['seed']}): copied in "
            "from another run?"
        )
    if differ:
        problems.append("its config differs in " + "; ".join(differ))
    if not problems:
        return []
    if allow:
        return [f"resuming from {path} on purpose ({ALLOW}): " + "; ".join(problems)]
    raise ValueError(
        f"refusing to resume from checkpoint {path}: {'; and '.join(problems)}. Training on would "
        f"mix two runs. Move that checkpoint out of the work directory, use another --workdir, "
        f"or pass {ALLOW} to start from its weights on purpose (e.g. fine-tuning)"
    )


def config_json_lines(path: str, now: dict, stored: dict | None, restored: str) -> list[str]:
    """The log lines of a resumed run about `path` (config.json: the config of the last start;
    `now`: this start's, `stored`: the identity in checkpoint `restored`): 'resumed with a changed
    field: ...' per field this start changes, and one note when config.json is not JSON or
    disagrees with the checkpoint on a field the checkpoint records (edited by hand). Training
    takes its config from the command line and writes it over config.json, never reading it."""
    p = fs.path(path)
    if not p.exists():
        return []
    keep = "training takes its config from the command line, never from config.json, and writes "
    keep += "this run's over it"
    try:
        before = json.loads(p.read_text())
        if not isinstance(before, dict):
            raise ValueError(f"a JSON {type(before).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as e:
        return [f"note: {path} is not a readable config ({e}): edited by hand? Ignored: {keep}"]
    recorded, theirs = (stored or {}).get("fields", {}), _flat(before)
    ours = _flat(json.loads(json.dumps(now)))
    edited = {k: v for k, v in recorded.items() if theirs.get(k, ...) != v and ours.get(k) == v}
    lines = [
        f"resumed with a changed field: {line}"
        for line in changed_fields(before, now)
        if line.split(":", 1)[0] not in edited
    ]
    if edited:
        said = ", ".join(f"{k} ({theirs.get(k)!r} there, {v!r} in it)" for k, v in edited.items())
        lines.append(
            f"note: {path} differs from checkpoint {restored} in {said}: edited by hand? Ignored: "
            f"{keep} (this run's config agrees with the checkpoint)"
        )
    return lines


def _flat(config: dict) -> dict:
    """{"seed": ..., "section.field": value} of a config dict (as `fields` names them)."""
    out = {}
    for section, value in config.items():
        if isinstance(value, dict):
            out.update({f"{section}.{k}": v for k, v in value.items()})
        else:
            out[section] = value
    return out


def changed_fields(before: dict, after: dict) -> list[str]:
    """'section.field: old -> new' for each config field that differs between two config dicts
    (config.json of the last start and this one; tuples and lists are alike, as in JSON)."""
    before, after = json.loads(json.dumps(before)), json.loads(json.dumps(after))
    out = []
    for section in sorted((set(before) | set(after)) - {"logging"}):
        a, b = before.get(section), after.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [
                f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            out.append(f"{section}: {a!r} -> {b!r}")
    return out
