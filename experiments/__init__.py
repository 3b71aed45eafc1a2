"""Experiments outside the package: the ablation grid (ablation.py) and torchvision peers (peers.py)."""
