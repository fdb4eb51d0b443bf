"""The edge gatekeeper: Envoy's ext_authz and RateLimitService, key admin, key context, live-key status."""
