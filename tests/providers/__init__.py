"""Tests of the sans-IO provider layer (tunegate.providers)."""
