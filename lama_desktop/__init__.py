"""Lama Desktop: erase objects from photos with LaMa inpainting across every machine you have."""

__version__ = "0.1.0"
