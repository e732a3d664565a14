"""turnlog turnlog package."""
