from pathlib import PurePath

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from bots.curated import draft_from_message
from bots.knowledge_io import MAX_BYTES, MAX_ROWS, export_articles, import_articles
from bots.models import Article, BotConfig, ConversationSummary, CuratedAnswer, LLMCall
from helpdesk.admin import SiteAdmin
from helpdesk.models import Message, Site

EXPORT_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
}
FORMAT_OF_EXTENSION = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system: anyone with the view permission may read them, nobody edits."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ArticleImportForm(forms.Form):
    site = forms.ModelChoiceField(queryset=Site.objects.all())
    file = forms.FileField(
        help_text=(
            f"UTF-8 CSV or JSON Lines, up to {MAX_BYTES // 1024 // 1024} MB and "
            f"{MAX_ROWS:,} articles."
        )
    )
    format = forms.ChoiceField(
        choices=[("", "Guess from the file name"), ("csv", "CSV"), ("jsonl", "JSON Lines")],
        required=False,
    )

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is None:
            return cleaned
        if upload.size > MAX_BYTES:
            self.add_error(
                "file",
                f"The file is {upload.size / 1024 / 1024:.1f} MB; the limit is "
                f"{MAX_BYTES // 1024 // 1024} MB. Split it into smaller files.",
            )
        if not cleaned.get("format"):
            guessed = FORMAT_OF_EXTENSION.get(PurePath(upload.name).suffix.lower())
            if guessed is None:
                self.add_error(
                    "format", "Cannot tell the format from the file name; choose CSV or JSON Lines."
                )
            else:
                cleaned["format"] = guessed
        return cleaned


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    # Typed URLs without a scheme are https (Django 6 behaviour, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["title", "site", "language", "is_published", "updated_at"]
    list_filter = ["is_published", "language", "site"]
    list_select_related = ["site"]
    search_fields = ["title", "body"]
    actions = ["export_csv", "export_jsonl"]
    change_list_template = "admin/bots/article/change_list.html"
    import_template = "admin/bots/article/import.html"

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="bots_article_import",
            ),
            *super().get_urls(),
        ]

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "has_import_permission": self.has_import_permission(request),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        errors: list[str] = []
        if request.method == "POST":
            form = ArticleImportForm(request.POST, request.FILES)
            if form.is_valid():
                report = import_articles(
                    site=form.cleaned_data["site"],
                    data=form.cleaned_data["file"].read(),
                    fmt=form.cleaned_data["format"],
                )
                if report.ok:
                    self.message_user(
                        request,
                        f"Imported {report.created} new and updated {report.updated} articles.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:bots_article_changelist"))
                errors = report.errors
                self.message_user(
                    request,
                    f"Nothing was imported: the file has {len(errors)} problem(s), listed below.",
                    messages.ERROR,
                )
        else:
            form = ArticleImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import articles",
            "opts": self.opts,
            "form": form,
            "import_errors": errors,
            "max_rows": MAX_ROWS,
        }
        return TemplateResponse(request, self.import_template, context)

    def _export(self, queryset, fmt: str) -> HttpResponse:
        content = export_articles(queryset.order_by("site_id", "pk"), fmt)
        if fmt == "csv":
            # The byte-order mark makes Excel read the file as UTF-8, so Chinese text survives;
            # the importer accepts it.
            content = "\ufeff" + content
        response = HttpResponse(content, content_type=EXPORT_CONTENT_TYPES[fmt])
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="articles-{stamp}.{fmt}"'
        return response

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return self._export(queryset, "csv")

    @admin.action(description="Export selected as JSONL", permissions=["view"])
    def export_jsonl(self, request, queryset):
        return self._export(queryset, "jsonl")


@admin.register(CuratedAnswer)
class CuratedAnswerAdmin(admin.ModelAdmin):
    list_display = ["short_question", "site", "is_active", "hits", "last_hit_at", "updated_at"]
    list_filter = ["is_active", "site"]
    list_select_related = ["site"]
    search_fields = ["question", "answer"]
    raw_id_fields = ["source_message"]
    readonly_fields = ["hits", "last_hit_at", "created_by", "created_at", "updated_at"]
    fieldsets = [
        (
            None,
            {
                "fields": ["site", "question", "answer", "is_active", "source_message"],
                "description": (
                    "A customer question close enough to this one gets this answer word for "
                    "word, without calling the LLM. How close is set per site: “curated "
                    "threshold” in the site's bot settings."
                ),
            },
        ),
        ("Use", {"fields": ["hits", "last_hit_at", "created_by", "created_at", "updated_at"]}),
    ]

    @admin.display(description="question", ordering="question")
    def short_question(self, curated: CuratedAnswer) -> str:
        return curated.question[:100]

    def get_changeform_initial_data(self, request):
        """`?message=<id>` fills in a bot or agent answer and the question it answered."""
        initial = super().get_changeform_initial_data(request)
        message_id = request.GET.get("message")
        if not message_id:
            return initial
        initial.pop("message", None)
        if not message_id.isdigit():
            return self._not_prefilled(request, initial, message_id, "the id must be a number.")
        try:
            draft = draft_from_message(message_id=int(message_id))
        except Message.DoesNotExist:
            return self._not_prefilled(request, initial, message_id, "there is no such message.")
        except ValueError as exc:
            return self._not_prefilled(request, initial, message_id, str(exc))
        return {
            **initial,
            "site": draft.site_id,
            "question": draft.question,
            "answer": draft.answer,
            "source_message": draft.message_id,
        }

    def _not_prefilled(self, request, initial: dict, message_id: str, reason: str) -> dict:
        self.message_user(
            request, f"Cannot prefill from message {message_id}: {reason}", messages.WARNING
        )
        return initial

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "site",
        "kind",
        "model",
        "outcome",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "first_token_ms",
        "total_ms",
        "pii_redacted",
    ]
    list_filter = ["kind", "outcome", "site"]
    list_select_related = ["site"]
    date_hierarchy = "created_at"
    search_fields = ["model", "outcome"]


@admin.register(ConversationSummary)
class ConversationSummaryAdmin(ReadOnlyAdmin):
    list_display = ["conversation", "upto_seq", "updated_at"]
    list_select_related = ["conversation"]
    search_fields = ["text"]


class BotConfigInline(admin.StackedInline):
    """The site's bot settings; a site without a row shows the defaults until it is saved."""

    model = BotConfig
    can_delete = False
    max_num = 1
    extra = 1
    verbose_name_plural = "bot settings"
    fieldsets = [
        ("Model", {"fields": ["model", "temperature", "top_p", "max_tokens", "stop_sequences"]}),
        ("Answers", {"fields": ["few_shot", "languages", "banned_words"]}),
        (
            "Cache and curated answers",
            {"fields": ["cache_enabled", "cache_ttl", "curated_threshold"]},
        ),
        ("Cost and privacy", {"fields": ["monthly_token_budget", "store_prompts"]}),
    ]


# bots depends on helpdesk and never the reverse, so the bot settings join the Site admin
# from here: the Site admin of helpdesk, plus one inline.
if admin.site.is_registered(Site):
    admin.site.unregister(Site)


@admin.register(Site)
class SiteWithBotAdmin(SiteAdmin):
    inlines = [*SiteAdmin.inlines, BotConfigInline]
