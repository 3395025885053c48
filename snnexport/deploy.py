"""`snnexport deploy`: fold and quantise once, write every backend's artifact (NIR, ONNX, netx,
...), run every target's parity check and the energy estimate, fit every chip
description (fit.json: placement, chips, the first limit broken), lint, and write
OUTDIR/report.html with the JSON of every step. The targets are the registered backends
(snnexport.backends); each gets the same folded graph / fixed-point net.

Resumable: every step writes its result atomically (a file exists only when complete), and
the manifest records each finished step's files with their SHA-256, taken after they were
written (`done`); a resumed deploy skips a step only when every one of its files is there with
the recorded hash (and a check's artifact is the one it checked), and redoes every step whose
files are missing, changed or unreadable. Every check runs the artifact file written here, read
back from disk (Backend.run_file): the file a user takes away is the file that was checked. A
manifest whose settings (model hash, settings, snnexport version, a hash of its code and
target profiles) differ stops the run instead of mixing two deployments in one folder; one
that cannot be read, or a lock path that is no file, is refused in one line. The whole run
holds an exclusive lock on the folder (flock on OUTDIR/.snnexport.lock): a second deploy into
it is refused at once; holding it, a deploy removes the temporary files a killed one left. A
folder that is not empty and has no manifest is not a deployment folder and is refused; an
output folder that holds the input model is refused before anything is written
(files.check_output).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path

from . import __version__, backends
from .energy.estimate import TARGETS_DIR, available_profiles
from .errors import SnnexportError
from .files import TMP_SUFFIX, atomic_write, check_output

LOCK = ".snnexport.lock"  # held (flock) by the deploy writing into the folder


class DeployError(SnnexportError, RuntimeError):
    """A deployment that cannot start: unknown targets, no data, a folder of another one."""


def _write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, default=float) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def parse_targets(spec: str) -> list[str]:
    names = backends.available()
    if spec == "all":
        return list(names)
    targets = [t.strip() for t in str(spec).split(",") if t.strip()]
    bad = [t for t in targets if t not in names]
    if bad:
        raise DeployError(f"unknown target(s) {bad}; available: all or a comma list of "
                          f"{', '.join(names)}")
    if not targets:
        raise DeployError(f"--targets {spec!r} names no target: a deployment checks at least "
                          f"one; give all or a comma list of {', '.join(names)}")
    return list(dict.fromkeys(targets))  # each once, in the order given


def _sha256(path: Path) -> str | None:
    """The file's SHA-256, None when it is missing or no regular file or cannot be read."""
    h = hashlib.sha256()
    if not os.path.isfile(path):  # a FIFO would block the open
        return None
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


class _Ledger:
    """The manifest's `done`: file name -> {"sha256": its hash when written, "inputs": {file:
    hash} it was made from (a check: the artifact it ran)}. Written with the manifest after
    every finished step."""

    def __init__(self, out: Path, mpath: Path, manifest: dict):
        self.out, self.mpath, self.manifest = out, mpath, manifest
        done = manifest.get("done")
        self.done = done if isinstance(done, dict) else {}
        manifest["done"] = self.done

    def valid(self, *names: str, inputs: tuple = ()) -> bool:
        """Every file is there with the hash recorded, made from `inputs` as they are now."""
        want = {i: self.sha(i) for i in inputs}
        for name in names:
            rec = self.done.get(name)
            if not isinstance(rec, dict) or rec.get("inputs", {}) != want or \
                    _sha256(self.out / name) != rec.get("sha256"):
                return False
        return True

    def sha(self, name: str) -> str | None:
        rec = self.done.get(name)
        return rec.get("sha256") if isinstance(rec, dict) else None

    def forget(self, *names: str) -> None:
        """Before a step is redone: its files and their records go."""
        for name in names:
            self.done.pop(name, None)
            path = self.out / name
            if path.is_dir() and not path.is_symlink():
                raise DeployError(f"{path} is a folder where deploy writes its {name}; remove "
                                  "it, or deploy into a new folder")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def record(self, *names: str, inputs: tuple = ()) -> None:
        made = {i: self.sha(i) for i in inputs}
        for name in names:
            self.done[name] = {"sha256": _sha256(self.out / name), "inputs": made}
        _write_json(self.mpath, self.manifest)


