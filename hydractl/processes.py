"""Every gRPC process of the stack, as its composition root declares it, in start order."""

from __future__ import annotations

from typing import Any

from edge.gatekeeper.server import PROCESS as GATEKEEPER
from services.common.process import Process
from services.crm.server import PROCESS as CRM
from services.instances.server import PROCESS as INSTANCES
from services.public.server import PROCESS as PUBLIC
from services.tickets.server import PROCESS as TICKETS
from services.workflows.server import PROCESS as WORKFLOWS

ALL: tuple[Process[Any], ...] = (GATEKEEPER, CRM, TICKETS, INSTANCES, PUBLIC, WORKFLOWS)
