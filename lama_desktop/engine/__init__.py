"""Inference engine: models, image I/O, HD strategies (no Qt, no ZeroMQ)."""
