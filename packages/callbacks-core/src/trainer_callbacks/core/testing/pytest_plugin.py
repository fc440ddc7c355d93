"""pytest plugin of trainer-callbacks (placeholder)."""
