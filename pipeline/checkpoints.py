"""Checkpoints of a training run: `results/models/{model}/epoch_{e:03d}.pt`, one per epoch or,
with the setting `checkpoint_every` = k, one for epoch 0, every k-th epoch and the last
(`checkpoint_epochs`).

A checkpoint holds only tensors and primitives, so `torch.load(path, weights_only=True)` reads
it. Keys: the run's header (model_name, arch, objective, rule, n_classes, input_size, classes,
label_level, preprocessing, settings), `epoch`, `metrics` and `alignment` (that epoch's
metrics.csv and alignment.csv rows), `state_dict` (the backbone: the architecture of
`pipeline.models.build_model` converted by the rule), `heads` (the objective's extra modules),
`optimizer` and `alignment_optimizer` (None for rules without one), and `generator` and
`noise_generator` (the data-order and alignment-noise generators' states): everything a
resumed run needs to continue to the same weights as an uninterrupted one. Under k > 1 a
checkpoint also holds `skipped`: the metrics and alignment rows of the epochs trained since the
checkpoint before, which have no file of their own (absent when there are none, so runs with
k = 1 write the same bytes as before the setting existed). Wall-clock
timings are not stored in a checkpoint (they go to run.json and metrics.csv), so two runs of
the same model and settings write byte-identical checkpoints; older checkpoints whose
`metrics` hold `seconds` still load and resume.

Integrity: `save_torch` writes `<checkpoint>.sha256` beside every checkpoint (the file's
sha256, size and crc32c, taken as it is written), and `read_checkpoint` checks the file's size
and crc32c against it, once per file and process (a fresh job checks each checkpoint at
crc32c's speed, several times sha256's: benchmarks/README.md); a checkpoint
that differs from its record, or that torch cannot read, raises `CheckpointError` naming the
file and the rule that rebuilds it (`train`).

The run record `model_dir/run.json` (`write_run_record`) says what the folder holds: the header
the run was trained with, its number of epochs, whether training finished, and each epoch's
seconds. `run_epochs` returns exactly the checkpoints it implies, never a glob of whatever
`epoch_*.pt` files lie in the folder. Folders written before run records existed (no run.json)
are read by globbing, with a warning.

Preemption: a run stopped by SIGTERM or SIGUSR1 (what SLURM sends before a time limit or a
preemption) writes a mid-epoch checkpoint, `partial_{epoch:03d}_{batch:06d}.pt`: the state
after that many batches of that epoch, with the epoch's data order and running sums and the
global RNG states besides the usual keys, and `pending`, the rows of epochs trained since
the last epoch checkpoint (k > 1). A stop at the end of an epoch without a checkpoint of its
own is saved the same way, as the state after batch 0 of the next epoch. It goes to the run's resume folder
(`resume_dir`: `.{model}.resume` beside the model folder, outside the `train` rule's output,
which Snakemake deletes when a job fails), together with hard links to (or copies of) the
epoch checkpoints, their records and run.json. The process then exits with `PREEMPTED_EXIT`
(`Preempted`). The rerun links the epochs back (`recover_epochs`), continues from the newest
intact partial checkpoint (`latest_partial`: a truncated or corrupt one is skipped, with a
warning, for the one before) and removes the resume folder when it finishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from pipeline.io import (CHECKSUMS, digest_sidecar, file_checksum, remove_stale_temporaries,
                         save_torch, write_json)
from pipeline.learning import make_rule
from pipeline.models import build_model

log = logging.getLogger(__name__)

__all__ = ["PREEMPTED_EXIT", "RUN_RECORD", "CheckpointError", "CheckpointWriter", "Preempted",
           "build_backbone", "capture", "checkpoint_epochs", "checkpoint_every", "clear_stale",
           "epoch_path", "forget_verified", "latest_partial", "load_backbone", "preserve",
           "read_checkpoint", "read_run_record", "recorded_sha256", "recover_epochs",
           "remove_resume_dir", "restore", "resumable", "resume_dir", "run_epochs",
           "save_partial", "settings_differences", "verified_sha256", "write_run_record"]

# The run record of a model folder (see the module docstring).
RUN_RECORD = "run.json"
# Exit status of a run stopped by a signal after writing its resume state: sysexits' EX_TEMPFAIL,
# "try again later"; profiles/slurm resubmits it (README: Preemption).
PREEMPTED_EXIT = 75
# Mid-epoch checkpoints kept in a resume folder: the newest, and the one before in case the
# newest was damaged.
PARTIALS_KEPT = 2


def _rebuild(model_dir) -> str:
    """The sentence that tells how to rebuild a run folder: its rule, forced."""
    return (f"rebuild it with the `train` rule: `snakemake --cores all --force {model_dir}` "
            "(or delete the folder and rerun `python -m pipeline train`)")


class Preempted(SystemExit):
    """A run stopped by a signal after writing its resume state. A SystemExit with status
    `PREEMPTED_EXIT`, so `python -m pipeline train` ends with it (no traceback); callers in
    Python may catch it."""

    def __init__(self, message: str):
        super().__init__(PREEMPTED_EXIT)
        self.message = message

    def __str__(self):
        return self.message


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be trusted: corrupt, truncated, changed since it
    was written, or left by a run that did not finish. The message names the file and the
    rule that rebuilds it."""


