"""Knowledge-base retrieval: BM25 over stemmed words (Latin scripts) and character bigrams (CJK).

Chinese has no spaces, so a run of Han characters is indexed as its single characters and
its overlapping bigrams; that needs no segmenter and no dictionary.
"""

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import snowballstemmer
from django.db.models import Count, Max

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


def _stem_words(words: list[str]) -> list[str]:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return stemmer.stemWords(words)


def tokenize(text: str) -> list[str]:
    lowered = text.lower()
    tokens = _stem_words([w for w in WORD_RE.findall(lowered) if w not in STOP_WORDS])
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
    """An inverted index over one site's published articles."""

    def __init__(self, articles: Iterable[tuple[int, str, str, str, list]]) -> None:
        self.documents: list[_Document] = []
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for article_id, title, body, language, tags in articles:
            # The title and tags say what an article is about, so their words count thrice.
            counts = Counter(tokenize(body))
            for term in tokenize(f"{title} {' '.join(map(str, tags))}"):
                counts[term] += 3
            doc_index = len(self.documents)
            self.documents.append(
                _Document(article_id, title, body, language, sum(counts.values()))
            )
            for term, count in counts.items():
                self.postings.setdefault(term, []).append((doc_index, count))
        total = sum(doc.length for doc in self.documents)
        self.average_length = total / len(self.documents) if self.documents else 0.0
        n = len(self.documents)
        self.idf = {
            term: math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            for term, docs in self.postings.items()
        }

    def search(self, query: str, *, limit: int = 3) -> list[Snippet]:
        scores: dict[int, float] = {}
        matched: Counter[int] = Counter()
        terms = set(tokenize(query))
        for term in terms:
            idf = self.idf.get(term)
            if idf is None:
                continue
            for doc_index, count in self.postings[term]:
                norm = 1 - B + B * self.documents[doc_index].length / self.average_length
                scores[doc_index] = scores.get(doc_index, 0.0) + idf * (
                    count * (K1 + 1) / (count + K1 * norm)
                )
                matched[doc_index] += 1
        best = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:limit]
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


_cache: dict[int, tuple[tuple, KnowledgeIndex]] = {}
_cache_lock = threading.Lock()


def index_for_site(site_id: int, version: tuple | None = None) -> KnowledgeIndex:
    """The site's index, rebuilt when any of its published articles changed.

    `version` is (count, newest updated_at) of the published articles, when the caller has
    read it already; otherwise it is read here.
    """
    published = Article.objects.published().filter(site_id=site_id)
    if version is None:
        stats = published.aggregate(count=Count("id"), newest=Max("updated_at"))
        version = (stats["count"], stats["newest"])
    with _cache_lock:
        cached = _cache.get(site_id)
        if cached is not None and cached[0] == version:
            return cached[1]
    index = KnowledgeIndex(published.values_list("id", "title", "body", "language", "tags"))
    with _cache_lock:
        _cache[site_id] = (version, index)
    return index


def search_articles(
    *, site_id: int, query: str, limit: int = 3, version: tuple | None = None
) -> list[Snippet]:
    return index_for_site(site_id, version).search(query, limit=limit)
