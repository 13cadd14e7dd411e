"""fairwatch: intervention."""
