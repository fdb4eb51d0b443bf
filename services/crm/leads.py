"""Lead use cases: any subset of contact details; captured leads are found again by email."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from services.common.errors import FieldError, ValidationError
from services.common.fields import utcnow
from services.common.identity import Identity
from services.common.resource import ResourceService
from services.crm import repository
from services.crm.models import DEFAULT_SOURCE

LEAD_FIELDS = ("email", "name", "phone", "company", "source")


class LeadService(ResourceService):
    """Leads: any subset of contact details, at least one of them."""

    resource = "lead"
    not_found = "Lead not found."

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        if not any(fields.get(name) is not None for name in LEAD_FIELDS):
            message = f"At least one of {', '.join(LEAD_FIELDS)} is required."
            raise ValidationError(FieldError(("body",), message, "missing"), message=message)
        return {"source": DEFAULT_SOURCE, **fields}

    async def capture(
        self, caller: Identity, *, email: str, details: dict[str, Any], source: str
    ) -> tuple[Row[Any], bool]:
        """Creates a lead with these details, or finds the tenant's newest lead with this email, which it
        never changes (anonymous input must not overwrite what the tenant has); True when created."""
        now = utcnow()
        async with self.transaction() as conn:
            existing = await repository.find_lead_by_email(conn, tenant_id=caller.tenant_id, email=email)
            if existing is not None:
                return existing, False
            row = await self.table.insert(
                conn,
                values={
                    **details,
                    "email": email,
                    "source": source or DEFAULT_SOURCE,
                    "tenant_id": caller.tenant_id,
                    "id": uuid.uuid4(),
                    "created_at": now,
                    "updated_at": now,
                },
            )
            await self._audit.record(
                conn, caller, resource=self.resource, resource_id=row.id, action="create"
            )
        return row, True