def epoch_path(model_dir, epoch: int) -> Path:
    """Path of a run's checkpoint of one epoch: `model_dir/epoch_{epoch:03d}.pt`."""
    return Path(model_dir) / f"epoch_{epoch:03d}.pt"


def checkpoint_epochs(epochs: int, every: int = 1) -> list[int]:
    """The epochs a run of `epochs` epochs writes a checkpoint for: 0 (the untrained weights),
    every `every`-th epoch, and the last, e.g. (5, 2) -> [0, 2, 4, 5]; (100, 5) -> 21 epochs."""
    return sorted({*range(0, epochs + 1, every), epochs})


def checkpoint_every(header: dict) -> int:
    """The checkpoint period of a run with this header (`settings.checkpoint_every`; 1 when
    absent, as in every run written before the setting and in MEC runs)."""
    return int((header.get("settings") or {}).get("checkpoint_every", 1))


def _json_normal(value):
    """`value` as it reads back from JSON (tuples become lists), for comparisons with run.json."""
    return json.loads(json.dumps(value))


def read_run_record(model_dir) -> dict | None:
    """The run record `model_dir/run.json`, or None when the folder has none (older runs).

    Raises CheckpointError when it exists but cannot be read.
    """
    path = Path(model_dir) / RUN_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable run record ({err}); "
                              f"{_rebuild(path.parent)}") from err
    if not isinstance(record, dict) or not {"epochs", "complete", "header"} <= record.keys():
        raise CheckpointError(f"{path}: expected a JSON object with keys epochs, complete and "
                              f"header; found {record!r:.200}; {_rebuild(path.parent)}")
    return record


def write_run_record(model_dir, header: dict, epochs: int, *, complete: bool,
                     seconds: dict[int, float]) -> None:
    """Write `model_dir/run.json` atomically.

    Parameters
    ----------
    header : dict
        The checkpoints' identity and settings.
    epochs : int
        The run trains epochs 0 … epochs; `run_epochs` lists exactly the checkpoints of these
        (`checkpoint_epochs` under the header's period).
    complete : bool
        Whether every checkpoint has been written (False while training).
    seconds : dict
        Wall-clock seconds of each epoch trained so far (kept out of the checkpoints, so
        those stay byte-reproducible).
    """
    write_json({"model_name": header.get("model_name"), "epochs": int(epochs),
                "complete": bool(complete), "header": _json_normal(header),
                "seconds": {str(e): s for e, s in sorted(seconds.items())}},
               Path(model_dir) / RUN_RECORD)


