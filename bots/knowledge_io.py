"""Import and export of a site's knowledge-base articles as CSV or JSON Lines.

Both formats carry the same fields: id, title, body, tags, language, url, published. In CSV
the tags are one `;`-separated cell; in JSON Lines they are a list. An import is all or
nothing: every row is checked first, and one bad row means nothing is saved.
"""

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from bots.models import Article
from helpdesk.models import Site

FORMATS = ("csv", "jsonl")
FIELDS = ("id", "title", "body", "tags", "language", "url", "published")
REQUIRED_FIELDS = ("title", "body")
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
TAG_SEPARATOR = ";"
ROW_RE = re.compile(r"Row (\d+):")

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
TITLE_MAX_LENGTH = Article._meta.get_field("title").max_length
URL_MAX_LENGTH = Article._meta.get_field("url").max_length
# The fields an import writes; updated_at is set by hand because bulk_update skips auto_now,
# and the retrieval index only notices a change through updated_at.
WRITTEN_FIELDS = ("title", "body", "tags", "language", "url", "is_published", "updated_at")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def export_articles(queryset, fmt: str) -> str:
    """The articles of `queryset` as CSV (with a header row) or as JSON Lines."""
    _check_format(fmt)
    rows = (
        {
            "id": article.pk,
            "title": article.title,
            "body": article.body,
            "tags": [str(tag) for tag in article.tags or []],
            "language": article.language,
            "url": article.url,
            "published": article.is_published,
        }
        for article in queryset
    )
    out = io.StringIO()
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return out.getvalue()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "tags": TAG_SEPARATOR.join(row["tags"]),
                "published": "true" if row["published"] else "false",
            }
        )
    return out.getvalue()


def import_articles(*, site: Site, data: str | bytes, fmt: str) -> ImportReport:
    """Create or update `site`'s articles from CSV or JSON Lines text.

    A row whose `id` is an article of this site updates that article; any other row, also
    one carrying the id of another site's article, creates a new one. Row numbers in errors
    are what a spreadsheet shows for CSV (the header is row 1) and line numbers for JSON Lines.
    """
    _check_format(fmt)
    report = ImportReport()
    text = _decode(data, report)
    if text is None:
        return report

    parsed: list[tuple[int, dict[str, Any]]] = []
    parse = _csv_rows if fmt == "csv" else _jsonl_rows
    for number, raw in parse(text, report):
        if len(parsed) == MAX_ROWS:
            report.errors.append(
                f"The file has more than {MAX_ROWS:,} rows; split it into smaller files."
            )
            return report
        parsed.append((number, raw))
    if not parsed and not report.errors:
        report.errors.append("The file has no articles.")
    # Rows that could be read are still checked, so one pass reports every problem.

    requested_ids = {_safe_id(raw) for _number, raw in parsed} - {None}
    existing = Article.objects.filter(site=site).in_bulk(requested_ids)
    to_create: list[Article] = []
    to_update: list[Article] = []
    seen_ids: dict[int, int] = {}
    for number, raw in parsed:
        problems: list[str] = []
        values = _clean_row(raw, problems)
        try:
            article_id = _parse_id(raw)
        except ValueError as exc:
            problems.append(str(exc))
            article_id = None
        article = None
        if article_id in existing:
            if article_id in seen_ids:
                problems.append(f"id {article_id} was already used in row {seen_ids[article_id]}")
            seen_ids.setdefault(article_id, number)
            article = existing[article_id]
        if not problems:
            if article is None:
                article = Article(site=site)
                to_create.append(article)
            else:
                to_update.append(article)
            for name, value in values.items():
                setattr(article, name, value)
            try:
                article.full_clean(exclude=["site"], validate_unique=False)
            except ValidationError as exc:
                problems.extend(_validation_messages(exc))
        report.errors.extend(f"Row {number}: {problem}." for problem in problems)
    if report.errors:
        # Reading problems were found before checking ones; the reader wants file order.
        report.errors.sort(key=_row_number)
        return report

    now = timezone.now()
    with transaction.atomic():
        Article.objects.bulk_create(to_create, batch_size=500)
        for article in to_update:
            article.updated_at = now
        Article.objects.bulk_update(to_update, WRITTEN_FIELDS, batch_size=500)
    report.created = len(to_create)
    report.updated = len(to_update)
    return report


def _row_number(error: str) -> int:
    match = ROW_RE.match(error)
    return int(match.group(1)) if match else 0


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")


