"""workflows over gRPC: requests parsed and checked, use cases called, rows answered in the
marketplace's {"success": true, "data": ...} shape."""

from __future__ import annotations

from typing import Any

from google.api import httpbody_pb2
from hydra.workflows.v1 import (
    billing_pb2,
    billing_pb2_grpc,
    deployments_pb2,
    deployments_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

from services.common.conditional import answer_version, require_match
from services.common.fields import optional_query, parse_input, parse_request, query_choice, timestamp
from services.common.identity import current_user, require_admin, text_metadata
from services.common.paging import descriptor_of
from services.common.servicing import Context, message_from
from services.workflows.billing import Billing
from services.workflows.deployments import PERIOD_DAYS, DeploymentService
from services.workflows.library import LibraryService
from services.workflows.marketplace import SORTS, MarketplaceService
from services.workflows.models import DEPLOYMENT_STATUSES, VISIBILITIES
from services.workflows.paging import Page
from services.workflows.users import UserService
from services.workflows.workflows import WorkflowService

_WORKFLOW_INPUT = descriptor_of(workflows_pb2.WorkflowInput)
_FORK_INPUT = descriptor_of(workflows_pb2.ForkInput)
_RATING_INPUT = descriptor_of(workflows_pb2.RatingInput)
_ENTRY_INPUT = descriptor_of(workflows_pb2.EntryInput)


def workflow_message(row: Any, *, with_manifest: bool = False) -> workflows_pb2.Workflow:
    """A workflow row as the API shows it (built directly: lists build twenty at a time)."""
    message = workflows_pb2.Workflow(
        workflow_id=row.id,
        user_id=str(row.user_id),
        name=row.name,
        description=row.description,
        visibility=row.visibility,
        category=row.category,
        tags=row.tags,
        current_version=row.current_version,
        stats=workflows_pb2.WorkflowStats(
            forks=row.forks,
            subscribers=row.subscribers,
            rating=round(row.rating, 2),
            rating_count=row.rating_count,
        ),
        featured=row.featured_at is not None,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )
    if with_manifest:
        message.manifest.update(row.manifest)
    if row.forked_from_id is not None:
        message.forked_from.CopyFrom(
            workflows_pb2.ForkedFrom(
                workflow_id=row.forked_from_id,
                user_id=str(row.forked_from_user_id),
                version=row.forked_from_version,
            )
        )
    return message


def _workflow(row: Any) -> workflows_pb2.Workflow:
    return workflow_message(row, with_manifest=True)


def _workflow_at(row: Any) -> None:
    """Refuses a write the request's If-Match makes conditional on another version of the workflow."""
    require_match(lambda: _workflow(row))


def _pagination(page: Page) -> workflows_pb2.Pagination:
    return workflows_pb2.Pagination(
        next_cursor=page.next_cursor, has_more=page.has_more, count=len(page.rows)
    )


def _workflow_page(page: Page) -> workflows_pb2.WorkflowPage:
    return workflows_pb2.WorkflowPage(
        success=True,
        data=[workflow_message(row) for row in page.rows],
        pagination=_pagination(page),
    )


def _entry(row: Any) -> workflows_pb2.LibraryEntry:
    return message_from(
        {
            "library_id": row.id,
            "workflow_id": row.workflow_id,
            "user_id": row.user_id,
            "source_type": row.source_type,
            "source_user_id": row.source_user_id,
            "is_active": row.is_active,
            "enabled_adapters": row.enabled_adapters,
            "workflow_name": row.workflow_name,
            "workflow_version": row.workflow_version,
            "auto_update": row.auto_update,
            "added_at": row.added_at,
            "updated_at": row.updated_at,
        },
        workflows_pb2.LibraryEntry,
    )


def _deleted(workflow_id: str) -> workflows_pb2.DeletedReply:
    return workflows_pb2.DeletedReply(
        success=True, data=workflows_pb2.Deleted(workflow_id=workflow_id, deleted=True)
    )


class WorkflowServicer(workflows_pb2_grpc.WorkflowServiceServicer):
    """WorkflowService."""

    def __init__(self, workflows: WorkflowService) -> None:
        self._workflows = workflows

    async def ListWorkflows(
        self, request: workflows_pb2.ListWorkflowsRequest, context: Context
    ) -> workflows_pb2.WorkflowPage:
        visibility = query_choice(optional_query(request, "visibility"), "visibility", VISIBILITIES)
        page = await self._workflows.list_own(
            current_user(),
            visibility=visibility,
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return _workflow_page(page)

    async def CreateWorkflow(
        self, request: workflows_pb2.CreateWorkflowRequest, context: Context
    ) -> workflows_pb2.WorkflowReply:
        fields = parse_input(request.workflow, _WORKFLOW_INPUT, partial=False)
        row = await self._workflows.create(current_user(), fields)
        return workflows_pb2.WorkflowReply(success=True, data=_workflow(row))

    async def GetWorkflow(
        self, request: workflows_pb2.GetWorkflowRequest, context: Context
    ) -> workflows_pb2.WorkflowReply:
        data = _workflow(await self._workflows.get(current_user(), request.workflow_id))
        answer_version(data, read=True)
        return workflows_pb2.WorkflowReply(success=True, data=data)

    async def UpdateWorkflow(
        self, request: workflows_pb2.UpdateWorkflowRequest, context: Context
    ) -> workflows_pb2.WorkflowReply:
        fields = parse_input(request.workflow, _WORKFLOW_INPUT, partial=False)
        row = await self._workflows.replace(current_user(), request.workflow_id, fields, check=_workflow_at)
        data = _workflow(row)
        answer_version(data, read=False)
        return workflows_pb2.WorkflowReply(success=True, data=data)

    async def DeleteWorkflow(
        self, request: workflows_pb2.DeleteWorkflowRequest, context: Context
    ) -> workflows_pb2.DeletedReply:
        return _deleted(await self._workflows.delete(current_user(), request.workflow_id, check=_workflow_at))

    async def ListWorkflowVersions(
        self, request: workflows_pb2.ListWorkflowVersionsRequest, context: Context
    ) -> workflows_pb2.VersionList:
        rows = await self._workflows.versions(current_user(), request.workflow_id)
        return workflows_pb2.VersionList(
            success=True, data=[message_from(row, workflows_pb2.WorkflowVersion) for row in rows]
        )

    async def CreateFork(
        self, request: workflows_pb2.CreateForkRequest, context: Context
    ) -> workflows_pb2.ForkReply:
        fields = parse_input(request.fork, _FORK_INPUT, partial=False)
        row = await self._workflows.fork(current_user(), request.workflow_id, fields.get("name"))
        return workflows_pb2.ForkReply(success=True, data=_workflow(row))

    async def RateWorkflow(
        self, request: workflows_pb2.RateWorkflowRequest, context: Context
    ) -> workflows_pb2.WorkflowReply:
        fields = parse_input(request.rating, _RATING_INPUT, partial=False)
        row = await self._workflows.rate(current_user(), request.workflow_id, int(fields["rating"]))
        return workflows_pb2.WorkflowReply(success=True, data=_workflow(row))


class LibraryServicer(workflows_pb2_grpc.LibraryServiceServicer):
    """LibraryService."""

    def __init__(self, library: LibraryService) -> None:
        self._library = library

    async def ListLibrary(
        self, request: workflows_pb2.ListLibraryRequest, context: Context
    ) -> workflows_pb2.LibraryPage:
        page = await self._library.list(
            current_user(),
            active_only=bool(optional_query(request, "activeOnly")),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return workflows_pb2.LibraryPage(
            success=True, data=[_entry(row) for row in page.rows], pagination=_pagination(page)
        )

    async def CreateLibraryEntry(
        self, request: workflows_pb2.CreateLibraryEntryRequest, context: Context
    ) -> workflows_pb2.LibraryEntryReply:
        fields = parse_input(request.entry, _ENTRY_INPUT, partial=False)
        row = await self._library.add(current_user(), request.workflow_id, fields)
        return workflows_pb2.LibraryEntryReply(success=True, data=_entry(row))

    async def UpdateLibraryEntry(
        self, request: workflows_pb2.UpdateLibraryEntryRequest, context: Context
    ) -> workflows_pb2.LibraryEntryReply:
        fields = parse_input(request.entry, _ENTRY_INPUT, partial=True)
        row = await self._library.update(current_user(), request.workflow_id, fields)
        return workflows_pb2.LibraryEntryReply(success=True, data=_entry(row))

    async def DeleteLibraryEntry(
        self, request: workflows_pb2.DeleteLibraryEntryRequest, context: Context
    ) -> workflows_pb2.DeletedReply:
        return _deleted(await self._library.remove(current_user(), request.workflow_id))


class MarketplaceServicer(workflows_pb2_grpc.MarketplaceServiceServicer):
    """MarketplaceService."""

    def __init__(self, marketplace: MarketplaceService) -> None:
        self._marketplace = marketplace

    async def BrowseMarketplace(
        self, request: workflows_pb2.BrowseMarketplaceRequest, context: Context
    ) -> workflows_pb2.WorkflowPage:
        current_user()
        sort = query_choice(optional_query(request, "sort"), "sort", SORTS) or "popular"
        page = await self._marketplace.browse(
            category=optional_query(request, "category"),
            sort=sort,
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return _workflow_page(page)

    async def SearchMarketplace(
        self, request: workflows_pb2.SearchMarketplaceRequest, context: Context
    ) -> workflows_pb2.WorkflowPage:
        current_user()
        page = await self._marketplace.search(
            optional_query(request, "q"),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return _workflow_page(page)

    async def ListFeatured(
        self, request: workflows_pb2.ListFeaturedRequest, context: Context
    ) -> workflows_pb2.WorkflowPage:
        current_user()
        page = await self._marketplace.featured(
            limit=optional_query(request, "limit"), cursor=optional_query(request, "cursor")
        )
        return _workflow_page(page)


class UserServicer(users_pb2_grpc.UserServiceServicer):
    """UserService."""

    def __init__(self, users: UserService) -> None:
        self._users = users

    async def GetMe(self, request: users_pb2.GetMeRequest, context: Context) -> users_pb2.UserReply:
        user, counts = await self._users.me(current_user())
        view = {
            "user_id": user.id,
            "email": user.email,
            "plan": user.plan,
            **counts,
            "created_at": user.created_at,
            "updated_at": user.updated_at,
        }
        return users_pb2.UserReply(success=True, data=message_from(view, users_pb2.User))

    async def DeleteMe(
        self, request: users_pb2.DeleteMeRequest, context: Context
    ) -> users_pb2.DeletedUserReply:
        deletion = await self._users.delete(current_user())
        view = {
            "user_id": deletion.user_id,
            "deleted": True,
            "deleted_at": deletion.deleted_at,
            "stats": deletion.stats,
        }
        return users_pb2.DeletedUserReply(success=True, data=message_from(view, users_pb2.DeletedUser))


def _admin_user(row: Any) -> users_pb2.AdminUser:
    return users_pb2.AdminUser(user_id=str(row.id), subject=row.subject, email=row.email, plan=row.plan)


class UserAdminServicer(users_pb2_grpc.UserAdminServiceServicer):
    """UserAdminService: the gatekeeper's and the operator's, behind the admin token."""

    def __init__(self, users: UserService, workflows: WorkflowService, admin_token: str | None) -> None:
        self._users = users
        self._workflows = workflows
        self._token = admin_token

    async def ResolveUser(
        self, request: users_pb2.ResolveUserRequest, context: Context
    ) -> users_pb2.AdminUser:
        require_admin(context.invocation_metadata() or (), self._token)
        fields = parse_request(request)
        return _admin_user(await self._users.resolve(fields["subject"], fields.get("email", "")))

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: Context) -> users_pb2.AdminUser:
        require_admin(context.invocation_metadata() or (), self._token)
        return _admin_user(await self._users.create_local(parse_request(request)["email"]))

    async def FindUser(self, request: users_pb2.FindUserRequest, context: Context) -> users_pb2.AdminUser:
        require_admin(context.invocation_metadata() or (), self._token)
        return _admin_user(await self._users.find(parse_request(request)["email"]))

    async def SetPlan(self, request: users_pb2.SetPlanRequest, context: Context) -> users_pb2.AdminUser:
        require_admin(context.invocation_metadata() or (), self._token)
        fields = parse_request(request)
        return _admin_user(await self._users.set_plan(fields["email"], fields["plan"]))

    async def SetFeatured(
        self, request: users_pb2.SetFeaturedRequest, context: Context
    ) -> users_pb2.SetFeaturedResponse:
        require_admin(context.invocation_metadata() or (), self._token)
        fields = parse_request(request)
        await self._workflows.set_featured(fields["workflow_id"], bool(fields.get("featured")))
        return users_pb2.SetFeaturedResponse()


_DEPLOYMENT_INPUT = descriptor_of(deployments_pb2.DeploymentInput)
_ADAPTER_INPUT = descriptor_of(deployments_pb2.AdapterInput)
_KEY_INPUT = descriptor_of(deployments_pb2.KeyInput)


def _deployment(view: dict[str, Any], *, read: bool | None = None) -> deployments_pb2.DeploymentReply:
    """A deployment's answer; with `read` (a GET, or a conditional write), with its version (ETag)."""
    data = message_from(view, deployments_pb2.Deployment)
    if read is not None:
        answer_version(data, read=read)
    return deployments_pb2.DeploymentReply(success=True, data=data)


def _deployment_at(view: dict[str, Any]) -> None:
    """Refuses a write the request's If-Match makes conditional on another version of the deployment."""
    require_match(lambda: message_from(view, deployments_pb2.Deployment))


def _deployment_deleted(
    deployment_id: str, key_id: str | None = None
) -> deployments_pb2.DeletedDeploymentReply:
    return deployments_pb2.DeletedDeploymentReply(
        success=True,
        data=deployments_pb2.DeletedDeployment(deployment_id=deployment_id, key_id=key_id, deleted=True),
    )


class DeploymentServicer(deployments_pb2_grpc.DeploymentServiceServicer):
    """DeploymentService."""

    def __init__(self, deployments: DeploymentService) -> None:
        self._deployments = deployments

    async def ListDeployments(
        self, request: deployments_pb2.ListDeploymentsRequest, context: Context
    ) -> deployments_pb2.DeploymentPage:
        status = query_choice(optional_query(request, "status"), "status", DEPLOYMENT_STATUSES)
        page, views = await self._deployments.list_own(
            current_user(),
            status=status,
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return deployments_pb2.DeploymentPage(
            success=True,
            data=[message_from(view, deployments_pb2.Deployment) for view in views],
            pagination=_pagination(page),
        )

    async def CreateDeployment(
        self, request: deployments_pb2.CreateDeploymentRequest, context: Context
    ) -> deployments_pb2.DeploymentReply:
        fields = parse_input(request.deployment, _DEPLOYMENT_INPUT, partial=False)
        return _deployment(await self._deployments.create(current_user(), fields))

    async def GetDeployment(
        self, request: deployments_pb2.GetDeploymentRequest, context: Context
    ) -> deployments_pb2.DeploymentReply:
        return _deployment(await self._deployments.get(current_user(), request.deployment_id), read=True)

    async def UpdateDeployment(
        self, request: deployments_pb2.UpdateDeploymentRequest, context: Context
    ) -> deployments_pb2.DeploymentReply:
        fields = parse_input(request.deployment, _DEPLOYMENT_INPUT, partial=True)
        view = await self._deployments.update(
            current_user(), request.deployment_id, fields, check=_deployment_at
        )
        return _deployment(view, read=False)

    async def SetDeploymentAdapter(
        self, request: deployments_pb2.SetDeploymentAdapterRequest, context: Context
    ) -> deployments_pb2.AdaptersReply:
        fields = parse_input(request.adapter, _ADAPTER_INPUT, partial=False)
        adapters = await self._deployments.set_adapter(
            current_user(), request.deployment_id, fields["adapter"], fields["enabled"]
        )
        return deployments_pb2.AdaptersReply(
            success=True,
            data=deployments_pb2.DeploymentAdapters(
                deployment_id=request.deployment_id, enabled_adapters=adapters
            ),
        )

    async def DeactivateDeployment(
        self, request: deployments_pb2.DeactivateDeploymentRequest, context: Context
    ) -> deployments_pb2.DeploymentReply:
        return _deployment(
            await self._deployments.set_status(current_user(), request.deployment_id, "inactive")
        )

    async def ActivateDeployment(
        self, request: deployments_pb2.ActivateDeploymentRequest, context: Context
    ) -> deployments_pb2.DeploymentReply:
        return _deployment(
            await self._deployments.set_status(current_user(), request.deployment_id, "active")
        )

    async def DeleteDeployment(
        self, request: deployments_pb2.DeleteDeploymentRequest, context: Context
    ) -> deployments_pb2.DeletedDeploymentReply:
        return _deployment_deleted(
            await self._deployments.delete(current_user(), request.deployment_id, check=_deployment_at)
        )

    async def GetDeploymentUsage(
        self, request: deployments_pb2.GetDeploymentUsageRequest, context: Context
    ) -> deployments_pb2.UsageReply:
        period = query_choice(optional_query(request, "period"), "period", tuple(PERIOD_DAYS)) or "month"
        usage = await self._deployments.usage(current_user(), request.deployment_id, period)
        return deployments_pb2.UsageReply(
            success=True, data=message_from(usage, deployments_pb2.DeploymentUsage)
        )

    async def CreateDeploymentKey(
        self, request: deployments_pb2.CreateDeploymentKeyRequest, context: Context
    ) -> deployments_pb2.DeploymentKeyReply:
        fields = parse_input(request.key, _KEY_INPUT, partial=False)
        key = await self._deployments.create_key(
            current_user(), request.deployment_id, fields.get("name", "")
        )
        return deployments_pb2.DeploymentKeyReply(
            success=True, data=message_from(key, deployments_pb2.DeploymentKey)
        )

    async def DeleteDeploymentKey(
        self, request: deployments_pb2.DeleteDeploymentKeyRequest, context: Context
    ) -> deployments_pb2.DeletedDeploymentReply:
        await self._deployments.delete_key(current_user(), request.deployment_id, request.key_id)
        return _deployment_deleted(request.deployment_id, request.key_id)


_CHECKOUT_INPUT = descriptor_of(billing_pb2.CheckoutInput)
_PORTAL_INPUT = descriptor_of(billing_pb2.PortalInput)


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    """BillingService."""

    def __init__(self, billing: Billing) -> None:
        self._billing = billing

    async def GetSubscription(
        self, request: billing_pb2.GetSubscriptionRequest, context: Context
    ) -> billing_pb2.SubscriptionReply:
        subscription = await self._billing.subscription(current_user())
        return billing_pb2.SubscriptionReply(
            success=True, data=message_from(subscription, billing_pb2.Subscription)
        )

    async def StartCheckout(
        self, request: billing_pb2.StartCheckoutRequest, context: Context
    ) -> billing_pb2.CheckoutReply:
        fields = parse_input(request.checkout, _CHECKOUT_INPUT, partial=False)
        url = await self._billing.checkout(
            current_user(), fields["priceId"], fields["successUrl"], fields["cancelUrl"]
        )
        return billing_pb2.CheckoutReply(success=True, data=billing_pb2.Checkout(checkout_url=url))

    async def OpenPortal(
        self, request: billing_pb2.OpenPortalRequest, context: Context
    ) -> billing_pb2.PortalReply:
        fields = parse_input(request.portal, _PORTAL_INPUT, partial=False)
        url = await self._billing.portal(current_user(), fields["returnUrl"])
        return billing_pb2.PortalReply(success=True, data=billing_pb2.Portal(portal_url=url))

    async def ReceiveStripeEvent(
        self, request: httpbody_pb2.HttpBody, context: Context
    ) -> billing_pb2.WebhookReply:
        signature = text_metadata(context.invocation_metadata()).get("stripe-signature", "")
        applied = await self._billing.receive(request.data, signature)
        return billing_pb2.WebhookReply(
            success=True, data=billing_pb2.WebhookResult(received=True, duplicate=applied.duplicate)
        )
