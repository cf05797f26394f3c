"""Prediction models fitted off the hot path: BG/NBD, MBG/NBD, Gamma-Gamma (docs/prediction.md)."""
