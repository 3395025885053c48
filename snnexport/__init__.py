"""snnexport: get a trained PLIF spiking network onto neuromorphic hardware without surprises."""

__version__ = "0.1.0"
