from django.contrib import admin

from bots.models import Article


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "site", "language", "is_published", "updated_at"]
    list_filter = ["site", "language", "is_published"]
    list_select_related = ["site"]
    search_fields = ["title", "body"]
