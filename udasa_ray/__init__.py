"""udasa-ray: Uncertainty-Driven Adaptive Self-Alignment on Ray."""

__version__ = "0.1.0"
