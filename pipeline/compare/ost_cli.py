"""Command line of the object-solution-time stage (workflow/rules/ost.smk): one verb per rule.

`add_ost_verbs` registers them on `python -m pipeline`; the library (`pipeline.compare.ost`,
with scikit-learn's SVM and calibration) is imported only by the verb that runs.
"""

from __future__ import annotations

import json


def _threads(n):
    if n is not None:
        from pipeline.runtime import set_num_threads

        set_num_threads(n)


def _run(args) -> None:
    import pandas as pd

    from pipeline.compare.ost import consistency_table, model_ost, read_reference, virtual_observer
    from pipeline.io import write_csv, write_parquet

    if args.verb == "ost_consistency":
        write_csv(consistency_table([pd.read_parquet(p) for p in args.tables], **args.settings),
                  args.out)
        return
    _threads(args.threads)
    decoder = dict(args.decoder)
    label_level, cap, crossing = decoder.pop("label_level"), decoder.pop("cap"), decoder.pop("crossing")
    if args.verb == "ost_reference":
        reference = args.reference
        table = virtual_observer(args.raw_dir, args.stimuli, area=reference["area"],
                                 label_level=label_level, bin_ms=reference["bin_ms"],
                                 window_ms=reference["window_ms"], cap=cap, crossing=crossing,
                                 **decoder)
        write_csv(table, args.out)
    else:
        from pipeline.runtime import resolve_device

        long, ost = model_ost(args.model_dir, args.stimuli, read_reference(args.reference_csv),
                              model=args.model, label_level=label_level,
                              presentation=args.presentation, cap=cap, crossing=crossing,
                              device=resolve_device(args.device), **decoder)
        write_parquet(long, args.dprime)
        write_parquet(ost, args.ost)


def _plot(args) -> None:
    import pandas as pd

    from pipeline.figures.ost import plot_ost

    plot_ost(pd.read_csv(args.consistency), [pd.read_parquet(p) for p in args.ost], args.out,
             dpi=args.dpi)


def add_ost_verbs(verb) -> None:
    """Register this stage's verbs through `verb(name, func, help)` (as `pipeline.cli` does)."""
    p = verb("ost_reference", _run, "virtual observer on the virtual animals -> reference CSV")
    p.add_argument("raw_dir")
    p.add_argument("stimuli")
    p.add_argument("out")
    p.add_argument("--reference", type=json.loads, required=True, help="the block ost.reference")
    p.add_argument("--decoder", type=json.loads, required=True, help="the block ost.decoder")
    p.add_argument("--threads", type=int, default=None)
    p = verb("ost", _run, "one model's d′ over time and OST per image")
    p.add_argument("model_dir")
    p.add_argument("stimuli")
    p.add_argument("reference_csv")
    p.add_argument("--model", required=True)
    p.add_argument("--dprime", required=True)
    p.add_argument("--ost", required=True)
    p.add_argument("--presentation", type=json.loads, required=True, help="the block ost.presentation")
    p.add_argument("--decoder", type=json.loads, required=True, help="the block ost.decoder")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)
    p = verb("ost_consistency", _run, "OST consistency of every model -> CSV")
    p.add_argument("tables", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--settings", type=json.loads, required=True, help="the block ost.consistency")
    p = verb("plot_ost", _plot, "OST consistency per model with its null interval, and model vs "
             "reference OST per image")
    p.add_argument("consistency", help="results/ost/consistency.csv")
    p.add_argument("ost", nargs="+", help="results/ost/{model}/ost.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--dpi", type=int, default=150)
