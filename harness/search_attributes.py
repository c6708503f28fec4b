"""Search attributes that let people filter runs in the Temporal web UI by agent and state.

They must exist in the namespace before a workflow sets them: `farline dev` starts the
dev server with them, and a worker creates them at start where it may. The workflow
sets them only when its worker found them (see `search_attributes_ready`).
"""

from __future__ import annotations

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

logger = structlog.get_logger(__name__)

FARLINE_AGENT = SearchAttributeKey.for_keyword("FarlineAgent")
FARLINE_STATE = SearchAttributeKey.for_keyword("FarlineState")
ALL_KEYS = (FARLINE_AGENT, FARLINE_STATE)

# task queue -> whether the namespace has the attributes (this module is passed through
# the workflow sandbox, so the workflow reads the worker's own answer)
_READY_BY_TASK_QUEUE: dict[str, bool] = {}


def dev_server_args() -> list[str]:
    """`temporal server start-dev` arguments that register the attributes."""
    return [arg for key in ALL_KEYS for arg in ("--search-attribute", f"{key.name}=Keyword")]


async def ensure_search_attributes(client: Client, namespace: str, task_queue: str) -> bool:
    """Create the attributes when missing and allowed; remember for the workflow whether they exist."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = [key.name for key in ALL_KEYS if key.name not in existing.custom_attributes]
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing},
                )
            )
        ready = True
    except RPCError as error:
        logger.warning(
            "search attributes unavailable: runs cannot be filtered by agent and state in the web UI",
            error=str(error),
            hint="temporal operator search-attribute create --name FarlineAgent --type Keyword; "
            "the same for FarlineState",
        )
        ready = False
    _READY_BY_TASK_QUEUE[task_queue] = ready
    return ready


def search_attributes_ready(task_queue: str) -> bool:
    return _READY_BY_TASK_QUEUE.get(task_queue, False)
