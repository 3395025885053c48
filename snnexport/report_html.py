"""The deployment report: one self-contained HTML file (inline CSS, images as data: URIs, no
script, nothing fetched), written atomically."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from . import backends
from .files import atomic_write
from .ir import nodes as ir

CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
.ok { color: #176317; font-weight: bold; } .bad { color: #a01818; font-weight: bold; }
.warning { color: #8a5a00; } .error { color: #a01818; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
#spikes td { position: relative; min-width: 6em; }
#spikes .bar { position: absolute; left: 0; top: 15%; height: 70%; background: #9cc3e6; }
#spikes .badbar { background: #e6a19c; }
#spikes span { position: relative; }
.banner { border: 2px solid #a01818; background: #fbeaea; padding: 0.6em 1em; }
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_png(path: Path) -> str | None:
    return ("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            if path.exists() else None)


def _e(x) -> str:
    return html.escape(str(x))


def _table(headers, rows, cls=None, left=1) -> str:
    head = "".join(f"<th class='l'>{_e(h)}</th>" if i < left else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return (f"<table{' id=' + repr(cls) if cls else ''}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def spike_table(checks: dict) -> str | None:
    """Spikes per layer and per sample, the reference and every target, as one table with a
    bar in each cell (readable at any window width: no figure of one panel per target). Rows
    are the layers under the user's module paths; a target's cell is marked where any of its
    spikes differ from the reference's on its samples."""
    ok = {t: r for t, r in checks.items() if r.get("layers") and r.get("samples")}
    if not ok:
        return None
    names: list[str] = []
    for rep in ok.values():
        names += [la["name"] for la in rep["layers"] if la["name"] not in names]
    most = max(ok.values(), key=lambda r: r["samples"])
    ref = {la["name"]: la["spikes_reference"] / most["samples"] for la in most["layers"]}
    per = {t: {la["name"]: la for la in rep["layers"]} for t, rep in ok.items()}

    def cell(value: float, top: float, bad: bool = False) -> str:
        width = 0 if top <= 0 else max(1, round(100 * value / top)) if value > 0 else 0
        return (f"<div class='bar{' badbar' if bad else ''}' style='width:{width}%'></div>"
                f"<span class='{'bad' if bad else 'num'}'>{value:,.1f}</span>")

    rows = []
    for name in names:
        values = [ref.get(name, 0.0)] + [
            per[t][name]["spikes_target"] / ok[t]["samples"] for t in ok if name in per[t]]
        top = max(values)
        row = [f"<code>{_e(name)}</code>", cell(ref.get(name, 0.0), top)]
        for t in ok:
            la = per[t].get(name)
            row.append("" if la is None else
                       cell(la["spikes_target"] / ok[t]["samples"], top, la["mismatches"] > 0))
        rows.append(row)
    headers = ["layer (module path)", f"the model ({most['samples']} samples)"] + [
        f"{t} ({ok[t]['samples']})" for t in ok]
    return _table(headers, rows, cls="spikes")


def tau_plot(folded) -> str | None:
    import matplotlib.pyplot as plt

    layers = [(n, node) for n, node in folded.ordered() if isinstance(node, ir.Neuron)]
    if not layers:
        return None
    fig, axes = plt.subplots(1, len(layers), figsize=(3 * len(layers), 2.6), squeeze=False)
    for ax, (name, node) in zip(axes[0], layers, strict=True):
        tau = 1.0 / np.maximum(1.0 - np.asarray(node.decay, np.float64).ravel(), 1e-12)
        if len(np.unique(tau)) == 1:
            ax.bar([0], [tau[0]])
            ax.set_xticks([0], ["tau"])
            ax.set_title(f"{name}: tau {tau[0]:.3f}", fontsize=9)
        else:
            ax.hist(tau, bins=30)
            ax.set_title(f"{name}: {tau.size} tau, mean {tau.mean():.3f}", fontsize=9)
            ax.set_xlabel("tau (steps)", fontsize=8)
    return _png(fig)


