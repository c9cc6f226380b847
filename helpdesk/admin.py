from django.contrib import admin
from django.db import models
from django.utils.html import format_html

from helpdesk.models import Conversation, Message, Site, Visitor


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "origins", "is_active", "default_language", "created_at"]
    list_filter = ["is_active", "default_language"]
    search_fields = ["name", "key"]
    readonly_fields = ["key", "embed_snippet", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "key", "embed_snippet", "allowed_origins"]}),
        ("Bot", {"fields": ["scope", "greeting", "default_language"]}),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="allowed origins")
    def origins(self, site: Site) -> str:
        return ", ".join(site.allowed_origins)

    @admin.display(description="embed snippet")
    def embed_snippet(self, site: Site) -> str:
        if not site.pk:
            return "Save the site to get its snippet."
        return format_html(
            '<code>&lt;script src="https://YOUR-HELPDESK-HOST/widget.js" '
            'data-site-key="{}" async&gt;&lt;/script&gt;</code>',
            site.key,
        )


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    # Typed URLs without a scheme are https (Django 6 behaviour, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["uid", "site", "language", "created_at", "last_seen_at"]
    list_filter = ["site", "language"]
    list_select_related = ["site"]
    readonly_fields = ["uid", "site", "created_at", "last_seen_at"]
    search_fields = ["uid"]


class MessageInline(admin.TabularInline):
    model = Message
    fields = [
        "seq",
        "author",
        "text",
        "state",
        "created_at",
        "answer_source",
        "prompt_tokens",
        "completion_tokens",
        "first_token_ms",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["seq"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "site", "status", "last_seq", "created_at", "updated_at"]
    list_filter = ["status", "site"]
    list_select_related = ["site"]
    readonly_fields = ["site", "visitor", "last_seq", "created_at", "updated_at", "resolved_at"]
    inlines = [MessageInline]
    date_hierarchy = "created_at"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "seq", "author", "short_text", "state", "created_at"]
    list_filter = ["author", "state", "conversation__site"]
    list_select_related = ["conversation"]
    search_fields = ["text"]
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description="text")
    def short_text(self, message: Message) -> str:
        return message.text[:80]

    def has_add_permission(self, request) -> bool:
        return False
