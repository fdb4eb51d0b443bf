"""instances' tables as tenant-scoped query sets. Never commits: the service owns the transaction."""

from services.common.crud import TenantTable
from services.instances import models

instances = TenantTable(models.instances)
channels = TenantTable(
    models.channels, order_by=[models.channels.c.created_at.asc(), models.channels.c.id.asc()]
)
