"""turnlog agents package."""
