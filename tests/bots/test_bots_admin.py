"""The bot engine's admin: article import and export, curated answers, the LLM call log,
summaries, and the bot settings inline on the Site admin."""

import json

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from bots import knowledge_io
from bots.admin import BotConfigInline
from bots.models import Article, BotConfig, ConversationSummary, CuratedAnswer, LLMCall
from helpdesk.models import Conversation, Message, Site, Visitor
from helpdesk.services import append_message
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:bots_article_import"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def upload(name: str, content: str | bytes) -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


# Article import ---------------------------------------------------------------------------


def test_the_article_changelist_links_to_the_import_page(admin_client, site):
    response = admin_client.get(reverse("admin:bots_article_changelist"))
    assert response.status_code == 200
    assert f'href="{reverse(IMPORT_URL)}"' in response.content.decode()


def test_the_import_page_shows_the_form(admin_client, site):
    response = admin_client.get(reverse(IMPORT_URL))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'enctype="multipart/form-data"' in page
    assert "csrfmiddlewaretoken" in page
    assert 'class="breadcrumbs"' in page
    assert site.name in page


def test_a_csv_uploaded_through_the_admin_is_imported(admin_client, site):
    other = make_site(name="Other")
    returns = Article.objects.get(site=site, title="Returns policy")
    Article.objects.create(site=other, title="Old", body="Old body.")
    own = Article.objects.get(site=other)
    csv_text = (
        "\ufeffid,title,body,tags,language,url,published\n"
        f"{own.pk},Old,New body.,,en,,true\n"
        f'{returns.pk},Returns,"Line one\nLine two",returns;refund,en,,yes\n'
        ",运费,标准运费五元。,运费,zh-hans,https://shop.example/fees,false\n"
    )

    response = admin_client.post(
        reverse(IMPORT_URL), {"site": other.pk, "file": upload("kb.csv", csv_text)}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:bots_article_changelist")
    assert "Imported 2 new and updated 1 articles." in messages_of(response)
    own.refresh_from_db()
    assert own.body == "New body."
    # The id of another site's article creates a copy in this site and leaves the original.
    copy = Article.objects.get(site=other, title="Returns")
    assert copy.body == "Line one\nLine two"
    assert copy.tags == ["returns", "refund"]
    assert Article.objects.get(pk=returns.pk).title == "Returns policy"
    fees = Article.objects.get(site=other, title="运费")
    assert (fees.language, fees.is_published) == ("zh-hans", False)


def test_the_format_is_guessed_from_a_jsonl_file_name(admin_client):
    site = make_site()
    line = json.dumps({"title": "Gift cards", "body": "They never expire.", "tags": ["gift"]})

    response = admin_client.post(
        reverse(IMPORT_URL), {"site": site.pk, "file": upload("kb.jsonl", line)}
    )

    assert response.status_code == 302
    assert Article.objects.get(site=site).tags == ["gift"]


def test_a_file_name_without_a_known_extension_needs_a_format(admin_client):
    site = make_site()
    response = admin_client.post(
        reverse(IMPORT_URL), {"site": site.pk, "file": upload("kb.txt", "title,body\nA,B\n")}
    )
    assert response.status_code == 200
    assert "Cannot tell the format from the file name" in response.content.decode()
    assert not Article.objects.filter(site=site).exists()

    response = admin_client.post(
        reverse(IMPORT_URL),
        {"site": site.pk, "file": upload("kb.txt", "title,body\nA,B\n"), "format": "csv"},
    )
    assert response.status_code == 302
    assert Article.objects.filter(site=site).count() == 1


def test_an_import_with_errors_shows_them_all_escaped_and_saves_nothing(admin_client, site):
    csv_text = (
        "title,body,language,published\n"
        "Fine,Fine body,en,true\n"
        ",No title,en,true\n"
        "Bad language,Body,<b>xx</b>,true\n"
        "Bad flag,Body,en,perhaps\n"
    )

    response = admin_client.post(
        reverse(IMPORT_URL), {"site": site.pk, "file": upload("kb.csv", csv_text)}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Row 3: title is required." in page
    assert "Row 4: language must be one of en, zh-hans" in page
    assert "Row 5: published must be true/false" in page
    assert "&lt;b&gt;xx&lt;/b&gt;" in page
    assert "<b>xx</b>" not in page
    assert any("Nothing was imported" in m for m in messages_of(response))
    assert Article.objects.filter(site=site).count() == 3


def test_an_oversized_upload_is_refused(admin_client, monkeypatch):
    site = make_site()
    monkeypatch.setattr("bots.admin.MAX_BYTES", 100)
    monkeypatch.setattr(knowledge_io, "MAX_BYTES", 100)
    csv_text = "title,body\n" + "".join(f"T{i},{'x' * 40}\n" for i in range(5))

    response = admin_client.post(
        reverse(IMPORT_URL), {"site": site.pk, "file": upload("kb.csv", csv_text)}
    )

    assert response.status_code == 200
    assert "Split it into smaller files" in response.content.decode()
    assert not Article.objects.filter(site=site).exists()


@pytest.fixture
def viewer(django_user_model):
    """A staff member who may only look at articles."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_article"))
    return user


def test_importing_needs_the_add_and_change_permissions(client, viewer, site):
    client.force_login(viewer)
    assert client.get(reverse("admin:bots_article_changelist")).status_code == 200
    assert (
        reverse(IMPORT_URL)
        not in client.get(reverse("admin:bots_article_changelist")).content.decode()
    )
    assert client.get(reverse(IMPORT_URL)).status_code == 403
    response = client.post(
        reverse(IMPORT_URL), {"site": site.pk, "file": upload("kb.csv", "title,body\nA,B\n")}
    )
    assert response.status_code == 403

    viewer.user_permissions.add(Permission.objects.get(codename="add_article"))
    assert client.get(reverse(IMPORT_URL)).status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="change_article"))
    assert client.get(reverse(IMPORT_URL)).status_code == 200
    assert Article.objects.filter(site=site).count() == 3


# Article export ---------------------------------------------------------------------------


def export(client, action: str, articles):
    return client.post(
        reverse("admin:bots_article_changelist"),
        {"action": action, "_selected_action": [a.pk for a in articles]},
    )


def test_the_csv_export_action_returns_a_file_that_imports_back(admin_client, site):
    chosen = list(Article.objects.filter(site=site).exclude(title="Returns policy"))

    response = export(admin_client, "export_csv", chosen)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["Content-Disposition"].endswith('.csv"')
    content = response.content.decode("utf-8")
    assert content.startswith("\ufeffid,title,body,tags,language,url,published")
    assert "退货政策" in content
    assert "Returns policy" not in content

    other = make_site(name="Other")
    report = knowledge_io.import_articles(site=other, data=response.content, fmt="csv")
    assert (report.created, report.errors) == (2, [])


def test_the_jsonl_export_action_returns_one_object_per_article(admin_client, site):
    response = export(admin_client, "export_jsonl", Article.objects.filter(site=site))

    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.jsonl"')
    rows = [json.loads(line) for line in response.content.decode().splitlines()]
    assert sorted(row["title"] for row in rows) == sorted(
        Article.objects.filter(site=site).values_list("title", flat=True)
    )


def test_the_article_changelist_query_count_does_not_grow_with_rows(
    admin_client, site, django_assert_max_num_queries, django_assert_num_queries
):
    url = reverse("admin:bots_article_changelist")
    admin_client.get(url)
    with django_assert_max_num_queries(10) as baseline:
        assert admin_client.get(url).status_code == 200
    for n in range(3):
        extra = make_site(name=f"Extra {n}")
        Article.objects.bulk_create(
            Article(site=extra, title=f"Article {i}", body="Body") for i in range(15)
        )
    with django_assert_num_queries(len(baseline)):
        response = admin_client.get(url)
    assert "Article 14" in response.content.decode()


# Curated answers --------------------------------------------------------------------------


@pytest.fixture
def answered():
    """A conversation where the bot answered a visitor's question; returns the bot message."""
    site = make_site()
    visitor = Visitor.objects.create(site=site)
    conversation = Conversation.objects.create(site=site, visitor=visitor)
    append_message(
        conversation_id=conversation.pk,
        author=Message.Author.VISITOR,
        text="Do you ship <abroad>?",
    )
    return append_message(
        conversation_id=conversation.pk,
        author=Message.Author.BOT,
        text="Yes, to 30 countries.",
    )


def test_the_curated_add_form_is_prefilled_from_a_message(admin_client, answered):
    response = admin_client.get(reverse("admin:bots_curatedanswer_add") + f"?message={answered.pk}")

    assert response.status_code == 200
    initial = response.context["adminform"].form.initial
    assert initial["question"] == "Do you ship <abroad>?"
    assert initial["answer"] == "Yes, to 30 countries."
    assert initial["site"] == answered.conversation.site_id
    assert initial["source_message"] == answered.pk
    page = response.content.decode()
    assert "Do you ship &lt;abroad&gt;?" in page
    assert "<abroad>" not in page


def test_the_curated_add_form_warns_about_a_visitor_message(admin_client, answered):
    question = Message.objects.get(conversation=answered.conversation, seq=1)

    response = admin_client.get(reverse("admin:bots_curatedanswer_add") + f"?message={question.pk}")

    assert response.status_code == 200
    assert "question" not in response.context["adminform"].form.initial
    assert any("only a bot or agent answer" in m for m in messages_of(response))


def test_saving_a_curated_answer_records_who_made_it(admin_client, admin_user, answered):
    response = admin_client.post(
        reverse("admin:bots_curatedanswer_add"),
        {
            "site": answered.conversation.site_id,
            "question": "Do you ship abroad?",
            "answer": "Yes, to 30 countries.",
            "is_active": "on",
            "source_message": answered.pk,
        },
    )

    assert response.status_code == 302
    entry = CuratedAnswer.objects.get()
    assert entry.created_by == admin_user
    assert entry.source_message_id == answered.pk
    assert entry.hits == 0


def test_curated_hits_are_read_only_in_the_admin(admin_client):
    site = make_site()
    entry = CuratedAnswer.objects.create(site=site, question="Q?", answer="A.", hits=7)
    response = admin_client.get(reverse("admin:bots_curatedanswer_change", args=[entry.pk]))
    assert response.status_code == 200
    assert "hits" not in response.context["adminform"].form.fields
    assert "last_hit_at" not in response.context["adminform"].form.fields
    changelist = admin_client.get(reverse("admin:bots_curatedanswer_changelist"))
    assert changelist.status_code == 200
    assert "Q?" in changelist.content.decode()


# The LLM call log and summaries -------------------------------------------------------------


def make_calls(site, count: int) -> None:
    LLMCall.objects.bulk_create(
        LLMCall(site=site, kind=LLMCall.Kind.CHAT, model="gpt-test", prompt_tokens=i)
        for i in range(count)
    )


@pytest.mark.parametrize("model", [LLMCall, ConversationSummary])
def test_nobody_may_add_change_or_delete_system_records(rf, admin_user, model):
    model_admin = admin.site._registry[model]
    request = rf.get("/")
    request.user = admin_user
    assert admin_user.is_superuser
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_the_llm_call_admin_refuses_writes_even_for_a_superuser(admin_client):
    site = make_site()
    make_calls(site, 1)
    call = LLMCall.objects.get()

    change_url = reverse("admin:bots_llmcall_change", args=[call.pk])
    assert admin_client.get(change_url).status_code == 200
    response = admin_client.post(change_url, {"model": "tampered", "outcome": "ok"})
    assert response.status_code == 403
    assert admin_client.get(reverse("admin:bots_llmcall_add")).status_code == 403
    delete_url = reverse("admin:bots_llmcall_delete", args=[call.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    call.refresh_from_db()
    assert call.model == "gpt-test"

    changelist = admin_client.get(reverse("admin:bots_llmcall_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()


def test_the_llm_call_changelist_query_count_does_not_grow_with_rows(
    admin_client, django_assert_max_num_queries, django_assert_num_queries
):
    url = reverse("admin:bots_llmcall_changelist")
    make_calls(make_site(name="First"), 2)
    admin_client.get(url)
    with django_assert_max_num_queries(10) as baseline:
        assert admin_client.get(url).status_code == 200
    for n in range(3):
        make_calls(make_site(name=f"Site {n}"), 20)
    with django_assert_num_queries(len(baseline)):
        response = admin_client.get(url)
    assert "Site 2" in response.content.decode()


def test_the_summary_admin_is_view_only(admin_client, answered):
    summary = ConversationSummary.objects.create(
        conversation=answered.conversation, text="They asked about shipping.", upto_seq=2
    )
    assert admin_client.get(reverse("admin:bots_conversationsummary_changelist")).status_code == 200
    change_url = reverse("admin:bots_conversationsummary_change", args=[summary.pk])
    assert admin_client.get(change_url).status_code == 200
    assert admin_client.post(change_url, {"text": "x", "upto_seq": 1}).status_code == 403
    summary.refresh_from_db()
    assert summary.text == "They asked about shipping."


# Bot settings on the Site admin -------------------------------------------------------------


def change_form_data(response) -> dict:
    """The POST body the change form in `response` would send as it is, inlines included."""
    data = {}

    def add(form):
        for name in form.fields:
            bound = form[name]
            value = bound.value()
            if isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = value
            # A browser sends these too; without them an untouched extra form looks changed.
            if bound.field.show_hidden_initial and value is not None:
                data[bound.html_initial_name] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def site_change(admin_client, site, site_values=None, **inline_values):
    url = reverse("admin:helpdesk_site_change", args=[site.pk])
    data = change_form_data(admin_client.get(url))
    data.update(site_values or {})
    data.update({f"bot_config-0-{name}": value for name, value in inline_values.items()})
    return admin_client.post(url, data)


def test_the_site_admin_carries_the_bot_settings_inline(admin_client):
    assert BotConfigInline in admin.site._registry[Site].inlines
    response = admin_client.get(reverse("admin:helpdesk_site_add"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="bot_config-0-temperature"' in page
    # What lets an untouched form for a site without settings be skipped on save.
    assert 'name="initial-bot_config-0-stop_sequences"' in page


def test_a_site_without_bot_settings_saves_untouched_and_creates_them_when_edited(admin_client):
    site = make_site()

    response = site_change(admin_client, site)
    assert response.status_code == 302
    assert not BotConfig.objects.filter(site=site).exists()

    response = site_change(admin_client, site, temperature="0.7", stop_sequences='["\\nUser:"]')
    assert response.status_code == 302
    config = BotConfig.objects.get(site=site)
    assert config.temperature == 0.7
    assert config.stop_sequences == ["\nUser:"]


@pytest.mark.parametrize("exists", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("temperature", "3", "Ensure this value is less than or equal to 2.0."),
        ("top_p", "1.5", "Ensure this value is less than or equal to 1.0."),
        ("few_shot", '[{"user": "hi"', "Enter a valid JSON."),
        ("few_shot", '[{"user": "hi"}]', "exactly a &quot;user&quot; and an &quot;assistant&quot;"),
        ("stop_sequences", '["a", "b", "c", "d", "e"]', "At most 4 stop sequences."),
    ],
)
def test_invalid_bot_settings_are_refused_with_a_message(admin_client, exists, field, value, error):
    site = make_site()
    if exists:
        BotConfig.objects.create(site=site)

    response = site_change(admin_client, site, {"name": "Renamed"}, **{field: value})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert response.context["errors"]
    site.refresh_from_db()
    assert site.name == "Acme Test"
    if exists:
        config = BotConfig.objects.get(site=site)
        assert (config.temperature, config.top_p, config.few_shot, config.stop_sequences) == (
            0.3,
            1.0,
            [],
            [],
        )
    else:
        assert not BotConfig.objects.filter(site=site).exists()


@pytest.mark.parametrize(
    ("message", "warning"), [("abc", "the id must be a number"), ("999999", "no such message")]
)
def test_the_curated_add_form_warns_about_a_bad_message_id(admin_client, message, warning):
    response = admin_client.get(reverse("admin:bots_curatedanswer_add") + f"?message={message}")
    assert response.status_code == 200
    assert any(warning in m for m in messages_of(response))
