"""Command line: `snnexport train | evaluate | demo`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .data import DATASETS


def _train(args) -> int:
    from .train import PRESETS, train_to_file

    cfg = PRESETS[args.preset]
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    _, meta = train_to_file(cfg, args.output, preset=args.preset)
    print(f"wrote {args.output} (test accuracy {100 * meta['test_accuracy']:.2f} %)")
    return 0


def _evaluate(args) -> int:
    from .data import load_dataset
    from .evaluate import evaluate
    from .models import load_checkpoint

    model, meta = load_checkpoint(args.model)
    data = args.data or meta.get("data")
    if data not in DATASETS:
        choices = ",".join(DATASETS)
        raise SystemExit(f"{args.model}: say which data to use with --data {{{choices}}}")
    ds = load_dataset(data)
    x, y = ds.x_test, ds.y_test
    if args.samples:
        x, y = x[:args.samples], y[:args.samples]
    result = evaluate(model, x, y)
    print(f"{args.model}: {data} test split ({ds.describe()})")
    print(result.text())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def _demo(args) -> int:
    from .models import CheckpointError

    models = sorted(Path(args.models).glob("*.pt"))
    if not models:
        raise SystemExit(f"{args.models}: no bundled checkpoints (*.pt) found")
    for path in models:
        try:
            _evaluate(argparse.Namespace(model=path, data=None, samples=None, json=None))
        except CheckpointError as e:
            raise SystemExit(str(e)) from e
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .train import PRESETS

    p = argparse.ArgumentParser(prog="snnexport", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a seed model from a preset and save a checkpoint")
    t.add_argument("--preset", required=True, choices=sorted(PRESETS))
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="test accuracy and per-layer firing rates of a checkpoint")
    e.add_argument("model")
    e.add_argument("--data", choices=DATASETS, help="default: the data the model was trained on")
    e.add_argument("--samples", type=int, help="first N test samples only")
    e.add_argument("--json", help="also write the result as JSON here")
    e.set_defaults(func=_evaluate)

    d = sub.add_parser("demo", help="evaluate every bundled model on its held-out test split")
    d.add_argument("--models", default=str(Path("examples") / "models"))
    d.set_defaults(func=_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
