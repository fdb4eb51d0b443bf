"""The committed copy of the API document (docs/openapi.yaml) is the one the protos make."""

from edge.openapi import COMMITTED_YAML, DESCRIPTOR_SET, as_yaml, document


def test_the_committed_yaml_document_is_the_generated_one() -> None:
    generated = as_yaml(document(DESCRIPTOR_SET))
    assert COMMITTED_YAML.read_text() == generated, "docs/openapi.yaml is stale: run `make openapi`"
