"""Keras backend (placeholder until the Keras backend issue lands)."""
