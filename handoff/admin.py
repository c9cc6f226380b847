"""The handoff back office: the queue and console pages, handoffs, teams, agents, settings,
canned responses, notes, ratings and webhooks.

Handoffs change state only through handoff.services (claim, resolve, return to the bot), which
record the change and tell the queue and the customer; nothing here updates them in bulk.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from handoff import selectors, services
from handoff.models import (
    AgentProfile,
    CannedResponse,
    Handoff,
    HandoffSettings,
    InternalNote,
    Rating,
    SensitiveTopic,
    Team,
    Webhook,
    WebhookDelivery,
)
from handoff.urls import admin_urlpatterns


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system: readable with the view permission, never edited here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SiteScopedMixin:
    """Agents see the rows of their own sites; managers and superusers see every site."""

    site_lookup = "site"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if selectors.is_supervisor(request.user):
            return queryset
        return queryset.filter(**{f"{self.site_lookup}__agents__user": request.user})


def short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Handoffs ------------------------------------------------------------------------------------


@admin.register(Handoff)
class HandoffAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "console_link",
        "site",
        "status",
        "priority",
        "rule",
        "short_reason",
        "team",
        "agent",
        "created_at",
        "claimed_at",
        "resolved_at",
    ]
    list_filter = ["status", "site", "rule", "team"]
    list_select_related = ["site", "team", "agent"]
    search_fields = ["reason", "=conversation__id"]
    date_hierarchy = "created_at"
    actions = ["claim_selected", "resolve_selected", "return_selected_to_bot"]
    fields = [
        "conversation",
        "site",
        "status",
        "priority",
        "rule",
        "reason",
        "team",
        "agent",
        "created_at",
        "claimed_at",
        "first_reply_at",
        "resolved_at",
    ]
    # State changes go through the services (actions, the console); the form only shows them.
    readonly_fields = fields

    def get_urls(self):
        return [*admin_urlpatterns(self.admin_site), *super().get_urls()]

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description=_("console"))
    def console_link(self, handoff: Handoff):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:handoff_console", args=[handoff.conversation_id]),
            _("Open conversation %(id)s") % {"id": handoff.conversation_id},
        )

    @admin.display(description=_("reason"), ordering="reason")
    def short_reason(self, handoff: Handoff) -> str:
        return short(handoff.reason)

    def _each(self, request: HttpRequest, queryset, done: str, act) -> None:
        succeeded, failures = 0, []
        for handoff in queryset:
            try:
                act(handoff)
            except services.HandoffError as error:
                failures.append(f"#{handoff.pk}: {error}")
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, done % {"count": succeeded}, messages.SUCCESS)
        if failures:
            self.message_user(request, _("Not changed: %s") % "; ".join(failures), messages.WARNING)

    @admin.action(description=_("Claim the selected handoffs"), permissions=["change"])
    def claim_selected(self, request, queryset):
        self._each(
            request,
            queryset,
            _("Claimed %(count)d handoff(s)."),
            lambda h: services.claim_handoff(handoff_id=h.pk, agent=request.user),
        )

    @admin.action(description=_("Resolve the selected conversations"), permissions=["change"])
    def resolve_selected(self, request, queryset):
        self._each(
            request,
            queryset,
            _("Resolved %(count)d conversation(s)."),
            lambda h: services.resolve_conversation(
                conversation_id=h.conversation_id, agent=request.user
            ),
        )

    @admin.action(
        description=_("Return the selected conversations to the bot"), permissions=["change"]
    )
    def return_selected_to_bot(self, request, queryset):
        self._each(
            request,
            queryset,
            _("Returned %(count)d conversation(s) to the bot."),
            lambda h: services.return_to_bot(conversation_id=h.conversation_id, agent=request.user),
        )


# Teams, agents and settings -----------------------------------------------------------------


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count"]
    search_fields = ["name"]
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description=_("members"), ordering="member_count")
    def member_count(self, team: Team) -> int:
        return team.member_count


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "display_name", "capacity", "is_online", "last_seen_at"]
    list_filter = ["is_online", "sites"]
    list_select_related = ["user"]
    search_fields = ["user__username", "display_name", "user__email"]
    filter_horizontal = ["sites"]
    autocomplete_fields = ["user"]
    readonly_fields = ["is_online", "last_seen_at"]


@admin.register(HandoffSettings)
class HandoffSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "site",
        "auto_assign",
        "default_team",
        "failure_threshold",
        "sentiment_check",
        "wait_alert_seconds",
        "abandon_after_seconds",
        "timezone",
    ]
    list_select_related = ["site", "default_team"]
    list_filter = ["auto_assign", "sentiment_check"]
    fieldsets = [
        (None, {"fields": ["site"]}),
        (_("Escalation"), {"fields": ["failure_threshold", "sentiment_check", "sentiment_llm"]}),
        (
            _("Queue"),
            {
                "fields": [
                    "default_team",
                    "auto_assign",
                    "wait_alert_seconds",
                    "abandon_after_seconds",
                ]
            },
        ),
        (_("Business hours"), {"fields": ["timezone", "business_hours"]}),
    ]


@admin.register(SensitiveTopic)
class SensitiveTopicAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "team", "priority", "amount_over"]
    list_filter = ["site", "team"]
    list_select_related = ["site", "team"]
    search_fields = ["name", "keywords"]


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ["title", "site", "short_text"]
    list_filter = ["site"]
    list_select_related = ["site"]
    search_fields = ["title", "text"]

    @admin.display(description=_("text"))
    def short_text(self, canned: CannedResponse) -> str:
        return short(canned.text)


# What the system records --------------------------------------------------------------------


@admin.register(InternalNote)
class InternalNoteAdmin(SiteScopedMixin, ReadOnlyAdmin):
    site_lookup = "conversation__site"
    list_display = ["created_at", "conversation", "author", "short_text"]
    list_filter = ["conversation__site"]
    list_select_related = ["conversation", "author"]
    search_fields = ["text"]
    date_hierarchy = "created_at"

    @admin.display(description=_("text"))
    def short_text(self, note: InternalNote) -> str:
        return short(note.text)


@admin.register(Rating)
class RatingAdmin(SiteScopedMixin, ReadOnlyAdmin):
    site_lookup = "conversation__site"
    list_display = ["created_at", "conversation", "score", "short_comment"]
    list_filter = ["score", "conversation__site"]
    list_select_related = ["conversation"]
    search_fields = ["comment"]
    date_hierarchy = "created_at"

    @admin.display(description=_("comment"))
    def short_comment(self, rating: Rating) -> str:
        return short(rating.comment)


# Webhooks ------------------------------------------------------------------------------------


def mask_secret(secret: str) -> str:
    # The last four characters tell two secrets apart without revealing a usable part.
    if len(secret) < 12:
        return "••••••••"
    return "••••••••" + secret[-4:]


class WebhookForm(forms.ModelForm):
    """The secret can be set or replaced but is never sent back to the browser."""

    url = forms.URLField(max_length=500, assume_scheme="https")

    secret = forms.CharField(
        label=_("secret"),
        max_length=100,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Signs each delivery (HMAC-SHA256). It is not shown again; leave empty to keep "
            "the current secret."
        ),
    )

    # The model's JSON list, edited as the known event names; none checked means all events.
    events = forms.MultipleChoiceField(
        label=_("events"),
        choices=Webhook.Event.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None checked: every event."),
    )

    class Meta:
        model = Webhook
        fields = ["site", "url", "secret", "events", "is_active"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret", "")
        if secret:
            return secret
        if self.instance.pk and self.instance.secret:
            return self.instance.secret
        raise forms.ValidationError(_("A new webhook needs a secret."))


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = ["url", "site", "event_list", "is_active", "masked_secret", "created_at"]
    list_filter = ["is_active", "site"]
    list_select_related = ["site"]
    search_fields = ["url"]
    readonly_fields = ["masked_secret", "created_at"]

    def get_fields(self, request, obj=None):
        fields = ["site", "url", "secret", "events", "is_active"]
        return [*fields, "masked_secret", "created_at"] if obj else fields

    @admin.display(description=_("secret"))
    def masked_secret(self, webhook: Webhook) -> str:
        return mask_secret(webhook.secret)

    @admin.display(description=_("events"))
    def event_list(self, webhook: Webhook) -> str:
        return ", ".join(webhook.events) if webhook.events else _("all events")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "webhook",
        "event",
        "status",
        "attempts",
        "response_status",
        "short_error",
        "delivered_at",
    ]
    list_filter = ["status", "event", "webhook__site"]
    list_select_related = ["webhook"]
    search_fields = ["event", "error", "webhook__url"]
    date_hierarchy = "created_at"

    @admin.display(description=_("error"))
    def short_error(self, delivery: WebhookDelivery) -> str:
        return short(delivery.error)
