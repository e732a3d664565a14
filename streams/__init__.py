"""turnlog streams package."""
