"""hydractl: the one operator CLI (start the stack, migrate, tenants, keys)."""
