"""Import and export of knowledge-base articles as CSV and JSON Lines."""

import csv
import io
import json

import pytest

from bots import knowledge_io
from bots.knowledge_io import export_articles, import_articles
from bots.models import Article
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

COMPARED = ("title", "body", "tags", "language", "url", "is_published")


def article_values(site) -> list[tuple]:
    return sorted(Article.objects.filter(site=site).values_list(*COMPARED))


@pytest.fixture
def rich_site(site):
    """The standard site plus an unpublished article with a multi-line, quoted body."""
    Article.objects.create(
        site=site,
        title='Sizes, "fit" and exchanges',
        body='Line one, with a comma.\nLine "two"; with quotes.\r\n\n第三行：中文。',
        tags=["sizes", "尺码"],
        url="https://shop.example/sizes",
        is_published=False,
    )
    return site


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_into_another_site_creates_equal_articles(rich_site, fmt):
    exported = export_articles(Article.objects.filter(site=rich_site), fmt)
    other = make_site(name="Other")

    report = import_articles(site=other, data=exported, fmt=fmt)

    assert report.errors == []
    assert (report.created, report.updated) == (4, 0)
    assert article_values(other) == article_values(rich_site)
    # The other site's articles are untouched: ids of another site never update.
    assert Article.objects.filter(site=rich_site).count() == 4


def test_csv_export_has_the_documented_columns_and_separators(rich_site):
    exported = export_articles(Article.objects.filter(title__startswith="Sizes"), "csv")
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert list(rows[0]) == ["id", "title", "body", "tags", "language", "url", "published"]
    assert rows[0]["tags"] == "sizes;尺码"
    assert rows[0]["published"] == "false"
    assert (
        rows[0]["body"] == 'Line one, with a comma.\nLine "two"; with quotes.\r\n\n第三行：中文。'
    )


