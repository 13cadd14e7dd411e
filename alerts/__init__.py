"""fairwatch: alerts."""
