"""Inference: device choice, model loading (family registry), the async engine and its frame path."""
