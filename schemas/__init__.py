"""turnlog schemas package."""
