"""Training a path integrator (spec §3.5): trajectories on the fly, a checkpoint per epoch.

`train_path_integrator("ugrnn_relu-placecell-bp-s0", out_dir, PathSettings(...))` writes
`epoch_000.pt` (the untrained weights) … `epoch_{epochs:03d}.pt`, `metrics.csv` and `run.json`
with the vision runs' machinery (`pipeline.checkpoints`: sha256 records, resume after the last
intact checkpoint, clean restart when the settings change). Each step draws a fresh batch of
trajectories from the run's own generator (its state is in the checkpoint, so a resumed run
continues to the same weights), and the learning rule's `step` trains the net: the rule
converts the network's nn.Linear layers (`make_rule(rule).convert`), so ``-fa-``, ``-kp-``, …
train path integrators as they train CNNs. The task optimizer is Adam (spec: lr 1e-4) on W and
biases; a rule's alignment optimizer (on B) is the rule's own.

metrics.csv: epoch, loss (training mean; epoch 0: on the evaluation batches), test_loss and
error_cm (decoding error, eq. 4.16) on fixed held-out trajectories, seconds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline import checkpoints
from pipeline.io import write_csv
from pipeline.learning import make_rule
from pipeline.mec.placecells import PlaceCells
from pipeline.mec.trajectories import simulate_trajectories
from pipeline.models.names import PATH_ARCHS, parse_model_name
from pipeline.models.path_integrator import PathIntegrator
from pipeline.objectives.base import ObjectiveNet
from pipeline.objectives.path_integration import PathIntegrationTask, decoding_error
from pipeline.runtime import resolve_device, seed_everything, set_num_threads

log = logging.getLogger(__name__)

METRICS = ("epoch", "loss", "test_loss", "error_cm", "seconds")
EVAL_SEED = 1 << 20          # held-out trajectories: a seed no training run draws from
CHECK_EVERY = 50             # steps between reads of the running loss (each read syncs a GPU)

__all__ = ["METRICS", "PathSettings", "build_task", "evaluate", "load_path_integrator",
           "train_path_integrator"]


@dataclass(frozen=True)
class PathSettings:
    """Settings of one path-integration run: the config block ``mec.train`` (schema there).

    Attributes
    ----------
    epochs, steps_per_epoch, batch_size, n_steps : int
        Spec: 100 × 1000 steps of 200 trajectories of 20 steps.
    lr : float
        Adam learning rate (spec 1e-4).
    l2 : float
        Weight of the L2 penalty on the recurrent matrices (spec 1e-4).
    n_units, n_input : int
        Recurrent and g units (spec 4096); width of the dense input layer.
    n_place_cells : int
        Np (spec 512).
    sigma, surround : float
        Place-cell width (m) and surround scale (spec 0.12, 2); surround null: plain Gaussians.
    arena : float
        Side of the square training arena (m; spec 2.2).
    place_cell_seed : int
        Seed of the place-cell centres (spec 0).
    eval_batches : int
        Held-out batches (of batch_size trajectories) measured after every epoch.
    rule_settings : dict
        Hyperparameters of the learning rule over its defaults.
    """

    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int = 200
    n_steps: int = 20
    lr: float = 1e-4
    l2: float = 1e-4
    n_units: int = 4096
    n_input: int = 64
    n_place_cells: int = 512
    sigma: float = 0.12
    surround: float | None = 2.0
    arena: float = 2.2
    place_cell_seed: int = 0
    eval_batches: int = 5
    rule_settings: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, block: dict) -> PathSettings:
        """Settings from a config block; unknown keys raise ValueError naming them."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(block) - set(known))
        if unknown:
            raise ValueError(f"mec.train has unknown key(s) {unknown}; known keys: "
                             f"{', '.join(known)}")
        return cls(**block)

    def __post_init__(self):
        for name in ("epochs", "steps_per_epoch", "batch_size", "n_steps", "n_units", "n_input",
                     "n_place_cells", "eval_batches"):
            value = getattr(self, name)
            low = 0 if name == "epochs" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"mec.train.{name} must be an int >= {low}; got {value!r}")
        for name in ("lr", "sigma", "arena"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"mec.train.{name} must be a number > 0; got {value!r}")
        if not (isinstance(self.l2, (int, float)) and self.l2 >= 0):
            raise ValueError(f"mec.train.l2 must be a number >= 0; got {self.l2!r}")
        object.__setattr__(self, "rule_settings", dict(self.rule_settings or {}))


def build_task(objective: str, settings: PathSettings) -> PathIntegrationTask:
    """The objective's task with the run's place cells (centres in the training arena)."""
    cells = PlaceCells(settings.n_place_cells, width=settings.arena, sigma=settings.sigma,
                       surround=settings.surround, seed=settings.place_cell_seed)
    return PathIntegrationTask(objective, cells, l2=settings.l2)


