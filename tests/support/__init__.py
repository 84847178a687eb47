"""Helpers shared by the test suite and the capture-regeneration script."""
