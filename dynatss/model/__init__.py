"""The detector: backbone, FPN neck, shared ATSS head, anchors, box coding, post-processing, export.

Entry points: ``build.build_detector``, ``postprocess.postprocess``, ``export.export_onnx``.
"""
