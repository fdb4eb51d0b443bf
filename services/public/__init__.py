"""Public website surface: sites, analytics, form submissions and widget chat."""
