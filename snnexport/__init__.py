"""snnexport: get a trained PLIF spiking network onto neuromorphic hardware without surprises.

The Python API (snnexport/api.py says more): load, fold, export, verify, estimate_energy,
deploy_to, fit, and from_spikingjelly / from_snntorch / from_norse. They load on first use, so
that `import snnexport` stays light (the Lava runner imports the package in its own
environment).
"""

__version__ = "0.1.0"

_API = {"load": "api", "fold": "api", "export": "api", "verify": "api",
        "estimate_energy": "api", "deploy_to": "api", "Exported": "api", "fit": "api",
        "from_spikingjelly": "check", "from_snntorch": "check", "from_norse": "check",
        "SnnexportError": "errors", "UsageError": "errors"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'snnexport' has no attribute {name!r}")
