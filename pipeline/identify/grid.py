"""The grid of training runs whose learning rule is to be identified (spec_ch5-6 B.2–B.3).

A run is one (task, architecture, rule class, batch size, initialisation seed, data-order seed),
named `{task}-{arch}-{rule}-b{batch_size}-i{init_seed}-d{data_seed}`, e.g.
`supervised-lenet-sgdm-b128-i0-d0`; parts use `_`, never `-`. Each run is an ordinary
training job (`pipeline.train.train`) of the model `{arch}-{objective}-{learning rule}-s{init
seed}`: a rule class (the classifier's label) is a learning rule with a task optimizer and a
learning rate, so SGDM and Adam are both bp (B.2). The rate of a class with `scale_lr` is
`lr · batch_size / base_batch_size` (B.3's linear rescaling from batch 256).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from pipeline.models.names import check_model

RUN_PATTERN = r"[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+-b\d+-i\d+-d\d+"
_RUN = re.compile(r"^([a-z0-9_]+)-([a-z0-9_]+)-([a-z0-9_]+)-b(\d+)-i(\d+)-d(\d+)$")
# Where a task's stimuli come from: the config's `stimuli` block, or the vector task.
TASK_DATA = ("stimuli", "vectors")

__all__ = ["RUN_PATTERN", "Run", "TASK_DATA", "check_grid", "expand_grid", "parse_run",
           "run_settings"]


@dataclass(frozen=True)
class Run:
    """One training run of the identification grid (its label is `rule`, the rule class)."""

    task: str
    arch: str
    rule: str
    batch_size: int
    init_seed: int
    data_seed: int

    @property
    def name(self) -> str:
        return (f"{self.task}-{self.arch}-{self.rule}-b{self.batch_size}-i{self.init_seed}"
                f"-d{self.data_seed}")

    def model(self, classes: dict, tasks: dict) -> str:
        """The trained model's name `{arch}-{objective}-{learning rule}-s{init_seed}`."""
        return (f"{self.arch}-{tasks[self.task]['objective']}-{classes[self.rule]['rule']}"
                f"-s{self.init_seed}")

    def labels(self) -> dict:
        """The run's identity as table columns (curriculum = batch size × data-order seed)."""
        return {"run": self.name, "task": self.task, "arch": self.arch, "rule": self.rule,
                "batch_size": self.batch_size, "init_seed": self.init_seed,
                "data_seed": self.data_seed,
                "curriculum": f"b{self.batch_size}-d{self.data_seed}"}


def parse_run(name: str) -> Run:
    """The Run a name stands for; ValueError naming the expected shape otherwise."""
    match = _RUN.match(name)
    if match is None:
        raise ValueError(f"run name {name!r} must look like "
                         "{task}-{arch}-{rule}-b{batch_size}-i{init_seed}-d{data_seed}, "
                         "e.g. supervised-lenet-sgdm-b128-i0-d0")
    task, arch, rule, batch, init, data = match.groups()
    return Run(task, arch, rule, int(batch), int(init), int(data))


def expand_grid(grid: dict) -> list[Run]:
    """Every run of `identify.grid`: tasks × archs × rules × batch sizes × init × data seeds."""
    return [Run(task, arch, rule, batch, init, data) for task, arch, rule, batch, init, data in
            itertools.product(grid["tasks"], grid["archs"], grid["rules"], grid["batch_sizes"],
                              grid["init_seeds"], grid["data_seeds"])]


def run_settings(run: Run, block: dict) -> dict:
    """`pipeline.train.TrainSettings` of a run, from the config's `identify` block.

    The block's `train` settings, the rule class's optimizer, learning rate (rescaled by the
    batch size when `scale_lr`) and rule settings, the task's objective settings, and the
    run's batch size and data-order seed.
    """
    klass = block["classes"][run.rule]
    train = dict(block["train"])
    base = train.pop("base_batch_size")
    lr = klass["lr"] * (run.batch_size / base if klass.get("scale_lr", False) else 1.0)
    return {**train, "batch_size": run.batch_size, "data_seed": run.data_seed, "lr": lr,
            "optimizer": klass["optimizer"], "rule_settings": klass.get("rule_settings", {}),
            "objective_settings": block["tasks"][run.task].get("objective_settings", {})}


def check_grid(block: dict, *, stimulus_size: int) -> list[Run]:
    """The runs of the `identify` block, each checked before anything runs.

    Raises ValueError naming the field: a grid rule without a class, a task without an
    entry, a rule class or arch under observables.units outside the grid, or a model its
    training job would refuse (input size, objective × rule).
    """
    grid, classes, tasks = block["grid"], block["classes"], block["tasks"]
    for field, names, known in (("rules", grid["rules"], classes), ("tasks", grid["tasks"], tasks)):
        stray = [name for name in names if name not in known]
        if stray:
            raise ValueError(f"field 'identify.grid.{field}' lists {stray[0]!r}, which "
                             f"identify.{'classes' if field == 'rules' else 'tasks'} does not "
                             f"define (defined: {', '.join(known)})")
    units = block.get("observables", {}).get("units", {})
    for field, names, known in (("rules", units.get("rules", []), grid["rules"]),
                                ("archs", units.get("archs", []), grid["archs"])):
        stray = [name for name in names if name not in known]
        if stray:
            raise ValueError(f"field 'identify.observables.units.{field}' lists {stray[0]!r}, "
                             f"which is not in identify.grid.{field} {list(known)}")
    runs = expand_grid(grid)
    for run in runs:
        task = tasks[run.task]
        size = block["vectors"]["size"] if task["data"] == "vectors" else stimulus_size
        try:
            check_model(run.model(classes, tasks), input_size=size, epochs=block["train"]["epochs"])
        except ValueError as err:
            raise ValueError(f"identify run {run.name!r}: {err}") from err
    return runs
