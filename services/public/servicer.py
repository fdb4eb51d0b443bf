"""public over gRPC: requests parsed against their input messages, then handed to the use cases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.api import httpbody_pb2
from hydra.public.v1 import (
    analytics_pb2,
    analytics_pb2_grpc,
    forms_pb2,
    forms_pb2_grpc,
    sites_pb2,
    sites_pb2_grpc,
    widget_pb2,
    widget_pb2_grpc,
)

from services.common.fields import optional_query, parse_input, parse_path_id, to_message
from services.common.identity import CLIENT_IP_HEADER, current_identity, text_metadata
from services.common.servicing import Context, ResourceRpcs, message_from, page_response, since
from services.public.service import SITE_NOT_FOUND, Analytics, Forms, SiteService
from services.public.widget import INSTANCE_NOT_FOUND, WidgetChat


def _site_id(request: Any) -> Any:
    return parse_path_id(request.site_id, param="site_id", not_found=SITE_NOT_FOUND)


class SiteServicer(sites_pb2_grpc.SiteServiceServicer):
    """SiteService."""

    def __init__(self, service: SiteService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=sites_pb2.Site,
            input_message=sites_pb2.SiteInput,
            singular="site",
            plural="sites",
            id_field="site_id",
        )

    async def ListSites(
        self, request: sites_pb2.ListSitesRequest, context: Context
    ) -> sites_pb2.ListSitesResponse:
        return await self._rpc.list(request, sites_pb2.ListSitesResponse)

    async def CreateSite(self, request: sites_pb2.CreateSiteRequest, context: Context) -> sites_pb2.Site:
        return await self._rpc.create(request, sites_pb2.Site)

    async def GetSite(self, request: sites_pb2.GetSiteRequest, context: Context) -> sites_pb2.Site:
        return await self._rpc.get(request, sites_pb2.Site)

    async def UpdateSite(self, request: sites_pb2.UpdateSiteRequest, context: Context) -> sites_pb2.Site:
        return await self._rpc.update(request, sites_pb2.Site)

    async def DeleteSite(
        self, request: sites_pb2.DeleteSiteRequest, context: Context
    ) -> sites_pb2.DeleteSiteResponse:
        return await self._rpc.delete(request, sites_pb2.DeleteSiteResponse)


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    """AnalyticsService."""

    _input = analytics_pb2.PageViewInput.DESCRIPTOR

    def __init__(self, analytics: Analytics) -> None:
        self._analytics = analytics

    async def TrackPageView(
        self, request: analytics_pb2.TrackPageViewRequest, context: Context
    ) -> analytics_pb2.TrackPageViewResponse:
        await self._analytics.track(parse_input(request.page_view, self._input, partial=False))
        return analytics_pb2.TrackPageViewResponse()

    async def GetAnalyticsSummary(
        self, request: analytics_pb2.GetAnalyticsSummaryRequest, context: Context
    ) -> analytics_pb2.AnalyticsSummary:
        days = request.days if request.HasField("days") else None
        summary = await self._analytics.summary(current_identity(), _site_id(request), days=days)
        return message_from(summary, analytics_pb2.AnalyticsSummary)


class FormServicer(forms_pb2_grpc.FormServiceServicer):
    """FormService."""

    _input = forms_pb2.FormSubmissionInput.DESCRIPTOR

    def __init__(self, forms: Forms) -> None:
        self._forms = forms

    async def SubmitForm(
        self, request: forms_pb2.SubmitFormRequest, context: Context
    ) -> forms_pb2.SubmitFormResponse:
        submission_id = await self._forms.submit(
            parse_input(request.form_submission, self._input, partial=False)
        )
        return forms_pb2.SubmitFormResponse(status="received", submission_id=str(submission_id))

    async def ListFormSubmissions(
        self, request: forms_pb2.ListFormSubmissionsRequest, context: Context
    ) -> forms_pb2.ListFormSubmissionsResponse:
        page = await self._forms.list(
            current_identity(),
            _site_id(request),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
            since=since(request),
        )
        return page_response(
            forms_pb2.ListFormSubmissionsResponse,
            page,
            plural="submissions",
            message=lambda row: to_message(row, forms_pb2.FormSubmission),
            cursor=self._forms.cursor,
        )


class WidgetServicer(widget_pb2_grpc.WidgetServiceServicer):
    """WidgetService: the chat turn's events, streamed as they are produced."""

    _input = widget_pb2.ChatInput.DESCRIPTOR

    def __init__(self, chat: WidgetChat) -> None:
        self._chat = chat

    async def ListWidgetMessages(
        self, request: widget_pb2.ListWidgetMessagesRequest, context: Context
    ) -> widget_pb2.ListWidgetMessagesResponse:
        instance_id = parse_path_id(request.instance_id, param="instance_id", not_found=INSTANCE_NOT_FOUND)
        messages, next_cursor = await self._chat.messages(
            current_identity(),
            instance_id,
            request.conversation_id,
            cursor=optional_query(request, "cursor"),
            limit=optional_query(request, "limit"),
        )
        return widget_pb2.ListWidgetMessagesResponse(
            messages=[
                widget_pb2.WidgetMessage(id=m.id, role=m.role, content=m.content, created_at=m.created_at)
                for m in messages
            ],
            next_cursor=next_cursor,
        )

    async def Chat(
        self, request: widget_pb2.ChatRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        instance_id = parse_path_id(request.instance_id, param="instance_id", not_found=INSTANCE_NOT_FOUND)
        fields = parse_input(request.chat, self._input, partial=False)
        client_ip = text_metadata(context.invocation_metadata()).get(CLIENT_IP_HEADER, "")
        async for chunk in self._chat.turn(current_identity(), instance_id, fields, client_ip=client_ip):
            yield chunk
