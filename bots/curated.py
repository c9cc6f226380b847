"""Curated answers: a customer question close enough to an approved one gets its answer verbatim.

Closeness is the cosine between character n-gram counts of the normalized texts: trigrams of
each padded word for Latin scripts, single characters and bigrams for CJK runs. That needs no
segmenter and tolerates small edits, typos and reordered words in English and Chinese alike.
"""

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from bots.index_cache import VersionedIndexes
from bots.models import CuratedAnswer
from bots.retrieval import CJK_RUN_RE
from helpdesk.models import Message

# Apostrophes join a word ("don't" -> "dont"); any other punctuation separates words.
APOSTROPHES = frozenset("'`\u2018\u2019")
SPACE_RE = re.compile(r"\s+")
ANSWER_AUTHORS = frozenset({Message.Author.BOT, Message.Author.AGENT})


def normalize_question(text: str) -> str:
    """Casefolded, without punctuation (ASCII, Unicode and CJK), single-spaced."""
    # NFKC turns full-width letters, digits and punctuation into their plain forms.
    folded = unicodedata.normalize("NFKC", text).casefold()
    chars = []
    for ch in folded:
        if ch in APOSTROPHES:
            continue
        chars.append(" " if unicodedata.category(ch).startswith("P") else ch)
    return SPACE_RE.sub(" ", "".join(chars)).strip()


def char_ngrams(normalized: str) -> Counter[str]:
    """Trigrams of each space-padded Latin word; characters and bigrams of each CJK run."""
    grams: Counter[str] = Counter()
    for word in normalized.split():
        position = 0
        for match in CJK_RUN_RE.finditer(word):
            _add_word_trigrams(grams, word[position : match.start()])
            run = match.group()
            grams.update(run)
            grams.update(run[i : i + 2] for i in range(len(run) - 1))
            position = match.end()
        _add_word_trigrams(grams, word[position:])
    return grams


def _add_word_trigrams(grams: Counter[str], word: str) -> None:
    if not word:
        return
    padded = f" {word} "
    grams.update(padded[i : i + 3] for i in range(len(padded) - 2))


def _norm(vector: Counter[str]) -> float:
    return math.sqrt(sum(count * count for count in vector.values()))


def similarity(a: str, b: str) -> float:
    """Cosine similarity (0 to 1) of two texts' character n-gram counts."""
    va, vb = char_ngrams(normalize_question(a)), char_ngrams(normalize_question(b))
    na, nb = _norm(va), _norm(vb)
    if not na or not nb:
        return 0.0
    return sum(count * vb[gram] for gram, count in va.items()) / (na * nb)


@dataclass(frozen=True)
class CuratedMatch:
    curated_id: int
    answer: str
    score: float


class CuratedIndex:
    """An inverted n-gram index over one site's active curated questions."""

    def __init__(self, entries: list[tuple[int, str, str]]) -> None:
        self.ids: list[int] = []
        self.answers: list[str] = []
        self.norms: list[float] = []
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for curated_id, question, answer in entries:
            vector = char_ngrams(normalize_question(question))
            norm = _norm(vector)
            if not norm:
                continue
            position = len(self.ids)
            self.ids.append(curated_id)
            self.answers.append(answer)
            self.norms.append(norm)
            for gram, count in vector.items():
                self.postings.setdefault(gram, []).append((position, count))

    def match(self, question: str, threshold: float) -> CuratedMatch | None:
        """The closest curated answer, if it scores at least `threshold`."""
        best = self.best(question)
        return best if best is not None and best.score >= threshold else None

    def best(self, question: str) -> CuratedMatch | None:
        vector = char_ngrams(normalize_question(question))
        norm = _norm(vector)
        if not norm:
            return None
        dots: dict[int, float] = {}
        for gram, count in vector.items():
            for position, other in self.postings.get(gram, ()):
                dots[position] = dots.get(position, 0.0) + count * other
        if not dots:
            return None
        # Highest score first; on a tie the oldest curated answer wins, so the result is stable.
        position, dot = max(
            dots.items(), key=lambda item: (item[1] / self.norms[item[0]], -item[0])
        )
        return CuratedMatch(
            self.ids[position], self.answers[position], dot / (norm * self.norms[position])
        )


