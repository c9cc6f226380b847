"""The reports in the admin: the aggregate tables, read-only, and the report pages mounted on
DailySiteStatsAdmin (analytics/urls.py). Managers and superusers only; the Managers group
needs `analytics.view_dailysitestats` for the Analytics section to show in the admin index."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from analytics.models import DailySiteStats, HandoffReasonStats
from analytics.urls import admin_urlpatterns
from analytics.views import is_manager


class ReportTableAdmin(admin.ModelAdmin):
    """Derived data: the aggregation job writes it, nobody edits it by hand."""

    list_select_related = ("site",)
    list_filter = ("site",)
    date_hierarchy = "day"

    # The module shows to whoever holds the view permission (already cached by the auth
    # backend, so every admin page stays at its query count); the tables and the report
    # pages themselves also require a superuser or the Managers group.
    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and is_manager(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DailySiteStats)
class DailySiteStatsAdmin(ReportTableAdmin):
    list_display = (
        "day",
        "site",
        "conversations",
        "customer_messages",
        "autonomous",
        "escalated",
        "handoffs",
        "llm_calls",
        "llm_errors",
        "cost",
    )
    change_list_template = "admin/analytics/dailysitestats/change_list.html"

    def get_urls(self):
        return [*admin_urlpatterns(self.admin_site), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        links = format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            reverse("admin:analytics_dashboard"),
            _("Report dashboard"),
            reverse("admin:analytics_costs"),
            _("Cost per site"),
        )
        return super().changelist_view(request, {**(extra_context or {}), "report_links": links})


@admin.register(HandoffReasonStats)
class HandoffReasonStatsAdmin(ReportTableAdmin):
    list_display = ("day", "site", "rule", "count")
