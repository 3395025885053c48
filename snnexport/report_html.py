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


def spike_plot(checks: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {t: r for t, r in checks.items() if "layers" in r}
    if not ok:
        return None
    fig, axes = plt.subplots(1, len(ok), figsize=(3.2 * len(ok), 3), squeeze=False)
    for ax, (t, rep) in zip(axes[0], ok.items(), strict=True):
        names = [layer["name"].split(".")[-1] for layer in rep["layers"]]
        x = np.arange(len(names))
        ax.bar(x - 0.2, [layer["spikes_reference"] for layer in rep["layers"]], 0.4,
               label="reference")
        ax.bar(x + 0.2, [layer["spikes_target"] for layer in rep["layers"]], 0.4,
               label="target")
        ax.set_xticks(x, names, rotation=45, fontsize=7)
        ax.set_title(f"{t} ({rep['samples']} samples)", fontsize=9)
        ax.set_yscale("log")
    axes[0][0].set_ylabel("spikes")
    axes[0][0].legend(fontsize=7)
    return _png(fig)


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
            ax.set_title(f"{name.split('.')[-1]}: tau {tau[0]:.3f}", fontsize=9)
        else:
            ax.hist(tau, bins=30)
            ax.set_title(f"{name.split('.')[-1]}: {tau.size} tau, mean {tau.mean():.3f}",
                         fontsize=9)
            ax.set_xlabel("tau (steps)", fontsize=8)
    return _png(fig)


def write_report(path: Path, loaded, folded, summary: dict, checks: dict, findings: list,
                 out: Path) -> Path:
    on_emulator = [b.name for b in backends.backends()
                   if b.reference == "emulator" and b.name in checks]
    against = (f" ({', '.join(on_emulator)} against snnexport's bit-accurate emulator of the "
               "quantised network)" if on_emulator else "")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<title>snnexport deployment report</title><style>{CSS}</style></head><body>",
             "<h1>snnexport deployment report</h1>",
             f"<p>Model <code>{_e(loaded.path)}</code>. Every target below ran on real test "
             f"inputs against the trained model{_e(against)}.</p>"]
    verdict = summary["trusted"]
    parts.append(f"<p>Verdict: <span class='{'ok' if verdict else 'bad'}'>"
                 f"{'every deployment can be trusted' if verdict else 'see the rows marked'}"
                 "</span> (exact, or mismatches fully explained by threshold ties or by "
                 "quantisation; and every layer spiked in the reference: a layer that never "
                 "did proves nothing).</p>")
    rows = []
    for r in summary["rows"]:
        if "error" in r:
            rows.append([_e(r["target"]), "<span class='bad'>failed</span>", "", "", "", "",
                         _e(r["error"][:300]), "", f"{r['energy_pj'] / 1e6:.3f}"])
            continue
        exact = ("<span class='ok'>yes</span>" if r["exact"] else
                 f"<span class='{'bad' if r['unexplained'] else 'warning'}'>no</span>")
        if r.get("silent_layers"):
            exact += (f" <span class='warning'>but layers "
                      f"{_e(', '.join(r['silent_layers']))} never spiked: their parity proves "
                      "nothing</span>")
        rows.append([_e(r["target"]), exact,
                     f"{100 * r['accuracy_reference']:.2f} % / {100 * r['accuracy_target']:.2f} %",
                     f"{100 * r['agreement']:.2f} %", f"{r['samples']}",
                     f"{r['mismatches']} of {r['spikes_reference']}",
                     _e(r["first_divergence"] or "none"), _e(r["cause"] or ""),
                     f"{r['energy_pj'] / 1e6:.3f} ({_e(r['profile'])})"])
    parts += ["<h2>Summary</h2>",
              _table(["target", "exact?", "accuracy reference / target", "agreement",
                      "samples", "mismatching spikes", "first divergence", "cause",
                      "energy per inference, uJ (profile)"], rows, cls="summary")]
    parts.append("<h2>Deployment linter</h2>")
    if findings:
        parts.append("<ul>" + "".join(
            f"<li class='{_e(f['severity'])}'><b>{_e(f['severity'])}</b> [{_e(f['rule'])}] "
            f"{_e(f['layer'])} ({_e(', '.join(f['targets']))}): {_e(f['message'])}. "
            f"<i>Fix:</i> {_e(f['fix'])}</li>" for f in findings) + "</ul>")
    else:
        parts.append("<p>Nothing found that a target would not take.</p>")
    img = spike_plot(checks)
    if img:
        parts += ["<h2>Spikes per layer, reference vs target</h2>", f"<img src='{img}'>"]
    img = tau_plot(folded)
    if img:
        parts += ["<h2>Membrane time constants</h2>", f"<img src='{img}'>"]
    imp_rows = []
    for name, node in folded.ordered():
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
                  if b.fixed_point and checks.get(b.name, {}).get("quantisation")), None)
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