def _build(spec, settings: PathSettings, task: PathIntegrationTask, rule) -> ObjectiveNet:
    seed_everything(spec.seed)
    model = PathIntegrator(spec.arch, task.n_init, task.n_out, n_units=settings.n_units,
                           n_input=settings.n_input)
    return rule.convert(ObjectiveNet(model))


def _optimizers(net, rule, lr):
    """(Adam on W and biases, the rule's alignment optimizer or None)."""
    own = {id(p) for p in rule.feedback_parameters(net)}
    params = [p for p in net.parameters() if p.requires_grad and id(p) not in own]
    _, alignment = rule.optimizers(net, lr=lr, momentum=0.0, weight_decay=0.0)
    return torch.optim.Adam(params, lr=lr), alignment


def _batch(settings, generator, device):
    """One training batch of trajectories in the training arena, from the run's generator."""
    return simulate_trajectories(settings.batch_size, settings.n_steps, width=settings.arena,
                                 generator=generator).to(device)


@torch.no_grad()
def evaluate(model: PathIntegrator, task: PathIntegrationTask, *, n_batches: int,
             batch_size: int, n_steps: int, width: float, seed: int = EVAL_SEED,
             g_mask: torch.Tensor | None = None, device=None) -> tuple[float, float]:
    """(task loss, decoding error in m) on `n_batches` seeded held-out batches (spec §3.7).

    The same seed gives every model, and every knockout, the same trajectories.
    """
    device = device or next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    loss = error = 0.0
    for _ in range(n_batches):
        traj = simulate_trajectories(batch_size, n_steps, width=width,
                                     generator=generator).to(device)
        velocity, init = task.inputs(traj)
        out = model.run(velocity, init, g_mask=g_mask)["dc"]
        loss += float(task.task_loss(out, task.targets(traj)))
        error += float(decoding_error(task.decode(out), traj.position))
    model.train(was_training)
    return loss / n_batches, error / n_batches


def _header(name, spec, settings: PathSettings, rule) -> dict:
    s = asdict(settings)
    s.pop("epochs")
    s["rule_settings"] = rule.settings
    return {"model_name": name, "arch": spec.arch, "objective": spec.objective,
            "rule": spec.rule, "kind": "path_integrator", "settings": s}