def write_report(path: Path, loaded, folded, summary: dict, checks: dict, findings: list,
                 out: Path) -> Path:
    on_emulator = [b.name for b in backends.backends()
                   if b.reference == "emulator" and b.name in checks]
    against = (f" ({', '.join(on_emulator)} against snnexport's bit-accurate emulator of the "
               "quantised network)" if on_emulator else "")
    kind = getattr(loaded, "kind", "") or "a model"
    if getattr(loaded, "fixed", None) is not None:  # a netx file: no float model behind it
        reference = ("snnexport's bit-accurate emulator of that file (no float model stands "
                     "behind a netx file: 'fixed' is the fast emulator against the plain one, "
                     "the other targets against the emulator)")
        against = ""
    elif loaded.reference is None:  # an IR / NIR file: no trained model to run
        reference = (f"the float64 simulation of that {kind.split(' ', 1)[-1]}, not a trained "
                     "model: the file is all there is to compare with, so the checks prove "
                     "the targets equal to the file, not to the network it was made from")
    elif getattr(loaded, "torch_model", None) is not None:
        reference = "the trained model itself (its torch forward pass)"
    else:
        reference = f"{kind.split(' ', 1)[-1]}'s own forward pass (the trained model)"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<title>snnexport deployment report</title><style>{CSS}</style></head><body>",
             "<h1>snnexport deployment report</h1>",
             f"<p>Model <code>{_e(loaded.path)}</code> ({_e(kind)}). Every target below ran on "
             f"real test inputs against {_e(reference)}{_e(against)}.</p>"]
    mismatch = summary.get("data_mismatch")
    if mismatch:
        why = mismatch["message"].split(": ", 1)[-1]
        parts.append(f"<p class='banner'><span class='bad'>The data do not match the model:"
                     f"</span> {_e(why)}.</p>")
    few = summary.get("too_few_samples", [])
    refused = summary.get("refused", [])
    n_trust = summary.get("trust_samples", 20)
    verdict = summary["trusted"]
    if not verdict:
        words, cls = "see the rows marked", "bad"
    elif few or mismatch:
        caveats = ([f"{', '.join(few)} on fewer than {n_trust} samples: too few to trust"]
                   if few else []) + (["on data that do not match the model (above)"]
                                      if mismatch else [])
        words, cls = f"exact, but {'; and '.join(caveats)}", "warning"
    else:
        words, cls = "every deployment can be trusted", "ok"
    parts.append(f"<p>Verdict: <span class='{cls}'>{_e(words)}</span> (exact, or mismatches "
                 "fully explained by threshold ties or by quantisation; every layer spiked in "
                 "the reference: a layer that never did proves nothing; and on at least "
                 f"{n_trust} samples: exact on n samples bounds the share of samples that "
                 "diverge only below 3/n)."
                 + (f" {_e(', '.join(refused))} cannot take this model (not a failure: see "
                    "the row)." if refused else "") + "</p>")
    rows = []
    for r in summary["rows"]:
        energy = f"{r['energy_pj'] / 1e6:.3f} ({_e(r['profile'])})"
        if "refused" in r:
            rows.append([_e(r["target"]), f"<span class='warning'>cannot take this model: "
                         f"{_e(r['refused'][:300])}</span>", "0", "", "", "", "", "", energy])
            continue
        if "error" in r:
            rows.append([_e(r["target"]), f"<span class='bad'>failed: "
                         f"{_e(r['error'][:300])}</span>", "0", "", "", "", "", "", energy])
            continue
        if r["exact"] and r.get("too_few_samples"):
            exact = (f"<span class='warning'>exact on {r['samples']} samples &mdash; too few "
                     "to trust</span>")
        elif r["exact"]:
            exact = f"<span class='ok'>exact</span> on {r['samples']} samples"
        else:
            exact = (f"<span class='{'bad' if r['unexplained'] else 'warning'}'>not exact"
                     "</span>" + ("" if r["unexplained"] else
                                  f" (explained: {_e(r['mismatch_cause'])})"))
        if r.get("silent_layers"):
            exact += (f" <span class='warning'>but layers "
                      f"{_e(', '.join(r['silent_layers']))} never spiked: their parity proves "
                      "nothing</span>")
        rows.append([_e(r["target"]), exact, f"{r['samples']}",
                     f"{100 * r['accuracy_reference']:.2f} % / {100 * r['accuracy_target']:.2f} %",
                     f"{100 * r['agreement']:.2f} %",
                     f"{r['mismatches']} of {r['spikes_reference']}",
                     _e(r["first_divergence"] or "none"), _e(r["cause"] or ""), energy])
    parts += ["<h2>Summary</h2>",
              _table(["target", "verdict", "samples seen", "accuracy reference / target",
                      "agreement", "mismatching spikes", "first divergence", "cause",
                      "energy per inference, uJ (its profile)"], rows, cls="summary",
                     left=2)]
    parts.append("<h2>Deployment linter</h2>")
    if findings:
        parts.append("<ul>" + "".join(
            f"<li class='{_e(f['severity'])}'><b>{_e(f['severity'])}</b> [{_e(f['rule'])}] "
            f"{_e(f['layer'])} ({_e(', '.join(f['targets']))}): {_e(f['message'])}. "
            f"<i>Fix:</i> {_e(f['fix'])}</li>" for f in findings) + "</ul>")
    else:
        parts.append("<p>Nothing found that a target would not take.</p>")
    table = spike_table(checks)
    if table:
        parts += ["<h2>Spikes per layer and sample, reference vs target</h2>",
                  "<p>Spikes per sample over all time steps; each target on the samples it "
                  "saw (in brackets); red: some of that layer's spikes differ from the "
                  "reference's.</p>", table]
    img = tau_plot(folded) if folded is not None else None  # (a netx file: no float model)
    if img:
        parts += ["<h2>Membrane time constants</h2>", f"<img src='{img}'>"]
    imp_rows = []
    for name, node in folded.ordered() if folded is not None else ():
        if isinstance(node, ir.Neuron):
            v0 = np.asarray(node.v_init, np.float64)
            if np.any(v0 != 0):
                imp_rows.append([_e(name), f"{v0.size}", f"{v0.mean():.4f}", f"{v0.std():.4f}",
                                 f"{v0.min():.4f}", f"{v0.max():.4f}"])
    parts.append("<h2>Initial membrane potential (IMP)</h2>")
    parts.append(_table(["layer", "values", "mean", "std", "min", "max"], imp_rows)
                 if imp_rows else "<p>No learned initial membrane potential: every layer "
                 "starts at 0.</p>")
    # the fixed-point targets' quantisation table (the same net for all: the first one's)
    quant = next((checks[b.name]["quantisation"] for b in backends.backends()
                  if b.fixed_point and checks.get(b.name, {}).get("quantisation")
                  and "text" not in checks[b.name]["quantisation"][0]), None)
    worded = {}  # a chain that words its own rows (Xylo): its first target's rows
    for b in backends.backends():
        rows = checks.get(b.name, {}).get("quantisation") or []
        if rows and "text" in rows[0]:
            worded.setdefault(b.chain.name, rows)
    for name, rows in worded.items():
        parts.append(f"<h2>Quantisation ({_e(name)})</h2><ul>" + "".join(
            f"<li>{_e(r['text'])}</li>" for r in rows) + "</ul>")
    if quant:
        parts.append("<h2>Quantisation (Loihi 2 fixed point)</h2>")
        parts.append(_table(
            ["layer", "kind", "scale", "limited by", "vth_mant", "weight bits",
             "weight rms error (% of max)", "threshold error", "decays", "clipped v",
             "wrapped u", "clipped bias"],
            [[_e(q["layer"]), _e(q["kind"]), f"{q['scale']:.5g}", _e(q.get("limited_by", "")),
              f"{q['vth_mant']}" + (f" (min {q['vth_mant_min']})" if q.get("vth_mant_min")
                                    else ""),
              _e(q["weight_bits"]) + (f" (min {q['weight_bits_min']})"
                                      if q.get("weight_bits_min") else ""),
              f"{100 * q['weight_rms_error_relative']:.3f}" if "weight_rms_error_relative"
              in q else "host float", f"{q['threshold_error']:.2e}", f"{q['decays']}",
              f"{q.get('v_clipped', 0)}", f"{q.get('u_wrapped', 0)}",
              f"{q.get('bias_clipped', 0)}"] for q in quant]))
    if summary.get("fit"):  # snnexport fit on every chip description (fit.json)
        parts.append("<h2>Will it fit the chip</h2>")
        parts.append(_table(["chip", "verdict (fit.json: every layer's cores)", "cores",
                             "chips"],
                            [[_e(chip), _e(f["verdict"]), _e(f.get("cores_used") or "-"),
                              _e(f.get("chips_needed") if f.get("cores_used") else "-")]
                             for chip, f in summary["fit"].items()], left=2))
    parts.append("<h2>Energy</h2>")
    e_rows = []
    for profile in ("cmos45", "loihi1", "loihi2", "truenorth"):
        p = out / f"energy_{profile}.json"
        if p.exists():
            e = json.loads(p.read_text())
            e_rows.append([_e(profile), _e(e["accounting"]), f"{e['total'] / 1e6:.3f}",
                           f"{e['theoretical'] / 1e6:.3f}", f"{e['ann']['energy'] / 1e6:.3f}"])
    parts.append(_table(["profile", "accounting", "estimate, uJ per inference",
                         "theoretical (seed style), uJ", "same net as ANN, uJ"], e_rows))
    for profile in ("loihi2", "cmos45"):
        img = _file_png(out / f"energy_{profile}.png")
        if img:
            parts.append(f"<h3>Per-layer energy, {profile}</h3><img src='{img}'>")
    exports = ", ".join(f"<code>model{_e(b.exports.suffix)}</code>" for b in backends.backends()
                        if b.exports is not None and (out / f"model{b.exports.suffix}").exists())
    parts.append("<p>Files in this folder: the IR (<code>model.snnir</code>), exports "
                 f"({exports}), one JSON per step.</p></body></html>")
    text = "\n".join(parts)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
