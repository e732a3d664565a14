"""turnlog projections package."""
