"""Inference stage service: feature matrix -> class probabilities."""
