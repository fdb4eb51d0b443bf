"""The edge gatekeeper: Envoy's ext_authz and RateLimitService, and the key-admin API."""
