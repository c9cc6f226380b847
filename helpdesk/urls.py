from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from helpdesk import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="demo", permanent=False)),
    path("widget.js", views.widget_js, name="widget-js"),
    path("widget/frame/<str:site_key>/", views.widget_frame, name="widget-frame"),
    path("demo/", views.demo_page, name="demo"),
    path("admin/", admin.site.urls),
]
