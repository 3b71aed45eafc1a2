"""Losses: focal / QFL / VFL classification, GIoU box, DFL, quality BCE, and the one criterion that
ties them to the assignment for every head (criterion.py, head_terms.py)."""
