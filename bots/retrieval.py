"""Knowledge-base retrieval: BM25 over stemmed words (Latin scripts) and character bigrams (CJK).

Chinese has no spaces, so a run of Han characters is indexed as its single characters and
its overlapping bigrams; that needs no segmenter and no dictionary.
"""

import heapq
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

import snowballstemmer
from django.db.models import Count, Max

from bots.index_cache import VersionedIndexes
from bots.models import Article

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
CJK_RUN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
STOP_WORDS = frozenset(
    """a an and are as at be but by can could do does did for from have has how i if in into is
    it its me my of on or our so that the their them there this to us was we were what when where
    which who why will with would you your please hi hello thanks thank get got long take much
    many need want know tell like make use""".split()
)
CJK_STOP_CHARS = frozenset("的了吗呢吧啊是我你您在有和与就都也要这那个么什怎")

K1 = 1.2
B = 0.75


# Snowball (Porter 2) folds "shipping", "ships" and "shipped" to "ship"; its stemmer objects
# are not thread-safe, so each thread gets its own.
_stemmers = threading.local()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # A knowledge base has a small vocabulary, and Snowball is pure Python: memoizing makes
    # indexing 10,000 articles take one second instead of twenty.
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def tokenize(text: str) -> list[str]:
    lowered = text.lower()
    tokens = [_stem(w) for w in WORD_RE.findall(lowered) if w not in STOP_WORDS]
    for run in CJK_RUN_RE.findall(lowered):
        tokens.extend(ch for ch in run if ch not in CJK_STOP_CHARS)
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


def has_cjk(text: str) -> bool:
    return CJK_RUN_RE.search(text) is not None


@dataclass(frozen=True)
class Snippet:
    article_id: int
    title: str
    body: str
    language: str
    score: float
    # The share of the question's distinct terms the article contains.
    coverage: float


@dataclass(frozen=True)
class _Document:
    article_id: int
    title: str
    body: str
    language: str
    length: int


class KnowledgeIndex:
    """An inverted index over one site's published articles.

    Each posting carries its finished BM25 term weight, so a query only adds up numbers.
    """

    def __init__(self, articles: Iterable[tuple[int, str, str, str, list]]) -> None:
        self.documents: list[_Document] = []
        counts_of: list[Counter[str]] = []
        for article_id, title, body, language, tags in articles:
            # The title and tags say what an article is about, so their words count thrice.
            counts = Counter(tokenize(body))
            for term in tokenize(f"{title} {' '.join(map(str, tags))}"):
                counts[term] += 3
            counts_of.append(counts)
            self.documents.append(
                _Document(article_id, title, body, language, sum(counts.values()))
            )
        n = len(self.documents)
        average = sum(doc.length for doc in self.documents) / n if n else 0.0
        frequency: Counter[str] = Counter()
        for counts in counts_of:
            frequency.update(counts.keys())
        idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5)) for term, df in frequency.items()}
        self.postings: dict[str, dict[int, float]] = {}
        for doc_index, counts in enumerate(counts_of):
            norm = K1 * (1 - B + B * self.documents[doc_index].length / average)
            for term, count in counts.items():
                weight = idf[term] * count * (K1 + 1) / (count + norm)
                self.postings.setdefault(term, {})[doc_index] = weight

    def search(self, query: str, *, limit: int = 3) -> list[Snippet]:
        terms = set(tokenize(query))
        lists = [self.postings[term] for term in terms if term in self.postings]
        if not lists:
            return []
        # Start from the longest posting list: one dict copy instead of its many updates.
        lists.sort(key=len, reverse=True)
        scores = dict(lists[0])
        get = scores.get
        for postings in lists[1:]:
            for doc_index, weight in postings.items():
                scores[doc_index] = get(doc_index, 0.0) + weight
        best = heapq.nlargest(limit, scores.items(), key=itemgetter(1))
        matched = {
            doc_index: sum(doc_index in postings for postings in lists) for doc_index, _ in best
        }
        return [
            Snippet(
                doc.article_id,
                doc.title,
                doc.body,
                doc.language,
                round(score, 4),
                round(matched[doc_index] / len(terms), 4),
            )
            for doc_index, score in best
            for doc in [self.documents[doc_index]]
        ]


_cache: VersionedIndexes[KnowledgeIndex] = VersionedIndexes()


def _published(site_id: int):
    # Built only when it runs: building a queryset costs more than a cache hit.
    return Article.objects.published().filter(site_id=site_id)


def cached_index(site_id: int, version: tuple) -> KnowledgeIndex | None:
    """The site's index if this process has built it for `version`; else None (no query)."""
    return _cache.get(site_id, version)


def index_for_site(site_id: int, version: tuple | None = None) -> KnowledgeIndex:
    """The site's index, rebuilt when any of its published articles changed.

    `version` is (count, newest updated_at) of the published articles, when the caller has
    read it already; otherwise it is read here.
    """
    if version is None:
        stats = _published(site_id).aggregate(count=Count("id"), newest=Max("updated_at"))
        version = (stats["count"], stats["newest"])
    cached = cached_index(site_id, version)
    if cached is not None:
        return cached
    published = _published(site_id)
    index = KnowledgeIndex(published.values_list("id", "title", "body", "language", "tags"))
    _cache.put(site_id, version, index)
    return index


def search_articles(
    *, site_id: int, query: str, limit: int = 3, version: tuple | None = None
) -> list[Snippet]:
    return index_for_site(site_id, version).search(query, limit=limit)
