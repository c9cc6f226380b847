"""The HTTP side of the embed: widget.js, the chat frame and its CSP, the demo page."""

import pytest

from tests.conftest import make_site

pytestmark = pytest.mark.django_db


def test_widget_js_is_public_cacheable_javascript(client):
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in response["Cache-Control"]
    assert b"data-site-key" in response.content or b"siteKey" in response.content


def test_the_frame_is_framed_only_by_the_sites_allowed_origins(client, site):
    response = client.get(f"/widget/frame/{site.key}/", {"origin": "https://shop.example"})
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors https://shop.example;" in csp
    assert "script-src 'self'" in csp
    assert "X-Frame-Options" not in response


def test_the_frame_refuses_an_origin_the_site_does_not_allow(client, site):
    response = client.get(f"/widget/frame/{site.key}/", {"origin": "https://evil.example"})
    assert response.status_code == 403
    assert client.get(f"/widget/frame/{site.key}/").status_code == 403


def test_the_frame_is_not_found_for_an_unknown_or_inactive_site(client, site):
    assert (
        client.get("/widget/frame/pk_nope/", {"origin": "https://shop.example"}).status_code == 404
    )
    site.is_active = False
    site.save()
    response = client.get(f"/widget/frame/{site.key}/", {"origin": "https://shop.example"})
    assert response.status_code == 404


def test_the_frame_carries_the_accessible_names_and_its_configuration(client, site):
    response = client.get(f"/widget/frame/{site.key}/", {"origin": "https://shop.example"})
    html = response.content.decode()
    assert 'role="log"' in html
    assert "Message" in html
    assert "Send" in html
    assert f"/ws/widget/{site.key}/" in html
    assert "https://shop.example" in html


def test_a_chinese_browser_gets_the_frame_in_chinese(client, site):
    response = client.get(
        f"/widget/frame/{site.key}/",
        {"origin": "https://shop.example"},
        headers={"accept-language": "zh-CN,zh;q=0.9"},
    )
    html = response.content.decode()
    assert 'lang="zh-hans"' in html
    assert "发送" in html
    assert "消息" in html


def test_the_site_name_is_escaped_in_the_frame(client):
    site = make_site(name="<script>alert(1)</script> Shop")
    response = client.get(f"/widget/frame/{site.key}/", {"origin": "https://shop.example"})
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt; Shop" in response.content


def test_the_demo_page_embeds_the_site_that_allows_its_origin(client):
    make_site(name="Elsewhere", allowed_origins=["https://elsewhere.example"])
    demo = make_site(name="Acme Outfitters", allowed_origins=["http://testserver"])
    response = client.get("/demo/")
    assert response.status_code == 200
    assert f'data-site-key="{demo.key}"' in response.content.decode()


def test_the_demo_page_explains_itself_when_no_site_allows_it(client, site):
    assert client.get("/demo/").status_code == 404