def run_epochs(model_dir) -> dict[int, Path]:
    """A run's checkpoints by epoch, in epoch order: exactly the `checkpoint_epochs` of its run
    record's epochs and checkpoint period (0 … N for a period of 1).

    Raises CheckpointError when the record says training did not finish, FileNotFoundError
    when a listed checkpoint is missing or the folder has none. A folder without run.json
    (written before run records) gives every `epoch_*.pt` in it, with a warning.
    """
    model_dir = Path(model_dir)
    record = read_run_record(model_dir)
    if record is None:
        found = {int(p.stem.split("_")[-1]): p for p in model_dir.glob("epoch_*.pt")}
        if not found:
            raise FileNotFoundError(f"{model_dir}: no checkpoints epoch_*.pt")
        log.warning("%s has no %s (trained before run records): reading every epoch_*.pt in "
                    "it, epochs %s", model_dir, RUN_RECORD, sorted(found))
        return dict(sorted(found.items()))
    if not record["complete"]:
        raise CheckpointError(
            f"{model_dir / RUN_RECORD}: training did not finish (complete: false; "
            f"{len(record.get('seconds', {}))} of epochs 0…{record['epochs']} written); "
            f"rerun the `train` rule, which resumes it")
    every = checkpoint_every(record["header"])
    by_epoch = {e: epoch_path(model_dir, e)
                for e in checkpoint_epochs(int(record["epochs"]), every)}
    for path in by_epoch.values():
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: missing, but {model_dir / RUN_RECORD} lists epochs "
                f"0…{record['epochs']} (a checkpoint every {every}); {_rebuild(model_dir)}")
    return by_epoch


def settings_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every (nested) key whose value differs between two headers."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_differences(a, b, f"{prefix}{key}.")
        elif _json_normal(a) != _json_normal(b):
            out.append(f"{prefix}{key}: {a!r:.60} -> {b!r:.60}")
    return out


# (resolved path, size, mtime_ns) -> sha256 of files verified in this process
_VERIFIED: dict[tuple, str] = {}


def verified_sha256(path) -> str:
    """sha256 of a checkpoint's bytes, checked against its `<path>.sha256` record.

    The record `save_torch` writes holds the file's size, sha256 and a fast checksum
    (crc32c): the file is checked against the size and the checksum, read at several times the
    speed of hashing it, and the recorded sha256 returned. A record without a checksum
    (written before one was recorded) is checked by hashing the file, and a checkpoint without
    a record (written by hand) is hashed and accepted as it is. Checked once per file and
    process (cached by path, size and mtime).

    Raises
    ------
    CheckpointError
        When the bytes differ from the record (bit flip, truncation, a partial copy) or the
        record is unreadable; names the file and the rule that rebuilds it.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    record = _record(path)
    checksum = next((name for name in CHECKSUMS if name in record), None)
    if checksum is not None:
        found, expected = file_checksum(path, checksum), record[checksum]
        digest = record["sha256"]
    else:
        checksum, found = "sha256", _sha256(path)
        expected = digest = record.get("sha256", found)
    if found != expected:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: its {checksum} is {_short(found)}, its record "
            f"{digest_sidecar(path).name} says {_short(expected)} ({stat.st_size} bytes now); "
            f"{_rebuild(path.parent)}")
    _VERIFIED[key] = digest
    return digest


def recorded_sha256(path) -> str | None:
    """The sha256 a checkpoint's record states, with the file's size checked against it; None
    when no checksum can check the bytes later (no record, or one written before checksums),
    so only `verified_sha256` can give it.

    Lets a reader key its output on the checkpoint at once and check the bytes
    (`verified_sha256`) while it computes, before it publishes anything.
    """
    record = _record(Path(path))
    return str(record["sha256"]) if any(name in record for name in CHECKSUMS) else None


def _record(path: Path) -> dict:
    """A checkpoint's digest record ({} when it has none), the file's size checked against it."""
    sidecar = digest_sidecar(path)
    try:
        record = json.loads(sidecar.read_text())
        str(record["sha256"])
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{sidecar}: unreadable digest record of {path.name} ({err!r}); "
                              f"{_rebuild(path.parent)}") from err
    size = path.stat().st_size
    if record.get("size", size) != size:
        raise CheckpointError(f"{path}: corrupt checkpoint: {size} bytes, its record "
                              f"{sidecar.name} says {record['size']}; {_rebuild(path.parent)}")
    return record


def forget_verified() -> None:
    """Forget which checkpoints this process has verified: the next read of each checks its
    bytes again, as a fresh job's first read does (`benchmarks/training.py` times that)."""
    _VERIFIED.clear()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(value) -> str:
    """A checksum as a message shows it: an int in hex, a hex digest's first 16 digits."""
    return f"{value:08x}" if isinstance(value, int) else f"{str(value)[:16]}…"


