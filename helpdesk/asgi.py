import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from handoff.routing import websocket_urlpatterns as agent_routes  # noqa: E402
from helpdesk.routing import websocket_urlpatterns as widget_routes  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The widget authenticates with its signed visitor token, agents with the admin
        # session; the widget's origin check is per site, so no global origin validator.
        "websocket": AuthMiddlewareStack(URLRouter([*widget_routes, *agent_routes])),
    }
)

# What start-up built lives as long as the process: out of the collector's generations, a
# full collection walks the requests' objects instead of Django's, the admin's and the
# SDKs' (~140,000 here), which was the p99 of the heavier pages (docs/performance.md).
gc.freeze()
