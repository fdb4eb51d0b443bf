"""The edge: Envoy's config and the OpenAPI document, both generated from the protos, and the gatekeeper."""
