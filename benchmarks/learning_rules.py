"""Cost of one training step under each learning rule, against backprop on the same model.

Same model (ventral_cnn, 32 classes), same batch (128 images of 32 px), same threads, one run:
each rule's `Rule.step` (forward, backward through B, alignment gradients, both optimizer
steps, Hebbian updates) is timed in interleaved rounds so that load on a shared machine hits
all rules alike; the table gives the median ms/step and the median per-round ratio to bp. Targets: ≤ 1.3× bp
for the feedback rules, ≤ 1.5× for hebb.
Usage: `python benchmarks/learning_rules.py [--threads 2] [--rounds 7] [--steps 5]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pipeline.learning import make_rule
from pipeline.models import RULES, build_model
from pipeline.runtime import set_num_threads

TARGETS = {rule: 1.5 if rule == "hebb" else 1.3 for rule in RULES}


def setup(rule_name, n_classes, size):
    """Model, rule, optimizers and noise generator for one rule, from seed 0."""
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    model = rule.convert(build_model("ventral_cnn", n_classes, size)).train()
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
    args = parser.parse_args()
    set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.size, args.size, generator=generator)
    y = torch.randint(0, args.classes, (args.batch_size,), generator=generator)
    runs = {rule: setup(rule, args.classes, args.size) for rule in RULES}
    for model, rule, optimizers, noise in runs.values():     # warm-up: oneDNN kernels, Adam state
        for _ in range(3):
            rule.step(model, x, y, optimizers, noise)

    times = {rule: [] for rule in RULES}
    for _ in range(args.rounds):
        for name, (model, rule, optimizers, noise) in runs.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                rule.step(model, x, y, optimizers, noise)
            times[name].append((time.perf_counter() - start) / args.steps)

    print(f"one training step, ventral_cnn, batch {args.batch_size} × {args.size}px, "
          f"{args.threads} threads; median of {args.rounds} rounds × {args.steps} steps "
          "(ratio: median over rounds of the rule's time over bp's in the same round)")
    print(f"{'rule':<6}{'ms/step':>9}{'× bp':>7}{'target':>8}")
    for name in RULES:
        ms = statistics.median(times[name]) * 1e3
        ratio = statistics.median(t / b for t, b in zip(times[name], times["bp"]))
        flag = "" if ratio <= TARGETS[name] else "  over target"
        print(f"{name:<6}{ms:>9.1f}{ratio:>7.2f}{TARGETS[name]:>8.1f}{flag}")


if __name__ == "__main__":
    main()
