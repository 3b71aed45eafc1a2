"""Tools around a trained detector: predict on images, export to ONNX, compare runs, write reports.

Each module does one job: ``predict`` runs a checkpoint on image files, ``compare`` plots several
runs' metrics.jsonl side by side (the paper's Figs. 2-4), ``report`` summarises one run, and
``runs`` / ``plots`` / ``images`` / ``files`` are the small pieces they share.
"""