def read_checkpoint(path, *, verify: bool = True) -> dict:
    """A checkpoint, verified against its sha256 record (`verified_sha256`), with its tensors
    memory-mapped: reading the header or the weights touches only those bytes, never the
    optimizer state.

    With `verify` False the bytes are not checked first (the caller checks them, e.g. while it
    computes: `recorded_sha256`); a file torch cannot read is still checked, so damage is named.

    Raises FileNotFoundError when absent and CheckpointError, naming the file and the rule
    that rebuilds it, when it is corrupt or truncated.
    """
    path = Path(path)
    if verify:
        verified_sha256(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:       # torch's zip reader, the unpickler: any error means corrupt
        if not verify:
            verified_sha256(path)  # a checksum that differs says more than torch's error
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: "
                              f"{str(err)[:200]}); {_rebuild(path.parent)}") from err


def build_backbone(checkpoint: dict) -> nn.Module:
    """The untrained backbone a checkpoint's `state_dict` fits: its architecture, readout width
    and input size, layers converted for its rule (bp for checkpoints older than rules)."""
    model = build_model(checkpoint["arch"], checkpoint["n_classes"], checkpoint["input_size"])
    return make_rule(checkpoint.get("rule", "bp")).convert(model)


def load_backbone(checkpoint: dict, device) -> nn.Module:
    """A checkpoint's trained backbone on `device`, frozen and in eval mode.

    Built on the meta device and given the checkpoint's tensors as they are, so no weights
    are drawn only to be overwritten.
    """
    with torch.device("meta"):
        model = build_backbone(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], assign=True)
    model.requires_grad_(False)
    return model.to(device).eval()


def _snapshot(value):
    """A copy of a nested dict/list of tensors on the CPU that later training steps cannot change.

    Strings are interned: pickle writes a repeated object once and refers back to it, by
    identity, so equal strings must be one object for the bytes not to depend on where they
    came from (a resumed run's optimizer keys are read from a checkpoint, a fresh run's are
    torch's literals).
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if type(value) is str:
        return sys.intern(value)
    if isinstance(value, dict):
        return {_snapshot(k): _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value


def capture(net, optimizers, generators, *, header: dict, epoch: int, metrics: dict,
            alignment: list[dict], skipped: list[dict] = ()) -> dict:
    """The checkpoint of a live run, copied off the model, optimizers and generators.

    Parameters
    ----------
    net : pipeline.objectives.ObjectiveNet
        Its `backbone` and `heads` are saved.
    optimizers : tuple
        (task optimizer, alignment optimizer or None).
    generators : tuple of torch.Generator
        (data order, alignment noise).
    header : dict
        The run's identity and settings (a resumed run must match it).
    epoch, metrics, alignment
        The epoch and its metrics.csv row and alignment.csv rows.
    skipped : list of dict
        {epoch, metrics, alignment} of the epochs trained since the checkpoint before, which
        have none of their own; stored under `skipped` when there are any.
    """
    task, align = optimizers
    return _snapshot({**header, "state_dict": net.backbone.state_dict(),
                      "heads": net.heads.state_dict(), "epoch": epoch, "metrics": metrics,
                      "alignment": alignment, "optimizer": task.state_dict(),
                      "alignment_optimizer": None if align is None else align.state_dict(),
                      "generator": generators[0].get_state(),
                      "noise_generator": generators[1].get_state(),
                      **({"skipped": list(skipped)} if skipped else {})})


def restore(checkpoint: dict, net, optimizers, generators) -> None:
    """Put a checkpoint's weights, optimizer states and generator states back into a run
    built as `capture` saw it."""
    net.backbone.load_state_dict(checkpoint["state_dict"])
    net.heads.load_state_dict(checkpoint["heads"])
    optimizers[0].load_state_dict(checkpoint["optimizer"])
    if optimizers[1] is not None:
        optimizers[1].load_state_dict(checkpoint["alignment_optimizer"])
    generators[0].set_state(checkpoint["generator"])
    generators[1].set_state(checkpoint["noise_generator"])


class CheckpointWriter:
    """Writes checkpoints atomically in a background thread while training goes on.

    At most one write is in flight (memory: one extra copy of the state), and leaving the
    context waits for the last one, so every checkpoint exists when the run returns and a
    failed write raises in the training process.
    """

    def __enter__(self):
        self._pool = ThreadPoolExecutor(1)
        self._pending = None
        return self

    def save(self, path, checkpoint: dict) -> None:
        """Write `checkpoint` (as `capture` returns it) to `path` once the previous write ends."""
        self.wait()
        self._pending = self._pool.submit(save_torch, checkpoint, path)

    def wait(self) -> None:
        """Block until the write in flight, if any, has ended; raise its error."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def __exit__(self, *exc):
        try:
            self.wait()
        finally:
            self._pool.shutdown()


