import hashlib
from functools import cache

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, render
from django.utils.translation import get_language
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_safe

from helpdesk.models import Site

WIDGET_JS = settings.BASE_DIR / "static" / "helpdesk" / "widget.js"


@cache
def _widget_source() -> tuple[bytes, str]:
    body = WIDGET_JS.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@require_safe
def widget_js(request: HttpRequest) -> HttpResponse:
    """The loader every host page includes; public, cacheable, usable from any origin."""
    body, etag = _widget_source() if not settings.DEBUG else (WIDGET_JS.read_bytes(), None)
    if etag and request.headers.get("If-None-Match") == etag:
        return HttpResponse(status=304)
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    response["X-Content-Type-Options"] = "nosniff"
    if etag:
        response["ETag"] = etag
    return response


@require_safe
@xframe_options_exempt
def widget_frame(request: HttpRequest, site_key: str) -> HttpResponse:
    """The chat itself, framed by the host page. CSP confines it to the site's origins."""
    site = get_object_or_404(Site, key=site_key, is_active=True)
    host_origin = request.GET.get("origin", "")
    if not site.allows_origin(host_origin):
        return HttpResponseForbidden(
            "This page's origin is not allowed to embed this chat.", content_type="text/plain"
        )
    context = {
        "site": site,
        "host_origin": host_origin,
        "frame_config": {
            "siteKey": site.key,
            "wsPath": f"/ws/widget/{site.key}/",
            "hostOrigin": host_origin,
            "greeting": site.greeting,
            "language": get_language(),
            "maxFrameBytes": settings.HELPDESK_MAX_FRAME_BYTES,
        },
    }
    response = render(request, "helpdesk/frame.html", context)
    ancestors = " ".join(site.allowed_origins) or "'none'"
    response["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' ws: wss:; frame-ancestors {ancestors}; base-uri 'none'; "
        "form-action 'none'"
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "strict-origin-when-cross-origin"
    return response


@require_safe
def demo_page(request: HttpRequest) -> HttpResponse:
    """A stand-in for a business's page: the first active site with this host allowed."""
    origin = f"{request.scheme}://{request.get_host()}"
    site = next(
        (s for s in Site.objects.filter(is_active=True).order_by("pk") if s.allows_origin(origin)),
        None,
    )
    if site is None:
        raise Http404("No site allows this origin; run `make run` or `manage.py seed_demo`.")
    return render(request, "helpdesk/demo.html", {"site": site, "origin": origin})
