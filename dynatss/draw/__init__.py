"""Drawing, a leaf of the package: detections on images (PIL) and training curves (matplotlib).

It imports nothing of dynatss and writes no files: it returns images, figures and PNG bytes.
"""
