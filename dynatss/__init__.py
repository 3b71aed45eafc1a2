"""dynatss: one-stage object detectors with dynamic label assignment (Dynamic ATSS).

``from dynatss import Detector`` is the Python API (dynatss.api); it is imported on first use, so
``import dynatss`` and the command line stay light. The package's layers: docs/architecture.md.
"""

from dynatss.version import __version__

__all__ = ["Detector", "Result", "__version__"]


def __getattr__(name: str):
    if name in ("Detector", "Result"):
        import dynatss.api

        return getattr(dynatss.api, name)
    raise AttributeError(f"module 'dynatss' has no attribute {name!r}")
