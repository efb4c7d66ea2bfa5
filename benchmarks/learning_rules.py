"""Cost of one training step under each learning rule, against backprop on the same model.

Same model (ventral_cnn, 32 classes), same batch (128 images of 32 px), same threads, one run:
each rule's `Rule.step` (forward, backward through B, alignment gradients, both optimizer
steps, Hebbian updates) is timed in interleaved rounds so that load on a shared machine hits
all rules alike; the table gives the median ms/step and the median per-round ratio to bp. Targets: ≤ 1.3× bp
for the feedback rules, ≤ 1.5× for hebb, ≤ (iterations + 1)× for pc, ≤ 2.5× for burstprop
(a baseline and a teacher pass), ≤ 3× for ddtp (its feedback phase included; the warm-up
steps absorb its Q pretraining); `--arch lenet` times
LeNet instead. Then the NMF fit (rule nmf's batch algorithm, pipeline.learning.nmf.fit_nmf)
on `--nmf-images` random images at the stimuli's size, as the rule sees them ([x⁺, x⁻] of
standardised pixels, 128 components, scikit-learn's default 200 iterations and tol 1e-4);
target under a minute on 2 threads.
Usage: `python benchmarks/learning_rules.py [--arch ventral_cnn] [--threads 2] [--rounds 7]
[--steps 5] [--nmf-images 10000] [--rules bp fa ...]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pipeline.learning import RULE_DEFAULTS, make_rule
from pipeline.learning.nmf import fit_nmf, nonnegative_split
from pipeline.models import RULES, build_model
from pipeline.runtime import set_num_threads

TARGETS = {rule: 1.5 if rule == "hebb" else 1.3 for rule in RULES}
TARGETS["pc"] = RULE_DEFAULTS["pc"]["iterations"] + 1
TARGETS["nmf"] = float("nan")                # its target is the fit time (below)
TARGETS.update({"burstprop": 2.5, "burstprop_kp": 2.5,   # two top-down passes
                "ddtp": 3.0})                            # feedback phase included


def setup(rule_name, n_classes, size, arch="ventral_cnn"):
    """Model, rule, optimizers and noise generator for one rule, from seed 0."""
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    model = rule.convert(build_model(arch, n_classes, size)).train()
    optimizers = rule.optimizers(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    return model, rule, optimizers, torch.Generator().manual_seed(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per rule per round")
    parser.add_argument("--arch", default="ventral_cnn")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES,
                        help="rules to time (bp is always timed, as the baseline)")
    parser.add_argument("--nmf-images", type=int, default=10000, help="0 skips the NMF fit")
    parser.add_argument("--nmf-losses", nargs="+", default=["frobenius", "kullback-leibler"],
                        choices=["frobenius", "kullback-leibler"], help="objectives of the NMF fit")
    args = parser.parse_args()
    set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.size, args.size, generator=generator)
    y = torch.randint(0, args.classes, (args.batch_size,), generator=generator)
    rules = ["bp", *(r for r in args.rules if r != "bp")]
    runs = {rule: setup(rule, args.classes, args.size, args.arch) for rule in rules}
    for model, rule, optimizers, noise in runs.values():     # warm-up: oneDNN kernels, Adam state
        for _ in range(3):
            rule.step(model, x, y, optimizers, noise)

    times = {rule: [] for rule in rules}
    for _ in range(args.rounds):
        for name, (model, rule, optimizers, noise) in runs.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                rule.step(model, x, y, optimizers, noise)
            times[name].append((time.perf_counter() - start) / args.steps)

    print(f"one training step, {args.arch}, batch {args.batch_size} × {args.size}px, "
          f"{args.threads} threads; median of {args.rounds} rounds × {args.steps} steps "
          "(ratio: median over rounds of the rule's time over bp's in the same round)")
    print(f"{'rule':<13}{'ms/step':>9}{'× bp':>7}{'target':>8}")
    for name in rules:
        ms = statistics.median(times[name]) * 1e3
        ratio = statistics.median(t / b for t, b in zip(times[name], times["bp"]))
        flag = "  over target" if ratio > TARGETS[name] else ""
        print(f"{name:<13}{ms:>9.1f}{ratio:>7.2f}{TARGETS[name]:>8.1f}{flag}")
    if args.nmf_images:
        nmf_fit(args.nmf_images, args.size, args.threads, args.nmf_losses)


def nmf_fit(n_images, size, threads, losses, n_components=128):
    """Seconds of `fit_nmf` (Euclidean and KL) on n_images standardised random images."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n_images, 3, size, size, generator=generator)
    X = nonnegative_split(images, size)
    scale = (float(X.mean()) / n_components) ** 0.5             # scikit-learn's random init
    W = scale * torch.randn(n_images, n_components, generator=generator).abs()
    H = scale * torch.randn(n_components, X.shape[1], generator=generator).abs()
    for beta_loss in losses:
        start = time.perf_counter()
        _, _, losses = fit_nmf(X, W.clone(), H.clone(), beta_loss=beta_loss)
        seconds = time.perf_counter() - start
        flag = "" if seconds < 60 else "  over target"
        print(f"nmf fit {beta_loss:<17} {n_images} images × {X.shape[1]} values, "
              f"{n_components} components, {threads} threads: {seconds:.1f} s "
              f"({10 * (len(losses) - 1)} iterations, objective {losses[0]:.4g} → "
              f"{losses[-1]:.4g}); "
              f"target < 60 s{flag}")


if __name__ == "__main__":
    main()