def _decode(data: str | bytes, report: ImportReport) -> str | None:
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        report.errors.append(
            f"The file is {size / 1024 / 1024:.1f} MB; the limit is "
            f"{MAX_BYTES // 1024 // 1024} MB. Split it into smaller files."
        )
        return None
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        # utf-8-sig drops the byte-order mark spreadsheet programs put in front of CSV.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.errors.append(
            f"The file is not UTF-8 text (invalid byte at position {exc.start}); "
            "save it as UTF-8 and try again."
        )
        return None


def _csv_rows(text: str, report: ImportReport) -> Iterator[tuple[int, dict[str, Any]]]:
    # newline="" keeps the line breaks inside quoted multi-line bodies as they are.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        report.errors.append(f"Row 1: the header row is not valid CSV ({exc}).")
        return
    if header is None:
        report.errors.append("The file is empty.")
        return
    columns = [name.strip().lower() for name in header]
    if not _check_columns(columns, report, where="Row 1"):
        return
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.errors.append(f"Row {number}: not valid CSV ({exc}).")
            return
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            report.errors.append(
                f"Row {number}: {len(cells)} values but only {len(columns)} columns."
            )
            continue
        yield number, dict(zip(columns, cells, strict=False))


def _jsonl_rows(text: str, report: ImportReport) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            report.errors.append(f"Row {number}: not valid JSON ({exc.msg}).")
            continue
        if not isinstance(raw, dict):
            report.errors.append(f"Row {number}: must be a JSON object.")
            continue
        if _check_columns(list(raw), report, where=f"Row {number}", needs_required=False):
            yield number, raw


def _check_columns(
    columns: list[str], report: ImportReport, *, where: str, needs_required: bool = True
) -> bool:
    unknown = [c for c in columns if c not in FIELDS]
    missing = [c for c in REQUIRED_FIELDS if c not in columns] if needs_required else []
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if unknown:
        report.errors.append(
            f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(FIELDS)}."
        )
    if missing:
        report.errors.append(f"{where}: missing column(s) {', '.join(missing)}.")
    if duplicated:
        report.errors.append(f"{where}: repeated column(s) {', '.join(duplicated)}.")
    return not (unknown or missing or duplicated)


def _parse_id(raw: dict[str, Any]) -> int | None:
    """The row's id, None when it has none; ValueError when it is not a whole number."""
    value = raw.get("id")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"id must be a whole number, got {value!r}")


def _safe_id(raw: dict[str, Any]) -> int | None:
    try:
        return _parse_id(raw)
    except ValueError:
        return None


def _clean_row(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The row's field values, with a problem appended for each one that is wrong."""
    values: dict[str, Any] = {}
    for name in REQUIRED_FIELDS:
        value = raw.get(name)
        if not isinstance(value, str):
            problems.append(f"{name} is required" if value is None else f"{name} must be text")
        elif not value.strip():
            problems.append(f"{name} is required")
        else:
            values[name] = value.strip()
    if "title" in values and len(values["title"]) > TITLE_MAX_LENGTH:
        problems.append(f"title is longer than {TITLE_MAX_LENGTH} characters")

    tags = raw.get("tags")
    if tags is None or tags == "":
        values["tags"] = []
    elif isinstance(tags, str):
        values["tags"] = [tag.strip() for tag in tags.split(TAG_SEPARATOR) if tag.strip()]
    elif isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        values["tags"] = [tag.strip() for tag in tags if tag.strip()]
    else:
        problems.append("tags must be a list of strings")

    codes = [code for code, _name in settings.LANGUAGES]
    language = raw.get("language")
    if language is None or language == "":
        values["language"] = settings.LANGUAGE_CODE
    elif isinstance(language, str) and language.strip().lower() in codes:
        values["language"] = language.strip().lower()
    else:
        problems.append(f"language must be one of {', '.join(codes)}, got {language!r}")

    url = raw.get("url")
    if url is None or url == "":
        values["url"] = ""
    elif not isinstance(url, str):
        problems.append("url must be text")
    else:
        try:
            URLValidator()(url.strip())
        except ValidationError:
            problems.append(f"url is not a valid link: {url!r}")
        else:
            if len(url.strip()) > URL_MAX_LENGTH:
                problems.append(f"url is longer than {URL_MAX_LENGTH} characters")
            values["url"] = url.strip()

    published = _parse_bool(raw.get("published"))
    if published is None:
        problems.append(
            f"published must be true/false, 1/0 or yes/no, got {raw.get('published')!r}"
        )
    else:
        values["is_published"] = published
    return values


def _parse_bool(value: Any) -> bool | None:
    """True or False; a missing value means published. None when it is not boolean-ish."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


def _validation_messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [
            f"{name}: {message.rstrip('.')}"
            for name, messages in exc.message_dict.items()
            for message in messages
        ]
    return [message.rstrip(".") for message in exc.messages]
