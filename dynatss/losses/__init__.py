"""Losses of the ATSS head: focal / QFL / VFL classification, GIoU box, quality BCE."""
