"""Synthetic benchmark landscapes and a side-by-side runner (imported as ``evogm_bench``)."""