_cache: VersionedIndexes[CuratedIndex] = VersionedIndexes()


def _active(site_id: int):
    # Built only when it runs: building a queryset costs more than a cache hit.
    return CuratedAnswer.objects.filter(site_id=site_id, is_active=True)


def cached_index(site_id: int, version: tuple) -> CuratedIndex | None:
    """The site's index if this process has built it for `version`; else None (no query)."""
    return _cache.get(site_id, version)


def index_for_site(site_id: int, version: tuple | None = None) -> CuratedIndex:
    """The site's index, rebuilt when one of its active curated answers is added or changed.

    Deactivating or deleting one changes the count; adding or editing one moves the newest
    updated_at. Counting a hit uses a queryset update, which leaves updated_at alone, so
    hits never force a rebuild.
    """
    if version is None:
        stats = _active(site_id).aggregate(count=Count("id"), newest=Max("updated_at"))
        version = (stats["count"], stats["newest"])
    cached = cached_index(site_id, version)
    if cached is not None:
        return cached
    active = _active(site_id)
    index = CuratedIndex(list(active.order_by("pk").values_list("id", "question", "answer")))
    _cache.put(site_id, version, index)
    return index


def find_curated_answer(
    *, site_id: int, question: str, threshold: float, version: tuple | None = None
) -> CuratedMatch | None:
    """The site's active curated answer closest to `question`, if it scores at least `threshold`.

    `version` is (count, newest updated_at) of the active curated answers, when known.
    """
    return index_for_site(site_id, version).match(question, threshold)


def record_curated_hit(curated_id: int) -> None:
    # F() adds in the database, so two answers served at once both count.
    CuratedAnswer.objects.filter(pk=curated_id).update(
        hits=F("hits") + 1, last_hit_at=timezone.now()
    )


@dataclass(frozen=True)
class CuratedDraft:
    """A curated answer made from a stored message, before anyone saves it."""

    site_id: int
    question: str
    answer: str
    message_id: int


def draft_from_message(*, message_id: int) -> CuratedDraft:
    """The bot or agent answer `message_id` and the visitor question just before it.

    Raises Message.DoesNotExist for an unknown id and ValueError when the message is not a
    bot or agent answer, is empty, or has no visitor question before it.
    """
    message = Message.objects.select_related("conversation").get(pk=message_id)
    if message.author not in ANSWER_AUTHORS:
        raise ValueError(
            f"Message {message_id} is by the {message.get_author_display().lower()}; "
            "only a bot or agent answer can become a curated answer."
        )
    if not message.text.strip():
        raise ValueError(f"Message {message_id} has no text.")
    question = (
        Message.objects.filter(
            conversation_id=message.conversation_id,
            author=Message.Author.VISITOR,
            seq__lt=message.seq,
        )
        .exclude(text="")
        .order_by("-seq")
        .values_list("text", flat=True)
        .first()
    )
    if question is None:
        raise ValueError(f"No visitor question comes before message {message_id}.")
    return CuratedDraft(
        site_id=message.conversation.site_id,
        question=question.strip(),
        answer=message.text.strip(),
        message_id=message.pk,
    )


def create_curated_from_message(*, message_id: int, user) -> CuratedAnswer:
    """Store the answer `message_id` and the visitor question it answered as a curated pair."""
    with transaction.atomic():
        draft = draft_from_message(message_id=message_id)
        return CuratedAnswer.objects.create(
            site_id=draft.site_id,
            question=draft.question,
            answer=draft.answer,
            source_message_id=draft.message_id,
            created_by=user if user is not None and user.is_authenticated else None,
        )
