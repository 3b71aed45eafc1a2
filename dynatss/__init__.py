"""dynatss: one-stage object detectors with dynamic label assignment (Dynamic ATSS).

``from dynatss import Detector`` is the Python API (dynatss.api); it is imported on first use, so
``import dynatss`` and the command line stay light.
"""

__version__ = "0.1.0"
__all__ = ["Detector", "Result"]


def __getattr__(name: str):
    if name in __all__:
        import dynatss.api

        return getattr(dynatss.api, name)
    raise AttributeError(f"module 'dynatss' has no attribute {name!r}")
