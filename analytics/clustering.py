"""Group customer questions into topics and rank the topics the bot serves worst.

Pure functions, no database: the caller passes question texts (already PII-redacted) and,
for the gap ranking, one outcome record per question.

Pipeline of `cluster_questions`:

1. `normalize_question` each text (NFKC, casefold, punctuation to spaces, PII placeholders
   such as ``[EMAIL]`` kept as one token ``[email]``).
2. Vectors. Offline: `topic_terms` drops what says nothing about the topic (English stop
   words, greetings and request phrasing, Chinese particles and polite openers, PII
   placeholders); then TF-IDF on character n-grams (``char_wb``, 2-4, sublinear tf,
   ``min_df=2``), which needs no tokenizer and so works for English and Chinese alike,
   reduced by a randomized truncated SVD (LSA, at most ``SVD_COMPONENTS`` dimensions) and
   L2-normalized, so memory stays bounded: n x 100 float32 plus the sparse matrix, and the
   cluster centres are k x 100 instead of k x vocabulary. With ``embeddings`` (from an
   embeddings endpoint) those dense vectors are L2-normalized and used instead.
3. `MiniBatchKMeans` (spherical k-means in effect, since the rows are unit vectors) with
   k = ``max_clusters`` if given, else round(sqrt(n / 2)) capped at ``MAX_AUTO_CLUSTERS``.
   Mini-batches keep time and memory linear in n; ``random_state`` makes it deterministic.
4. Clusters with fewer than ``min_size`` members form an "other" bucket, not returned.

Label: the most central question of the cluster (the member whose vector is closest to the
centroid), whitespace-collapsed and cut to ``LABEL_CHARS``. A real customer question reads
better than top character n-grams, which are word fragments ("hip", "ship", "ppin") and
cannot be mapped back to words for Chinese; it also works unchanged on the embeddings path,
where there are no terms at all.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize as l2_normalize

SVD_COMPONENTS = 100
MAX_AUTO_CLUSTERS = 500
MAX_FEATURES = 200_000
MAX_EXAMPLES = 5
LABEL_CHARS = 80
LOW_RATING = 2  # ratings are 1-5; 1 and 2 count as low

# bots.pii writes placeholders such as [EMAIL], [PHONE], [CN_ID].
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z_]*)\]")
_PLACEHOLDER_TOKEN = re.compile(r"\[[a-z_]+\]")
_NON_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")

# Words that carry no topic. Without them the phrasing of a question ("how do I ... my ...",
# "hi, quick question", "is it possible to ...") weighs as much as what it is about, and
# k-means groups questions by template rather than by topic (purity 0.44 against 0.85 on
# bench/clustering.py). Chinese has no spaces, so its fillers are cut out as substrings;
# the list holds greetings, polite openers, question words and particles only, never
# characters that commonly start or end content words.
_EN_FILLERS = frozenset(
    ENGLISH_STOP_WORDS
    | {"hi", "hello", "hey", "thanks", "thank", "sorry", "pls", "please", "help", "need"}
    | {"want", "like", "know", "question", "quick", "ok", "okay", "possible", "way", "s"}
)
_ZH_FILLERS = re.compile(
    "|".join(
        [
            "请问一下",
            "麻烦问下",
            "请问",
            "麻烦",
            "一下",
            "你好",
            "您好",
            "谢谢",
            "我的",
            "怎么",
            "怎样",
            "如何",
            "可以",
            "能否",
            "的",
            "了",
            "吗",
            "呢",
            "吧",
            "啊",
            "呀",
            "我",
            "你",
            "您",
            "想",
            "能",
            "要",
        ]
    )
)


def normalize_question(text: str) -> str:
    """Canonical form of a question for clustering.

    NFKC (full-width letters, digits and brackets become ASCII), casefold, every run of
    punctuation, symbols, underscores and whitespace becomes one space, and PII placeholders
    like ``[EMAIL]`` survive as a single token ``[email]``. Chinese characters are word
    characters and stay; Chinese punctuation goes.
    """
    text = unicodedata.normalize("NFKC", text)
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(_NON_WORD.sub(" ", text[position : match.start()].casefold()))
        parts.append(f" [{match.group(1).casefold()}] ")
        position = match.end()
    parts.append(_NON_WORD.sub(" ", text[position:].casefold()))
    return _SPACES.sub(" ", "".join(parts)).strip()


def topic_terms(normalized: str) -> str:
    """What a normalized question is about: its words minus fillers and PII placeholders.

    Only the TF-IDF vectors use it; labels and examples keep the customer's own words. A
    question that is all filler ("hi, thanks!") keeps its normalized text, so such
    questions still group together instead of becoming zero vectors.
    """
    words = [
        word
        for word in _ZH_FILLERS.sub(" ", normalized).split()
        if word not in _EN_FILLERS and not _PLACEHOLDER_TOKEN.fullmatch(word)
    ]
    return " ".join(words) or normalized


@dataclass(frozen=True)
class QuestionCluster:
    label: str
    size: int
    members: tuple[int, ...]  # indexes into the input, ascending
    examples: tuple[str, ...]  # up to MAX_EXAMPLES distinct questions, most central first


def _auto_clusters(n: int) -> int:
    return max(1, min(MAX_AUTO_CLUSTERS, round(math.sqrt(n / 2))))


def _text_vectors(normalized: list[str], random_state: int) -> np.ndarray:
    """LSA vectors (unit rows, float32) of the char n-gram TF-IDF of the questions."""
    min_df = 2 if len(normalized) >= 4 else 1
    vectorizer = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 4),
        sublinear_tf=True,
        min_df=min_df,
        max_features=MAX_FEATURES,
        dtype=np.float32,
    )
    try:
        tfidf = vectorizer.fit_transform([topic_terms(text) for text in normalized])
    except ValueError:  # empty vocabulary: every n-gram is rarer than min_df
        return np.zeros((len(normalized), 1), dtype=np.float32)
    components = min(SVD_COMPONENTS, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
    if components < 2:
        vectors = tfidf.toarray() if sparse.issparse(tfidf) else tfidf
    else:
        svd = TruncatedSVD(
            n_components=components, algorithm="randomized", n_iter=4, random_state=random_state
        )
        # All-identical questions have zero variance; sklearn's explained-variance ratio
        # would warn about 0/0, which does not matter here.
        with np.errstate(invalid="ignore", divide="ignore"):
            vectors = svd.fit_transform(tfidf)
    return l2_normalize(np.asarray(vectors, dtype=np.float32))


def cluster_questions(
    texts: Sequence[str],
    *,
    embeddings: np.ndarray | None = None,
    min_size: int = 2,
    max_clusters: int | None = None,
    random_state: int = 0,
) -> list[QuestionCluster]:
    """Group questions into topics; largest first, clusters under ``min_size`` dropped.

    ``embeddings``, if given, is an (n, d) array aligned with ``texts`` and is clustered
    instead of the TF-IDF vectors. ``max_clusters`` fixes k; otherwise k = sqrt(n / 2).
    """
    n = len(texts)
    if n == 0:
        return []
    normalized = [normalize_question(text) for text in texts]
    if embeddings is not None:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise ValueError(f"embeddings must have shape ({n}, d), got {vectors.shape}")
        vectors = l2_normalize(vectors)
    else:
        vectors = _text_vectors(normalized, random_state)

    k = min(n, max_clusters if max_clusters is not None else _auto_clusters(n))
    if k < 1:
        raise ValueError("max_clusters must be at least 1")
    if k == 1:
        labels = np.zeros(n, dtype=np.int64)
    else:
        model = MiniBatchKMeans(
            n_clusters=k,
            batch_size=4096,
            n_init=3,
            max_iter=100,
            max_no_improvement=10,
            random_state=random_state,
        )
        labels = model.fit_predict(vectors)

    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    clusters: list[QuestionCluster] = []
    for members in np.split(order, bounds):
        if len(members) < min_size:
            continue  # the "other" bucket
        clusters.append(_describe(members, vectors, texts, normalized))
    clusters.sort(key=lambda cluster: (-cluster.size, cluster.members[0]))
    return clusters


def _describe(
    members: np.ndarray, vectors: np.ndarray, texts: Sequence[str], normalized: list[str]
) -> QuestionCluster:
    member_vectors = vectors[members]
    centroid = member_vectors.mean(axis=0)
    similarity = member_vectors @ centroid
    # Most central first; ties by input order so the result is deterministic.
    ranked = members[np.lexsort((members, -similarity))]
    examples: list[str] = []
    seen: set[str] = set()
    for index in ranked:
        key = normalized[index]
        if key in seen:
            continue
        seen.add(key)
        examples.append(_SPACES.sub(" ", texts[index]).strip())
        if len(examples) == MAX_EXAMPLES:
            break
    label = examples[0]
    if len(label) > LABEL_CHARS:
        label = label[: LABEL_CHARS - 1].rstrip() + "…"
    return QuestionCluster(
        label=label,
        size=len(members),
        members=tuple(int(index) for index in np.sort(members)),
        examples=tuple(examples),
    )


@dataclass(frozen=True)
class QuestionOutcome:
    answered_by_bot: bool
    escalated: bool
    no_article_matched: bool
    rating: int | None = None  # 1-5, None when the customer did not rate


@dataclass(frozen=True)
class Gap:
    cluster: QuestionCluster
    size: int
    answered_by_bot_share: float
    escalated_share: float
    no_article_share: float
    low_rating_share: float  # among rated questions; 0 when none was rated
    average_rating: float | None
    rated: int
    score: float


def _field(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


def gap_score(size: int, no_article: float, escalated: float, low_rating: float) -> float:
    """sqrt(size) x (0.5 no_article_share + 0.3 escalated_share + 0.2 low_rating_share).

    The square root lets frequency count without a huge topic that is mostly served well
    burying a mid-sized one the bot cannot answer at all; a missing article weighs most
    because it is what a manager can fix directly.
    """
    return math.sqrt(size) * (0.5 * no_article + 0.3 * escalated + 0.2 * low_rating)


def rank_gaps(
    clusters: Sequence[QuestionCluster],
    outcomes: Sequence[QuestionOutcome | Mapping[str, Any] | Any],
) -> list[Gap]:
    """Knowledge-base gaps: the clusters with a positive `gap_score`, worst first.

    ``outcomes[i]`` describes input question i (the indexes in ``QuestionCluster.members``);
    it may be a `QuestionOutcome`, a mapping or any object with the same fields. Ties are
    broken by size, then label.
    """
    gaps: list[Gap] = []
    for cluster in clusters:
        records = [outcomes[index] for index in cluster.members]
        size = len(records)
        if size == 0:
            continue
        answered = sum(bool(_field(r, "answered_by_bot")) for r in records) / size
        escalated = sum(bool(_field(r, "escalated")) for r in records) / size
        no_article = sum(bool(_field(r, "no_article_matched")) for r in records) / size
        ratings = [int(_field(r, "rating")) for r in records if _field(r, "rating") is not None]
        low = sum(rating <= LOW_RATING for rating in ratings) / len(ratings) if ratings else 0.0
        score = gap_score(size, no_article, escalated, low)
        if score <= 0:
            continue
        gaps.append(
            Gap(
                cluster=cluster,
                size=size,
                answered_by_bot_share=answered,
                escalated_share=escalated,
                no_article_share=no_article,
                low_rating_share=low,
                average_rating=sum(ratings) / len(ratings) if ratings else None,
                rated=len(ratings),
                score=score,
            )
        )
    gaps.sort(key=lambda gap: (-gap.score, -gap.size, gap.cluster.label))
    return gaps
