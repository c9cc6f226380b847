from django.urls import path

from helpdesk.consumers import WidgetConsumer

websocket_urlpatterns = [
    path("ws/widget/<str:site_key>/", WidgetConsumer.as_asgi()),
]