def resumable(model_dir, header: dict, epochs: int) -> list[dict]:
    """Intact checkpoints of the run's `checkpoint_epochs` (epoch_000, epoch_001, … for a
    period of 1), in order, written for the same model and settings.

    Stops at the first missing, unreadable, corrupt (sha256 record) or mismatching file (or
    after `epochs`), logging why; returns [] when a checkpoint was written with another header,
    so the run starts afresh.
    """
    found = []
    for epoch in checkpoint_epochs(epochs, checkpoint_every(header)):
        path = epoch_path(model_dir, epoch)
        if not path.exists():
            break
        try:
            # mapped: only the header is read here, and only the last checkpoint's tensors later
            checkpoint = read_checkpoint(path)
        except Exception as err:  # truncated or corrupt file: retrain from the one before
            log.warning("%s unreadable (%s); training resumes before it", path, err)
            break
        same = all(checkpoint.get(k) == v for k, v in header.items())
        if not same or checkpoint.get("epoch") != epoch:
            log.info("%s was written with other settings; training starts afresh", path)
            return []
        found.append(checkpoint)
    return found


def clear_stale(model_dir, header: dict, epochs: int, keep: int) -> None:
    """Make `model_dir` hold only checkpoints of the run about to train.

    Removes every `epoch_*.pt` (with its sha256 record) but the first `keep` of the run's
    `checkpoint_epochs`, records left without their checkpoint, and temporaries of interrupted
    writes. Call after `resumable` (its `keep` checkpoints are this run's) and after writing the
    run record with
    complete=False, so a folder being cleared is never read as finished. Checkpoints of a run
    with other settings (another lr, more epochs, …) are removed with a warning naming the
    folder and the differing settings.
    """
    model_dir = Path(model_dir)
    for tmp in sorted(model_dir.glob(".*.tmp-*")):
        remove_stale_temporaries(model_dir / tmp.name[1:].rsplit(".tmp-", 1)[0])
    kept = set(checkpoint_epochs(epochs, checkpoint_every(header))[:keep])
    stale = sorted(p for p in model_dir.glob("epoch_*.pt")
                   if int(p.stem.split("_")[-1]) not in kept)
    if stale:
        changed = [] if keep else _old_differences(stale[0], header)
        last = int(stale[-1].stem.split("_")[-1])
        if last > epochs:
            changed.append(f"epochs: {last} -> {epochs}")
        if changed:
            log.warning("%s: removing %s, written by a run with other settings (%s); the folder "
                        "now holds only this run's epochs", model_dir,
                        ", ".join(p.name for p in stale), "; ".join(changed))
        else:
            log.info("%s: removing %s, to be retrained", model_dir,
                     ", ".join(p.name for p in stale))
    for path in stale:
        path.unlink()
    for record in model_dir.glob("epoch_*.pt.sha256"):
        if not record.with_suffix("").exists():
            record.unlink()


def _old_differences(path: Path, header: dict) -> list[str]:
    """The settings in which the checkpoint at `path` differs from `header` ([] if unreadable)."""
    try:
        old = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:                                # unreadable: nothing to compare
        return []
    return settings_differences({k: old.get(k) for k in header}, header)


