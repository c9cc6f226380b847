"""Retrieval and the offline answerer, in English and Chinese."""

import pytest

from bots.models import Article
from bots.offline import answer_offline
from bots.retrieval import search_articles, tokenize

pytestmark = pytest.mark.django_db


def test_chinese_text_is_indexed_as_characters_and_bigrams():
    tokens = tokenize("退货政策")
    assert {"退", "货", "退货", "货政", "政策"} <= set(tokens)


def test_english_words_are_folded_and_stop_words_dropped():
    assert tokenize("How do I return my boots?") == ["return", "boot"]


def test_the_best_article_ranks_first(site):
    results = search_articles(site_id=site.pk, query="what does shipping cost?")
    assert results[0].title == "Shipping times and costs"


def test_unpublished_articles_are_never_used(site):
    Article.objects.filter(title="Returns policy").update(is_published=False)
    titles = [s.title for s in search_articles(site_id=site.pk, query="returns refund")]
    assert "Returns policy" not in titles


def test_a_new_article_is_found_without_a_restart(site):
    assert search_articles(site_id=site.pk, query="gift cards") == []
    Article.objects.create(site=site, title="Gift cards", body="Gift cards never expire.")
    assert search_articles(site_id=site.pk, query="gift cards")[0].title == "Gift cards"


def test_articles_of_another_site_are_invisible(site):
    from tests.conftest import make_site

    other = make_site(name="Other")
    Article.objects.create(site=other, title="Gift cards", body="Gift cards never expire.")
    assert search_articles(site_id=site.pk, query="gift cards") == []


def test_the_offline_answer_quotes_the_matching_article(site):
    answer = answer_offline(site_id=site.pk, question="Can I get a refund on returns?")
    assert answer.matched
    assert "Return unused items within 30 days" in answer.text
    assert "Returns policy" in answer.text


def test_a_chinese_question_prefers_the_chinese_article_and_answers_in_chinese(site):
    answer = answer_offline(site_id=site.pk, question="怎么退货？")
    assert answer.matched
    assert "30天内退货" in answer.text


def test_no_match_says_so_plainly_in_the_customers_language(site):
    english = answer_offline(site_id=site.pk, question="Who won the football match?")
    assert not english.matched
    assert "couldn't find" in english.text
    chinese = answer_offline(site_id=site.pk, question="今天天气怎么样？")
    assert not chinese.matched
    assert "couldn't find" not in chinese.text
