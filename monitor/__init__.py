"""fairwatch: monitor."""
