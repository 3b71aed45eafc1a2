"""dynatss: one-stage object detectors with dynamic label assignment (Dynamic ATSS)."""

__version__ = "0.1.0"
