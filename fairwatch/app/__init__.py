"""fairwatch: the application — CLI, daemon, demo, configuration, scheduler, audit export."""
