"""hydractl: the one operator CLI: run the stack, migrate, tenants, keys, sites, dead letters."""
