"""edge-prune."""
