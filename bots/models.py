from django.conf import settings
from django.db import models

from helpdesk.models import Site


class ArticleQuerySet(models.QuerySet):
    def published(self):
        return self.filter(is_published=True)


class Article(models.Model):
    """A knowledge-base article: what the bot may say, and what it cites."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="articles")
    title = models.CharField(max_length=300)
    body = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    language = models.CharField(
        max_length=16, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    is_published = models.BooleanField("published", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ArticleQuerySet.as_manager()

    class Meta:
        ordering = ["site", "title"]
        indexes = [models.Index(fields=["site", "is_published"])]

    def __str__(self) -> str:
        return self.title