def resume_dir(model_dir) -> Path:
    """The resume folder of a run: `.{model}.resume` beside its model folder (see the module
    docstring); outside the `train` rule's output, so a failed job's cleanup keeps it."""
    model_dir = Path(model_dir)
    return model_dir.parent / f".{model_dir.name}.resume"


def _link_or_copy(source: Path, target: Path) -> None:
    """Make `target` a hard link to `source` (no bytes copied), or a copy where the filesystem
    has no hard links; atomically, replacing any older `target`."""
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _epoch_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("epoch_*.pt"), *folder.glob("epoch_*.pt.sha256")])


def preserve(model_dir) -> None:
    """Link a run's epoch checkpoints, their sha256 records and run.json into its resume folder,
    which then mirrors the model folder's epochs."""
    model_dir = Path(model_dir)
    target = resume_dir(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    keep = {p.name for p in _epoch_files(model_dir)}
    for old in _epoch_files(target):
        if old.name not in keep:
            old.unlink()
    for source in [*_epoch_files(model_dir), model_dir / RUN_RECORD]:
        if source.exists():
            _link_or_copy(source, target / source.name)


def recover_epochs(model_dir) -> list[Path]:
    """Link back into `model_dir` the epoch checkpoints (with records) and run.json that its
    resume folder holds and it lacks, e.g. after Snakemake deleted a failed job's output.
    Returns the files restored."""
    model_dir = Path(model_dir)
    source = resume_dir(model_dir)
    if not source.is_dir():
        return []
    model_dir.mkdir(parents=True, exist_ok=True)
    restored = []
    for path in [*_epoch_files(source), source / RUN_RECORD]:
        target = model_dir / path.name
        if path.exists() and not target.exists():
            _link_or_copy(path, target)
            restored.append(target)
    if restored:
        log.info("%s: restored %d file(s) from %s", model_dir, len(restored), source)
    return restored


def _partials(folder: Path) -> list[Path]:
    """Mid-epoch checkpoints in a resume folder, oldest first (names sort by epoch, batch)."""
    return sorted(folder.glob("partial_*.pt"))


def save_partial(model_dir, checkpoint: dict) -> Path:
    """Write a mid-epoch checkpoint (with its `position`) into the run's resume folder,
    atomically and with its sha256 record, after linking the epoch checkpoints there; keep the
    newest `PARTIALS_KEPT`. Returns its path."""
    folder = resume_dir(model_dir)
    preserve(model_dir)
    position = checkpoint["position"]
    path = folder / f"partial_{int(position['epoch']):03d}_{int(position['batch']):06d}.pt"
    save_torch(checkpoint, path)
    for old in _partials(folder)[:-PARTIALS_KEPT]:
        old.unlink()
        old.with_name(f"{old.name}.sha256").unlink(missing_ok=True)
    return path


def latest_partial(model_dir, header: dict, epoch: int) -> dict | None:
    """The newest intact mid-epoch checkpoint written with `header` that continues a run whose
    epoch checkpoints end before `epoch`, or None.

    It continues such a run when it stands in `epoch` itself or, under a checkpoint period
    k > 1, in a later epoch whose `pending` rows are exactly those of `epoch` … its own epoch
    − 1. One that cannot be read (truncated, corrupt: `read_checkpoint`) is skipped with a
    warning and the one before it is tried; those of other epochs or settings are passed over.
    """
    for path in reversed(_partials(resume_dir(model_dir))):
        try:
            checkpoint = read_checkpoint(path)
        except Exception as err:           # truncated or corrupt: the previous one serves
            log.warning("%s unreadable (%s); trying the mid-epoch checkpoint before it",
                        path, err)
            continue
        stands = int(checkpoint["position"]["epoch"])
        pending = [int(row["epoch"]) for row in checkpoint.get("pending", [])]
        if stands >= epoch and pending == list(range(epoch, stands)) and all(
                checkpoint.get(k) == v for k, v in header.items()):
            return checkpoint
    return None


def remove_resume_dir(model_dir) -> None:
    """Remove a finished run's resume folder, if any."""
    folder = resume_dir(model_dir)
    if folder.exists():
        shutil.rmtree(folder)
        log.info("removed %s (the run finished)", folder)