def test_jsonl_export_keeps_tags_as_a_list_and_chinese_unescaped(site):
    exported = export_articles(Article.objects.filter(language="zh-hans"), "jsonl")
    assert "退货政策" in exported
    row = json.loads(exported.splitlines()[0])
    assert row["tags"] == ["退货"]
    assert row["published"] is True
    assert set(row) == {"id", "title", "body", "tags", "language", "url", "published"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_utf8_bytes_with_a_byte_order_mark_import(rich_site, fmt):
    data = "\ufeff" + export_articles(Article.objects.filter(site=rich_site), fmt)
    other = make_site(name="Other")

    report = import_articles(site=other, data=data.encode("utf-8"), fmt=fmt)

    assert report.errors == []
    assert article_values(other) == article_values(rich_site)


def test_csv_without_a_byte_order_mark_and_with_chinese_imports():
    site = make_site()
    data = "title,body,tags,language\n运费,标准运费五元。,运费;配送,zh-hans\n".encode()

    report = import_articles(site=site, data=data, fmt="csv")

    assert report.errors == []
    article = Article.objects.get(site=site)
    assert (article.title, article.tags, article.language) == ("运费", ["运费", "配送"], "zh-hans")
    assert article.is_published


def test_a_row_with_the_id_of_an_article_of_the_site_updates_it(site):
    returns = Article.objects.get(site=site, title="Returns policy")
    data = (
        "id,title,body,tags,published\n"
        f"{returns.pk},Returns policy,Return within 60 days.,returns,no\n"
        ",Gift cards,Gift cards never expire.,,yes\n"
    )

    report = import_articles(site=site, data=data, fmt="csv")

    assert (report.created, report.updated, report.errors) == (1, 1, [])
    returns.refresh_from_db()
    assert returns.body == "Return within 60 days."
    assert returns.tags == ["returns"]
    assert returns.is_published is False
    assert Article.objects.filter(site=site).count() == 4


def test_an_update_moves_updated_at_so_the_retrieval_index_notices(site):
    returns = Article.objects.get(site=site, title="Returns policy")
    before = returns.updated_at
    line = json.dumps({"id": returns.pk, "title": "Returns policy", "body": "New text."})

    import_articles(site=site, data=line, fmt="jsonl")

    returns.refresh_from_db()
    assert returns.updated_at > before


def test_one_bad_row_saves_nothing_and_every_error_is_reported(site):
    returns = Article.objects.get(site=site, title="Returns policy")
    data = (
        "id,title,body,tags,language,url,published\n"
        f"{returns.pk},Returns policy,Changed body,,en,,true\n"  # row 2: valid
        ",,No title here,,en,,true\n"  # row 3
        ',Body missing,"",,en,,true\n'  # row 4
        ",Klingon,Body,,tlh,,true\n"  # row 5
        ",Published?,Body,,en,,maybe\n"  # row 6
        ",Bad link,Body,,en,not a url,true\n"  # row 7
        "abc,Bad id,Body,,en,,true\n"  # row 8
    )

    report = import_articles(site=site, data=data, fmt="csv")

    assert (report.created, report.updated) == (0, 0)
    assert len(report.errors) == 6
    joined = "\n".join(report.errors)
    assert "Row 3: title is required" in joined
    assert "Row 4: body is required" in joined
    assert "Row 5: language must be one of en, zh-hans" in joined
    assert "Row 6: published must be true/false" in joined
    assert "Row 7: url is not a valid link" in joined
    assert "Row 8: id must be a whole number" in joined
    returns.refresh_from_db()
    assert returns.body == "Return unused items within 30 days for a full refund."
    assert Article.objects.filter(site=site).count() == 3


def test_jsonl_errors_name_their_lines_and_check_tag_types():
    site = make_site()
    data = "\n".join(
        [
            json.dumps({"title": "Fine", "body": "Fine."}),
            "{not json",
            json.dumps({"title": "Tags", "body": "Body", "tags": "a;b"}),
            json.dumps({"title": "Tags", "body": "Body", "tags": [1, 2]}),
            json.dumps(["a list"]),
            json.dumps({"title": "T", "body": "B", "colour": "red"}),
        ]
    )

    report = import_articles(site=site, data=data, fmt="jsonl")

    assert [error.split(":")[0] for error in report.errors] == ["Row 2", "Row 4", "Row 5", "Row 6"]
    assert "tags must be a list of strings" in report.errors[1]
    assert "unknown column(s) 'colour'" in report.errors[3]
    assert not Article.objects.filter(site=site).exists()


def test_csv_rows_count_like_a_spreadsheet_even_with_multi_line_bodies():
    site = make_site()
    data = 'title,body\nFirst,"one\ntwo\nthree"\n,No title\n'

    report = import_articles(site=site, data=data, fmt="csv")

    assert report.errors == ["Row 3: title is required."]


def test_missing_required_columns_are_reported():
    report = import_articles(site=make_site(), data="title,text\nA,B\n", fmt="csv")
    assert any("unknown column(s) 'text'" in e for e in report.errors)
    assert any("missing column(s) body" in e for e in report.errors)


def test_text_that_is_not_utf8_is_refused_clearly():
    report = import_articles(
        site=make_site(), data="title,body\n运费,五元\n".encode("gbk"), fmt="csv"
    )
    assert report.errors
    assert "not UTF-8" in report.errors[0]


def test_a_file_over_the_size_limit_is_refused(monkeypatch):
    site = make_site()
    monkeypatch.setattr(knowledge_io, "MAX_BYTES", 1000)
    data = "title,body\n" + "".join(f"Title {i},{'x' * 50}\n" for i in range(30))

    report = import_articles(site=site, data=data.encode(), fmt="csv")

    assert len(report.errors) == 1
    assert "the limit is" in report.errors[0]
    assert not Article.objects.filter(site=site).exists()


def test_the_real_size_limit_is_five_megabytes():
    site = make_site()
    data = b"title,body\nBig," + b"x" * (5 * 1024 * 1024)
    report = import_articles(site=site, data=data, fmt="csv")
    assert "the limit is 5 MB" in report.errors[0]


def test_a_file_over_the_row_limit_is_refused(monkeypatch):
    site = make_site()
    monkeypatch.setattr(knowledge_io, "MAX_ROWS", 5)
    data = "title,body\n" + "".join(f"Title {i},Body\n" for i in range(6))

    report = import_articles(site=site, data=data, fmt="csv")

    assert report.errors == ["The file has more than 5 rows; split it into smaller files."]
    assert not Article.objects.filter(site=site).exists()


def test_exactly_the_row_limit_is_accepted(monkeypatch):
    site = make_site()
    monkeypatch.setattr(knowledge_io, "MAX_ROWS", 5)
    data = "title,body\n" + "".join(f"Title {i},Body\n" for i in range(5))
    assert import_articles(site=site, data=data, fmt="csv").created == 5


def test_an_empty_file_is_an_error():
    assert import_articles(site=make_site(), data=b"", fmt="csv").errors == ["The file is empty."]
    assert import_articles(site=make_site(), data="title,body\n", fmt="csv").errors == [
        "The file has no articles."
    ]