def train_path_integrator(model_name: str, out_dir, settings: PathSettings | None = None, *,
                          device: str = "auto", num_threads: int | None = None) -> pd.DataFrame:
    """Train a named path integrator; a checkpoint per epoch, metrics.csv, run.json.

    Parameters
    ----------
    model_name : str
        ``{cell}_{nonlinearity}-{placecell|position}-{rule}-s{seed}``; the seed fixes the
        weights (W, then the rule's B) and the training trajectories.
    out_dir : path-like
        The run folder (results/mec/models/{model}).
    settings : PathSettings, optional
    device : "auto", "cpu" or "cuda"
    num_threads : int, optional
        Pin torch and BLAS threads.

    Returns
    -------
    pandas.DataFrame
        `METRICS`, one row per epoch (0 = untrained).

    Raises
    ------
    ValueError
        For a name that is not a path integrator, or bad settings (naming the field).
    FloatingPointError
        When the running training loss turns non-finite (read every `CHECK_EVERY` steps and at
        the epoch's end, so a GPU is not made to wait each step), naming the model, epoch and
        steps.
    """
    settings = PathSettings() if settings is None else settings
    spec = parse_model_name(model_name)
    if spec.arch not in PATH_ARCHS:
        raise ValueError(f"model {model_name!r} is not a path integrator; archs: "
                         f"{', '.join(PATH_ARCHS)}")
    if num_threads is not None:
        set_num_threads(num_threads)
    device = resolve_device(device)
    rule = make_rule(spec.rule, settings.rule_settings, weight_decay=0.0)
    task = build_task(spec.objective, settings)
    task.place_cells.to(device)
    net = _build(spec, settings, task, rule).to(device)
    optimizers = _optimizers(net, rule, settings.lr)
    generators = (torch.Generator().manual_seed(spec.seed),
                  torch.Generator(device=device).manual_seed(spec.seed))
    header = _header(model_name, spec, settings, rule)
    out_dir = Path(out_dir)

    done = checkpoints.resumable(out_dir, header, settings.epochs)
    if done:
        checkpoints.restore(done[-1], net, optimizers, generators)
        log.info("%s: resuming after epoch %d", model_name, done[-1]["epoch"])
    seconds = {c["epoch"]: math.nan for c in done}
    record = partial(checkpoints.write_run_record, out_dir, header, settings.epochs)
    record(complete=False, seconds=seconds)
    checkpoints.clear_stale(out_dir, header, settings.epochs, keep=len(done))
    rows = [{"epoch": c["epoch"], **c["metrics"], "seconds": math.nan} for c in done]
    evaluate_net = partial(evaluate, net.backbone, task, n_batches=settings.eval_batches,
                           batch_size=settings.batch_size, n_steps=settings.n_steps,
                           width=settings.arena)

    def loss_fn(model, x, y):
        out = model.backbone(*x)
        return out, task.loss(model.backbone, out, y)

    first = len(done)
    with (checkpoints.CheckpointWriter() as writer, logging_redirect_tqdm(),
          tqdm(total=(settings.epochs - max(first, 1) + 1) * settings.steps_per_epoch,
               unit="step", desc=f"train {model_name}", disable=None) as bar):
        for epoch in range(first, settings.epochs + 1):
            start = time.perf_counter()
            if epoch == 0:
                loss = None
            else:
                net.train()
                total, checked = torch.zeros((), device=device), 0.0
                for step in range(settings.steps_per_epoch):
                    traj = _batch(settings, generators[0], device)
                    _, value = rule.step(net, task.inputs(traj), task.targets(traj),
                                         optimizers, generators[1], loss_fn=loss_fn)
                    total += value
                    bar.update(1)
                    last = step + 1 == settings.steps_per_epoch
                    if (step + 1) % CHECK_EVERY == 0 or last:
                        # reading the loss waits for the GPU: every CHECK_EVERY steps, not each
                        running = float(total)
                        if not math.isfinite(running):
                            raise FloatingPointError(
                                f"model {model_name!r}, epoch {epoch}, steps "
                                f"{step + 2 - ((step + 1) % CHECK_EVERY or CHECK_EVERY)}-"
                                f"{step + 1}: the training loss is {running - checked} (lr "
                                f"{settings.lr}); training stopped before this epoch's "
                                f"checkpoint. Lower mec.train.lr")
                        checked = running
                loss = float(total) / settings.steps_per_epoch
            test_loss, error = evaluate_net()
            loss = test_loss if loss is None else loss
            metrics = {"loss": loss, "test_loss": test_loss, "error_cm": 100.0 * error}
            seconds[epoch] = time.perf_counter() - start
            writer.save(checkpoints.epoch_path(out_dir, epoch),
                        checkpoints.capture(net, optimizers, generators, header=header,
                                            epoch=epoch, metrics=metrics, alignment=[]))
            rows.append({"epoch": epoch, **metrics, "seconds": seconds[epoch]})
            record(complete=False, seconds=seconds)
            bar.set_postfix(loss=f"{loss:.3f}", error_cm=f"{100 * error:.1f}")
            log.info("%s epoch %d: loss %.4f test_loss %.4f decoding error %.1f cm (%.1f s)",
                     model_name, epoch, loss, test_loss, 100 * error, seconds[epoch])
    table = pd.DataFrame(rows, columns=list(METRICS))
    write_csv(table, out_dir / "metrics.csv")
    record(complete=True, seconds=seconds)
    return table


def load_path_integrator(checkpoint_path, device="cpu") -> tuple[PathIntegrator, PathIntegrationTask, dict]:
    """(trained network in eval mode, its task, the checkpoint's header) from one checkpoint.

    The network is rebuilt from the header (arch, sizes, rule) and given the stored weights.
    """
    ckpt = checkpoints.read_checkpoint(checkpoint_path)
    if ckpt.get("kind") != "path_integrator":
        raise ValueError(f"{checkpoint_path}: not a path-integrator checkpoint (kind "
                         f"{ckpt.get('kind')!r}); rebuild it with the `train_mec` rule")
    s = dict(ckpt["settings"])
    rule_settings = s.pop("rule_settings", {})
    settings = PathSettings(**s, rule_settings=rule_settings)
    task = build_task(ckpt["objective"], settings)
    rule = make_rule(ckpt["rule"], rule_settings, weight_decay=0.0)
    with torch.device("meta"):
        model = PathIntegrator(ckpt["arch"], task.n_init, task.n_out, n_units=settings.n_units,
                               n_input=settings.n_input)
        model = rule.convert(ObjectiveNet(model)).backbone
    model.load_state_dict(ckpt["state_dict"], assign=True)
    model.requires_grad_(False)
    task.place_cells.to(device)
    header = {k: ckpt[k] for k in ("model_name", "arch", "objective", "rule", "settings", "epoch")}
    return model.to(device).eval(), task, header
