"""The agent pages, mounted inside the admin by HandoffAdmin.get_urls (handoff/admin.py).

They live in the admin's URL namespace: reverse("admin:handoff_queue") and
reverse("admin:handoff_console", args=[conversation_id]).
"""

from django.contrib import admin
from django.urls import URLPattern, path

from handoff import views


def admin_urlpatterns(admin_site: admin.AdminSite) -> list[URLPattern]:
    """admin_view sends anonymous users to the admin login and refuses non-staff; the views
    then require the Agents or Managers group and scope agents to their sites."""
    return [
        path("queue/", admin_site.admin_view(views.queue_view), name="handoff_queue"),
        path(
            "console/<int:conversation_id>/",
            admin_site.admin_view(views.console_view),
            name="handoff_console",
        ),
    ]
