"""The workflow marketplace: users, workflows, libraries, the marketplace."""
