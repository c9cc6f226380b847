"""The report pages, mounted inside the admin by DailySiteStatsAdmin.get_urls (analytics/admin.py).

They live in the admin's URL namespace: reverse("admin:analytics_dashboard"),
"admin:analytics_conversations", "admin:analytics_export" (args=[table]),
"admin:analytics_costs" and "admin:analytics_topic_fix" (args=[topic id], POST).
"""

from django.contrib import admin
from django.urls import URLPattern, path

from analytics import views


def admin_urlpatterns(admin_site: admin.AdminSite) -> list[URLPattern]:
    """admin_view sends anonymous users to the admin login and refuses non-staff; the views
    then require a superuser or the Managers group."""
    return [
        path("dashboard/", admin_site.admin_view(views.dashboard_view), name="analytics_dashboard"),
        path(
            "conversations/",
            admin_site.admin_view(views.conversations_view),
            name="analytics_conversations",
        ),
        path(
            "export/<slug:table>.csv",
            admin_site.admin_view(views.export_view),
            name="analytics_export",
        ),
        path("costs/", admin_site.admin_view(views.costs_view), name="analytics_costs"),
        path(
            "topics/<int:topic_id>/fix/",
            admin_site.admin_view(views.topic_fix_view),
            name="analytics_topic_fix",
        ),
    ]