def _read_manifest(mpath: Path, outdir: str) -> dict | None:
    """The manifest of a deployment begun in this folder, None when there is none; one that
    cannot be read (damaged, not JSON, a folder) is refused in one line."""
    if not os.path.lexists(mpath):
        return None
    try:
        old = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:  # JSON, UTF-8, a folder, no permission
        old = exc
    if not isinstance(old, dict):
        why = type(old).__name__ if isinstance(old, Exception) else f"JSON {type(old).__name__}"
        raise DeployError(f"{outdir}: its manifest {mpath} cannot be read ({why}): the "
                          "folder's deployment cannot be resumed; remove the folder or deploy "
                          "into a new one")
    return old


def code_fingerprint() -> str:
    """sha256 over the package's source and the target profiles: a resumed folder must not
    keep results that older code (or other energy constants) produced."""
    root = Path(__file__).resolve().parent
    files = sorted(root.rglob("*.py")) + sorted(TARGETS_DIR.rglob("*.toml"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def deploy(model, outdir: str, data: str | None = None, targets: str = "all",
           samples: int = 200, lava_samples: int = 4, calib_samples: int | None = None,
           decays: int | None = None, progress: bool = True,
           time_steps: int | None = None, workers: int = 1,
           ray_address: str | None = None, expect_accuracy: float | None = None,
           weights=None, input_shape=None, readout: str | None = None) -> dict:
    """Runs every step not already done; returns the summary (also in summary.json).
    `model`: a model file, a LoadedModel, a torch module or "pkg.mod:fn" with its `weights`,
    `input_shape` and `time_steps` (snnexport.check.load_source). `time_steps`: T for a model
    file that does not say it (NIR). `expect_accuracy` (a fraction): the reference's accuracy
    on the data below it flags the data as not matching the model (summary `data_mismatch`),
    as does one far below the accuracy a checkpoint recorded (check.data_verdict).
    `workers` N > 1 (or `ray_address`): every check and the energy counts run in N shards on
    Ray (snnexport.distributed), with the same results; not part of the manifest, so a folder
    begun with one number of workers resumes with another."""
    from .check import load_source
    from .distributed import wanted

    wanted(workers, ray_address)  # a bad --workers / --ray-address: refused before any work
    parse_targets(targets)  # unknown or no targets: refused before the folder is made
    if expect_accuracy is not None and not 0 <= expect_accuracy <= 1:
        raise DeployError(f"expect_accuracy {expect_accuracy!r}: give a fraction from 0 to 1 "
                          "(--expect-accuracy: a percentage)")
    if isinstance(model, str | os.PathLike):  # a file: refused as the output before reading
        check_output(outdir, {"input model": model, "input weights": weights},
                     command="deploy", folder=True)
    loaded = load_source(model, weights, input_shape, time_steps, readout)
    check_output(outdir, {f"input {i}": f for i, f in enumerate(loaded.files)},
                 command="deploy", folder=True)
    from .data.user import data_for

    data_for(data, loaded)  # data a model file may not name: refused before the folder is made
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out, outdir):
        return _deploy(loaded, out, outdir, data, targets, samples, lava_samples,
                       calib_samples, decays, progress, time_steps, workers, ray_address,
                       expect_accuracy)


@contextlib.contextmanager
def _locked(out: Path, outdir: str):
    """Hold an exclusive flock on OUTDIR/.snnexport.lock for the run, non-blocking: another
    deploy holding it is refused at once. A folder that is not empty (the lock aside) and has
    no manifest.json is not a deployment folder: refused, and a lock file made here removed."""
    lock = out / LOCK
    try:
        try:
            fd, made = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, made = os.open(lock, os.O_RDWR | os.O_NOFOLLOW), False
    except OSError as exc:  # a folder, a dangling or looping link, no permission
        raise DeployError(f"{outdir}: its lock {lock} cannot be opened as a file "
                          f"({exc.strerror or type(exc).__name__}); remove it or deploy into "
                          "another folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeployError(f"{outdir}: another snnexport deploy is writing into this folder "
                              f"now (it holds {lock}); wait for it to end or deploy into "
                              f"another folder") from None
        others = sorted(p.name for p in out.iterdir() if p.name != LOCK)
        stale = [n for n in others if n.startswith(".") and n.endswith(TMP_SUFFIX)]
        if stale and (os.path.lexists(out / "manifest.json") or stale == others):
            for name in stale:  # a killed deploy's temporary files: nobody else writes here
                with contextlib.suppress(OSError):
                    (out / name).unlink()
            others = [n for n in others if n not in stale]
        if others and not os.path.lexists(out / "manifest.json"):
            if made:
                lock.unlink()
            raise DeployError(f"{outdir}: not a deployment folder (it holds {len(others)} "
                              f"file(s), e.g. {others[0]}, and no manifest.json); deploy into "
                              f"an empty or new folder")
        yield
    finally:
        os.close(fd)  # releases the lock


def _deploy(loaded, out: Path, outdir: str, data, targets, samples, lava_samples,
            calib_samples, decays, progress, time_steps=None, workers=1, ray_address=None,
            expect_accuracy=None) -> dict:
    from tqdm import tqdm

    from .check import CALIB_SAMPLES, ReferenceRuns, check, refuse_calibration
    from .data import load_dataset
    from .data.user import data_for
    from .lint import as_dicts, from_reports, lint

    model = loaded.path
    data = data_for(data, loaded)  # a file names only a built-in set: never code
    if data is None:
        raise DeployError(f"{model}: say which data to deploy on with --data")
    chosen = parse_targets(targets)
    if loaded.fixed is not None:  # a fixed-point net with no float model behind it (netx)
        refuse_calibration(loaded, calib_samples)
        return _deploy_fixed(loaded, out, outdir, data, chosen, samples, lava_samples,
                             progress, workers, ray_address)
    if calib_samples is None:
        calib_samples = CALIB_SAMPLES
    _check_settings(loaded, model, data, samples, lava_samples, calib_samples, decays)
    manifest = {"model": str(model), "sha256": loaded.sha256(), "data": data,
                "samples": samples, "lava_samples": lava_samples,
                "calib_samples": calib_samples, "decays": decays, "time_steps": time_steps,
                "expect_accuracy": expect_accuracy,
                "snnexport": __version__, "code": code_fingerprint()}
    mpath = out / "manifest.json"
    old = _read_manifest(mpath, outdir)
    if old is not None:
        settings = {k: v for k, v in old.items() if k != "done"}
        if settings != manifest:
            differ = sorted(k for k in manifest.keys() | settings.keys()
                            if settings.get(k) != manifest.get(k))
            raise DeployError(f"{outdir}: holds a deployment with other settings, another "
                              f"model or other snnexport code (differs in {differ}; "
                              f"{mpath}); use a new folder or remove it")
        manifest["done"] = old.get("done")
    ledger = _Ledger(out, mpath, manifest)
    _write_json(mpath, manifest)

    # fold once (and quantise once): every export, check and the energy counts take these
    lowered = backends.Lowered(loaded.graph)
    folded = lowered.folded
    ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
    calib_x = ds.x_train[:calib_samples]
    counts = []  # the operation counts, made on the first energy step not done yet
    # each reference (the model, the emulator of the fixed-point net) runs once on its samples:
    # every check that compares with it takes the batches kept here (dropped after the checks)
    reference_runs = ReferenceRuns()
    steps = ["lint", "fold", "fit", "exports"] + [f"check:{t}" for t in chosen] + \
        [f"energy:{p}" for p in available_profiles()] + ["report"]
    bar = tqdm(steps, desc="deploy", unit="step", disable=not progress, file=sys.stderr)
    done = []
    for step in bar:
        bar.set_postfix_str(step)
        if not step.startswith("check:"):
            reference_runs.clear()
        if step == "lint":
            if not ledger.valid("lint.json"):
                ledger.forget("lint.json")
                _write_json(out / "lint.json", as_dicts(lint(folded, decays_grouped=decays)))
                ledger.record("lint.json")
        elif step == "fold":
            from .ir import save_ir

            if not ledger.valid("model.snnir"):
                ledger.forget("model.snnir")
                save_ir(folded, out / "model.snnir")
                ledger.record("model.snnir")
        elif step == "fit":  # every chip description: placement, chips, the limit broken
            if not ledger.valid("fit.json"):
                ledger.forget("fit.json")
                _write_json(out / "fit.json", _fit_all(folded, decays))
                ledger.record("fit.json")
        elif step == "exports":
            _exports(lowered, calib_x, out, decays, ledger)
        elif step.startswith("check:"):
            target = step.split(":", 1)[1]
            name = f"check_{target}.json"
            backend = backends.get(target)
            artifact = _artifact(backend, ledger)
            made_from = (artifact,) if artifact else ()
            if ledger.valid(name, inputs=made_from):
                done.append(step)
                continue
            ledger.forget(name)
            n = lava_samples if backend.slow else samples
            try:
                report = check(loaded, target, data, n, calib_samples=calib_samples,
                               decays=decays if backend.fixed_point else None,
                               lowered=lowered, workers=workers, ray_address=ray_address,
                               reference_runs=reference_runs,
                               artifact=out / artifact if artifact else None)
                result = report.to_dict()
                if artifact:
                    result["artifact"] = {"file": artifact, "sha256": ledger.sha(artifact)}
            except refusals() as exc:  # the target cannot express this model: not a failure
                result = {"target": target, "refused": str(exc),
                          "refusal": type(exc).__name__}
            except Exception as exc:  # a real failure (a crash, a runner that died): go on
                result = {"target": target, "error": f"{type(exc).__name__}: {exc}"}
            _write_json(out / name, result)
            ledger.record(name, inputs=made_from)
        elif step.startswith("energy:"):
            profile = step.split(":", 1)[1]
            names = (f"energy_{profile}.json", f"energy_{profile}.png")
            if not ledger.valid(*names):
                from .energy import plot

                ledger.forget(*names)
                rep = _energy(folded, ds.x_test[:samples], profile, counts, workers,
                              ray_address)
                plot(rep, out / names[1])
                _write_json(out / names[0], rep.to_dict())
                ledger.record(*names)
        elif step == "report":  # always made anew from the verified files
            ledger.forget("summary.json", "report.html")
            checks = {t: json.loads((out / f"check_{t}.json").read_text()) for t in chosen}
            findings = json.loads((out / "lint.json").read_text()) + as_dicts(
                from_reports(checks))
            summary = summarise(chosen, checks, out)
            summary["data_mismatch"] = _data_verdict(loaded, checks, data, expect_accuracy)
            summary["fit"] = {chip: {k: r.get(k) for k in ("fits", "verdict", "cores_used",
                                                           "chips_needed", "estimate")}
                              for chip, r in json.loads((out / "fit.json").read_text()).items()}
            _write_json(out / "summary.json", summary)
            from .report_html import write_report

            write_report(out / "report.html", loaded, folded, summary, checks, findings, out)
            ledger.record("summary.json", "report.html")
    bar.close()
    return json.loads((out / "summary.json").read_text())


def _deploy_fixed(loaded, out: Path, outdir: str, data: str, chosen: list[str], samples: int,
                  lava_samples: int, progress: bool, workers: int, ray_address) -> dict:
    """deploy of a model that is a fixed-point net with no float model behind it (a netx file:
    LoadedModel.fixed) on its own inputs (--data FILE.npz, quant/netx_inputs.py): its
    fixed-point IR file (model.fixed.npz, as 'fixed' exports it) and the netx file itself
    (model.net), every chosen target checked as `check` checks it (against the emulator; the
    float targets and other chips refused in the summary, in one line each: nothing float to
    run), its fit on every chip description (hw.fit.fit_fixed), the energy on every profile
    from the emulator's counts, and the report. No lint or fold step: they read the float
    graph."""
    import shutil

    from tqdm import tqdm

    from .check import check
    from .energy import energy_of
    from .errors import UsageError
    from .lint import as_dicts, from_reports
    from .quant import save_fixed

    net = loaded.fixed
    manifest = {"model": str(loaded.path), "sha256": loaded.sha256(), "data": data,
                "samples": samples, "lava_samples": lava_samples, "netx": {
                    "num_layers": net.num_layers, "reset_interval": net.reset_interval,
                    "reset_offset": net.reset_offset},
                "snnexport": __version__, "code": code_fingerprint()}
    mpath = out / "manifest.json"
    old = _read_manifest(mpath, outdir)
    if old is not None:
        if {k: v for k, v in old.items() if k != "done"} != manifest:
            raise DeployError(f"{outdir}: holds a deployment with other settings, another "
                              f"model or other snnexport code ({mpath}); use a new folder or "
                              "remove it")
        manifest["done"] = old.get("done")
    ledger = _Ledger(out, mpath, manifest)
    _write_json(mpath, manifest)
    steps = ["fit", "exports"] + [f"check:{t}" for t in chosen] + \
        [f"energy:{p}" for p in available_profiles()] + ["report"]
    bar = tqdm(steps, desc="deploy", unit="step", disable=not progress, file=sys.stderr)
    for step in bar:
        bar.set_postfix_str(step)
        if step == "fit":  # every chip description: its blocks placed as they are
            if not ledger.valid("fit.json"):
                from .hw.fit import chips_available, fit_fixed

                ledger.forget("fit.json")
                _write_json(out / "fit.json", {chip: fit_fixed(net, chip).to_dict()
                                               for chip in chips_available()})
                ledger.record("fit.json")
        elif step == "exports":
            if not ledger.valid("model.fixed.npz", "model.net"):
                ledger.forget("model.fixed.npz", "model.net")
                save_fixed(net, out / "model.fixed.npz")
                shutil.copyfile(loaded.path, out / "model.net")
                ledger.record("model.fixed.npz", "model.net")
        elif step.startswith("check:"):
            target = step.split(":", 1)[1]
            name = f"check_{target}.json"
            if ledger.valid(name):
                continue
            ledger.forget(name)
            n = lava_samples if backends.get(target).slow else samples
            try:
                result = check(loaded, target, data, n, workers=workers,
                               ray_address=ray_address).to_dict()
            except (UsageError, *refusals()) as exc:  # a target with nothing to run here
                result = {"target": target, "refused": str(exc),
                          "refusal": type(exc).__name__}
            except Exception as exc:  # a real failure (a crash, a runner that died): go on
                result = {"target": target, "error": f"{type(exc).__name__}: {exc}"}
            _write_json(out / name, result)
            ledger.record(name)
        elif step.startswith("energy:"):
            profile = step.split(":", 1)[1]
            names = (f"energy_{profile}.json", f"energy_{profile}.png")
            if not ledger.valid(*names):
                from .energy import plot

                ledger.forget(*names)
                rep = energy_of(loaded, profile, data, samples)
                plot(rep, out / names[1])
                _write_json(out / names[0], rep.to_dict())
                ledger.record(*names)
        elif step == "report":
            ledger.forget("summary.json", "report.html")
            checks = {t: json.loads((out / f"check_{t}.json").read_text()) for t in chosen}
            summary = summarise(chosen, checks, out)
            summary["data_mismatch"] = None  # no float model's accuracy to judge them by
            summary["fit"] = {chip: {k: r.get(k) for k in ("fits", "verdict", "cores_used",
                                                           "chips_needed", "estimate")}
                              for chip, r in json.loads((out / "fit.json").read_text()).items()}
            _write_json(out / "summary.json", summary)
            from .report_html import write_report

            write_report(out / "report.html", loaded, None, summary, checks,
                         as_dicts(from_reports(checks)), out)
            ledger.record("summary.json", "report.html")
    bar.close()
    return json.loads((out / "summary.json").read_text())


def _fit_all(folded, decays) -> dict:
    """fit on every chip description (snnexport.hw.fit): chip -> the report's dict, or
    {"verdict": "error: ..."} where one could not be made (the deployment goes on)."""
    from .hw.fit import chips_available, fit_graph

    out = {}
    for chip in chips_available():
        try:
            out[chip] = fit_graph(folded, chip, decays).to_dict()
        except Exception as exc:  # a fit that fails is reported, not fatal
            out[chip] = {"fits": False, "verdict": f"error: {type(exc).__name__}: {exc}"}
    return out


def _check_settings(loaded, model, data, samples, lava_samples, calib_samples, decays) -> None:
    """Counts below 1, more samples than the data set holds and data of another shape than the
    model's are refused before anything is written (UsageError, one line)."""
    from .data import load_dataset
    from .sim.limits import count, ensure_fits, first, fit_input, run_bytes, time_steps_of

    if decays is not None:
        count("--decays", decays)
    ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
    own = (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
    fit_input(loaded.graph, ds.x_test, model, f"the {data} test split",
              f"deploy with --data {own}, the data it was trained on" if own and own != data
              else "")
    first(ds.x_test, samples, "--samples", f"the {data} test split")
    first(ds.x_test, lava_samples, "--lava-samples", f"the {data} test split")
    calib = first(ds.x_train, calib_samples, "--calib-samples", f"the {data} training split")
    t = time_steps_of(loaded.graph, calib)  # the calibration runs all of them at once
    ensure_fits(run_bytes(loaded.graph, len(calib), t), f"{model}: calibrating the fixed point "
                f"on {len(calib)} samples over T={t}", "give fewer --calib-samples")


def _artifact(backend, ledger: _Ledger) -> str | None:
    """The artifact file (its name in OUTDIR) the backend's check runs: its export (or that of
    the backend it names, `artifact_of`), when written and recorded (not when the export
    failed) and the backend runs files."""
    if backend.run_file is None:
        return None
    if backend.artifact_of == backends.FOLDED:
        name = "model.snnir"
    else:
        source = backends.get(backend.artifact_of) if backend.artifact_of else backend
        if source.exports is None:
            return None
        name = f"model{source.exports.suffix}"
    return name if ledger.sha(name) is not None else None


def _exports(lowered, calib_x, out: Path, decays, ledger: _Ledger) -> None:
    """Every registered backend's artifact, OUTDIR/model<suffix>, from the one folded graph or
    fixed-point net; one a backend cannot write is recorded in <target>_error.json. One whose
    file (or error) is there with its recorded hash is kept."""
    import warnings

    for backend in backends.backends():
        if backend.exports is None:
            continue
        name, error = f"model{backend.exports.suffix}", f"{backend.name}_error.json"
        if ledger.valid(name) or ledger.valid(error):
            continue
        ledger.forget(name, error)
        try:  # a quantisation out of bounds (QuantError) is this backend's error, not all's
            inp = lowered.input_for(backend, calib_x, decays)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the linter reports what NIR metadata carries
                backend.exports.write(inp, out / name)
            ledger.record(name)
        except ValueError as exc:
            _write_json(out / error, {"error": str(exc)})
            ledger.record(error)


def _energy(folded, x, profile: str, counts: list, workers: int = 1,
            ray_address: str | None = None):
    """The energy report of `folded` on `x` priced on `profile`; the operation counts are the
    same for every profile: counted once (in shards on Ray with workers > 1), kept in
    `counts`."""
    from .energy import ann_macs, counts_of, estimate, load_profile

    if not counts:
        counts.append(counts_of(folded, x, workers, ray_address))
    t = int(folded.metadata.get("time_steps") or x.shape[1])
    return estimate(counts[0], load_profile(profile), sum(m for _, m in ann_macs(folded)),
                    len(x), t)


def _data_verdict(loaded, checks: dict, data: str, expect) -> dict | None:
    """Whether the data match the model (check.data_verdict), from the reference's accuracy
    on the most samples any target was checked on."""
    from .check import data_verdict

    ran = [(t, r) for t, r in checks.items() if r.get("samples")]
    if not ran:
        return None
    # the most samples; among those, one compared with the model (not with the emulator)
    _, best = max(ran, key=lambda tr: (tr[1]["samples"],
                                       backends.get(tr[0]).reference == "model"))
    return data_verdict(loaded, best["accuracy"]["reference"], best["samples"],
                        f"the {data} test split", expect)


# what a target raises when it cannot express this model (a residual merge netx does not lower,
# a quantisation out of Loihi 2's bounds, a layer an exporter has no form for): "cannot take
# this model", not a failure of the deployment; anything else raised while checking is one
def refusals() -> tuple[type, ...]:
    from .exporters.netx_export import NetxExportError
    from .exporters.nir_export import NIRExportError
    from .exporters.onnx_common import ONNXExportError
    from .hw.cores import HardwareLoweringError

    return HardwareLoweringError, NIRExportError, ONNXExportError, NetxExportError


# exact on fewer samples than this says little: no divergence in n samples bounds the share of
# samples that diverge only below 3/n (the rule of three, 95 %): 15 % at 20 samples
TRUST_SAMPLES = 20


def summarise(targets, checks: dict, out: Path) -> dict:
    rows = []
    for t in targets:
        rep = checks[t]
        profile = backends.get(t).profile
        energy = json.loads((out / f"energy_{profile}.json").read_text())
        row = {"target": t, "profile": profile, "energy_pj": energy["total"]}
        if "refused" in rep:
            row.update(exact=False, refused=rep["refused"])
        elif "error" in rep:
            row.update(exact=False, error=rep["error"])
        else:
            fd = rep.get("first_divergence")
            row.update(
                exact=rep["exact"], samples=rep["samples"],
                too_few_samples=rep["samples"] < TRUST_SAMPLES,
                accuracy_reference=rep["accuracy"]["reference"],
                accuracy_target=rep["accuracy"]["target"], agreement=rep["agreement"],
                mismatches=sum(layer["mismatches"] for layer in rep["layers"]),
                spikes_reference=sum(layer["spikes_reference"] for layer in rep["layers"]),
                mismatch_cause=rep.get("mismatch_cause", "unexplained"),
                unexplained=rep["unexplained"],
                # layers that never spiked in the reference: their parity proves nothing
                silent_layers=rep.get("silent_layers", []),
                first_divergence=None if fd is None else
                f"{fd['layer']} t={fd['time_step']} sample {fd['sample']} neuron "
                f"{fd['neuron']}", cause=None if fd is None else fd["cause"])
            if rep.get("failed_shards"):  # a distributed run's shards that failed every try
                row["failed_shards"] = rep["failed_shards"]
        rows.append(row)
    ran = [r for r in rows if "refused" not in r]  # a target that cannot take it: not a fail
    return {"rows": rows, "trusted": all(r.get("unexplained", 1) == 0 and "error" not in r
                                         and not r.get("silent_layers")
                                         and not r.get("failed_shards") for r in ran),
            "trust_samples": TRUST_SAMPLES,
            "too_few_samples": [r["target"] for r in ran if r.get("too_few_samples")],
            "refused": [r["target"] for r in rows if "refused" in r]}
