"""fairwatch: streaming."""
