"""The offline answerer: the best-matching knowledge-base article, or a plain "no match".

It runs when no LLM is configured, so `make run` answers with no API key.
"""

from dataclasses import dataclass

from django.utils import translation
from django.utils.translation import gettext

from bots.retrieval import has_cjk, search_articles

# A match must share enough of the question's terms with the article: "football match" is
# not a question about price matching. Chinese is indexed as characters and bigrams, of which
# a real match shares fewer, so its bar is lower. BM25 scores themselves shrink with the size
# of the knowledge base, so the score bar only drops near-zero matches.
MIN_COVERAGE = 0.5
MIN_COVERAGE_CHINESE = 0.3
MIN_SCORE = 0.5


@dataclass(frozen=True)
class OfflineAnswer:
    text: str
    article_ids: tuple[int, ...]
    matched: bool


def answer_offline(*, site_id: int, question: str, language: str = "") -> OfflineAnswer:
    """Chinese questions are answered in Chinese when a Chinese article matches."""
    chinese = has_cjk(question) or language.lower().startswith("zh")
    snippets = search_articles(site_id=site_id, query=question, limit=5)
    snippets = [
        s
        for s in snippets
        if s.score >= MIN_SCORE
        and s.coverage >= (MIN_COVERAGE_CHINESE if chinese else MIN_COVERAGE)
    ]
    if chinese:
        snippets.sort(key=lambda s: not s.language.startswith("zh"))
    with translation.override("zh-hans" if chinese else "en"):
        if not snippets:
            return OfflineAnswer(
                text=gettext(
                    "Sorry, I couldn't find anything about that in our help articles. "
                    "Could you rephrase your question? You can also ask to talk to a person."
                ),
                article_ids=(),
                matched=False,
            )
        best = snippets[0]
        intro = gettext("Here is what our help center says about “%(title)s”:") % {
            "title": best.title
        }
    return OfflineAnswer(
        text=f"{intro}\n\n{best.body}", article_ids=(best.article_id,), matched=True
    )
