"""tickets' table as a tenant-scoped query set. Never commits: the service owns the transaction."""

from services.common.crud import TenantTable
from services.tickets import models

tickets = TenantTable(models.tickets)
