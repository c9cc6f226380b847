"""Question clustering and knowledge-base gap ranking (analytics.clustering), no database."""

import math
from collections import Counter

import numpy as np
import pytest

from analytics.clustering import (
    QuestionCluster,
    QuestionOutcome,
    cluster_questions,
    normalize_question,
    rank_gaps,
    topic_terms,
)

TOPICS = {
    "shipping": [
        "How long does shipping take?",
        "how much is shipping to Canada",
        "What are the shipping costs?",
        "Is shipping free over $50?",
        "when will my order ship",
        "Do you offer express shipping?",
        "shipping time to Germany?",
        "Which carrier do you use for shipping",
        "can you ship to a PO box? shipping question",
        "How much does international shipping cost?",
    ],
    "returns": [
        "How do I return an item?",
        "what is your return policy",
        "Can I return shoes I wore once?",
        "how long do I have to return my order",
        "Return label please, I want to return this",
        "Do returns cost anything?",
        "where do I send my return",
        "is the return free",
        "I want to return my jacket, my email is [EMAIL]",
        "Returning a gift without a receipt - return possible?",
    ],
    "sizing": [
        "What size should I order?",
        "Do your sizes run small?",
        "size chart for the boots",
        "Is size M too big for me?",
        "how do I find my size",
        "what size is a EU 42 in US size",
        "sizes for kids jackets",
        "Does this size fit true to size?",
        "which size for a 180 cm person",
        "size guide please",
    ],
    "运费": [
        "运费是多少？",
        "请问运费怎么算",
        "满多少免运费？",
        "寄到上海运费多少钱",
        "运费可以便宜点吗",
        "国际运费是多少",
        "运费谁来付？",
        "退货要不要付运费？运费",
        "快递运费贵吗",
        "运费包含关税吗",
    ],
    "退货": [
        "怎么退货？",
        "退货流程是什么",
        "我想退货，可以吗？",
        "退货需要几天",
        "退货地址在哪里",
        "穿过的鞋可以退货吗",
        "退货期限多久？",
        "退货怎么退款",
        "网上买的可以退货吗？我的邮箱[EMAIL]",
        "礼物可以退货吗",
    ],
    "尺码": [
        "尺码怎么选？",
        "尺码偏小吗",
        "有尺码表吗？",
        "我穿多大尺码",
        "这款鞋尺码标准吗",
        "尺码不合适怎么办",
        "童装尺码怎么看",
        "欧码42是什么尺码",
        "尺码偏大还是偏小？",
        "一米八穿什么尺码",
    ],
}


def _topic_corpus():
    texts, truth = [], []
    for topic, questions in TOPICS.items():
        texts += questions
        truth += [topic] * len(questions)
    return texts, truth


def _purity(clusters, truth):
    clustered = sum(cluster.size for cluster in clusters)
    majority = sum(
        Counter(truth[i] for i in cluster.members).most_common(1)[0][1] for cluster in clusters
    )
    return majority / clustered


def _groups(centres, per_group, spread, seed=0):
    """Embeddings: `per_group` noisy points around each centre, grouped in input order."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=float)
    points = [c + rng.normal(scale=spread, size=(per_group, c.size)) for c in centres]
    return np.vstack(points)


# --- normalize_question ---------------------------------------------------------------


def test_normalize_casefolds_and_collapses_punctuation_and_whitespace():
    assert normalize_question("  Where's   my ORDER?!\n\tThanks...  ") == "where s my order thanks"
    assert normalize_question("STRASSE Straße") == "strasse strasse"  # casefold, not lower


def test_normalize_applies_nfkc_to_full_width_text():
    assert normalize_question("ＡＢＣ１２３") == "abc123"


def test_normalize_keeps_pii_placeholders_as_tokens():
    text = "Mail me at [EMAIL], or call [PHONE]! ID:[CN_ID]"
    assert normalize_question(text) == "mail me at [email] or call [phone] id [cn_id]"
    # Full-width brackets are NFKC-normalized first, so they still count as a placeholder.
    assert normalize_question("邮箱［EMAIL］") == "邮箱 [email]"
    # Lower-case brackets are not a placeholder: just punctuation.
    assert normalize_question("see [note] here") == "see note here"


def test_normalize_chinese_drops_full_width_punctuation_and_keeps_characters():
    assert normalize_question("你好，请问运费是多少？！") == "你好 请问运费是多少"
    assert normalize_question("订单【12345】“退货”") == "订单 12345 退货"


# --- topic_terms -----------------------------------------------------------------------


def test_topic_terms_drop_fillers_stop_words_and_placeholders():
    text = normalize_question("Hi, quick question: how do I return my tent? My email is [EMAIL]")
    assert topic_terms(text) == "return tent email"
    assert topic_terms(normalize_question("你好，请问我的帐篷怎么退货？")) == "帐篷 退货"


def test_topic_terms_keep_a_question_that_is_all_filler():
    assert topic_terms("hi thanks") == "hi thanks"


# --- cluster_questions: offline TF-IDF path ------------------------------------------


# Four topics, each asked in the same five phrasings: the phrasing must not be the topic.
PHRASINGS = [
    "Hi, how do I {} my {}?",
    "quick question: can I {} the {} please",
    "is it possible to {} a {}? call me at [PHONE]",
    "hello, I need to {} my {}, my email is [EMAIL]",
    "sorry, what's the way to {} {}",
    "{} {}?",
]
ACTIONS = {("return", "tent"), ("return", "kayak"), ("track", "tent"), ("track", "kayak")}


def test_clusters_follow_the_topic_not_the_phrasing():
    texts, truth = [], []
    for verb, thing in sorted(ACTIONS):
        for phrasing in PHRASINGS:
            texts.append(phrasing.format(verb, thing))
            truth.append((verb, thing))
    clusters = cluster_questions(texts, max_clusters=len(ACTIONS), random_state=0)
    assert sorted(sorted({truth[i] for i in c.members}) for c in clusters) == sorted(
        [topic] for topic in ACTIONS
    )


def test_clusters_recover_english_and_chinese_topics():
    texts, truth = _topic_corpus()
    clusters = cluster_questions(texts, max_clusters=len(TOPICS), random_state=0)
    assert _purity(clusters, truth) >= 0.85
    # Every topic is the majority of some cluster.
    majorities = {Counter(truth[i] for i in c.members).most_common(1)[0][0] for c in clusters}
    assert majorities == set(TOPICS)
    assert sum(c.size for c in clusters) >= 0.9 * len(texts)


def test_auto_cluster_count_also_separates_topics():
    texts, truth = _topic_corpus()
    clusters = cluster_questions(texts, random_state=0)  # k = sqrt(60 / 2) = 5 or so
    assert len(clusters) >= 4
    # Scripts never mix: character n-grams of English and Chinese share nothing.
    for cluster in clusters:
        scripts = {truth[i] in {"运费", "退货", "尺码"} for i in cluster.members}
        assert len(scripts) == 1


def test_cluster_fields_are_consistent():
    texts, _ = _topic_corpus()
    clusters = cluster_questions(texts, max_clusters=len(TOPICS), random_state=0)
    assert [c.size for c in clusters] == sorted((c.size for c in clusters), reverse=True)
    seen = set()
    for cluster in clusters:
        assert isinstance(cluster, QuestionCluster)
        assert cluster.size == len(cluster.members)
        assert list(cluster.members) == sorted(cluster.members)
        assert not seen & set(cluster.members)
        seen |= set(cluster.members)
        assert 1 <= len(cluster.examples) <= 5
        assert len(set(cluster.examples)) == len(cluster.examples)
        assert cluster.label == cluster.examples[0]
        assert {texts.index(e) for e in cluster.examples} <= set(cluster.members)


def test_examples_are_distinct_after_normalization():
    texts = ["Where is my parcel?"] * 6 + ["where is my parcel"] + ["Where is my parcel now?"]
    (cluster,) = cluster_questions(texts, max_clusters=1)
    assert cluster.size == 8
    assert len(cluster.examples) == 2
    assert cluster.examples[0] in {"Where is my parcel?", "where is my parcel"}


def test_empty_input():
    assert cluster_questions([]) == []


# --- determinism, min_size, embeddings ------------------------------------------------


def test_same_random_state_gives_same_clusters_and_another_may_differ():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(300, 8))  # no structure, so the seed decides the partition
    texts = [f"q{i}" for i in range(300)]
    first = cluster_questions(texts, embeddings=vectors, max_clusters=12, random_state=3)
    second = cluster_questions(texts, embeddings=vectors, max_clusters=12, random_state=3)
    assert first == second
    others = [
        cluster_questions(texts, embeddings=vectors, max_clusters=12, random_state=seed)
        for seed in (4, 5, 6)
    ]
    assert any(other != first for other in others)


def test_text_path_is_deterministic():
    texts, _ = _topic_corpus()
    assert cluster_questions(texts, random_state=1) == cluster_questions(texts, random_state=1)


def test_clusters_smaller_than_min_size_are_dropped():
    centres = np.eye(3) * 10
    vectors = np.vstack([_groups(centres[:2], 5, 0.1), centres[2:]])  # 5 + 5 + 1 outlier
    texts = [f"question {i}" for i in range(11)]
    clusters = cluster_questions(texts, embeddings=vectors, max_clusters=3)
    assert sorted(c.size for c in clusters) == [5, 5]
    assert 10 not in {i for c in clusters for i in c.members}
    kept = cluster_questions(texts, embeddings=vectors, max_clusters=3, min_size=1)
    assert sorted(c.size for c in kept) == [1, 5, 5]
    assert cluster_questions(texts, embeddings=vectors, max_clusters=3, min_size=6) == []


def test_embeddings_path_clusters_the_given_vectors_not_the_text():
    # Texts say nothing (all the same); only the embeddings carry the topics.
    centres = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]
    vectors = _groups(centres, 8, 0.05)
    texts = ["same question"] * 24
    clusters = cluster_questions(texts, embeddings=vectors, max_clusters=3)
    assert sorted(c.members for c in clusters) == [
        tuple(range(0, 8)),
        tuple(range(8, 16)),
        tuple(range(16, 24)),
    ]


def test_embeddings_are_compared_by_direction():
    # Same direction, very different lengths: one topic after L2 normalization.
    base = np.array([[1.0, 0.1], [0.1, 1.0]])
    vectors = np.vstack([base[0] * s for s in (1, 50, 200)] + [base[1] * s for s in (1, 50, 200)])
    texts = [f"q{i}" for i in range(6)]
    clusters = cluster_questions(texts, embeddings=vectors, max_clusters=2)
    assert sorted(c.members for c in clusters) == [(0, 1, 2), (3, 4, 5)]


def test_label_is_the_member_closest_to_the_centroid():
    vectors = np.array([[0.8, 0.6], [0.9, 0.45], [1.0, 0.0], [0.9, -0.45], [0.8, -0.6]])
    texts = ["far upper", "upper", "central one", "lower", "far lower"]
    (cluster,) = cluster_questions(texts, embeddings=vectors, max_clusters=1)
    assert cluster.label == "central one"
    assert cluster.examples[:3] in {
        ("central one", "upper", "lower"),
        ("central one", "lower", "upper"),
    }
    assert set(cluster.examples[3:]) == {"far upper", "far lower"}


def test_embeddings_shape_must_match_texts():
    with pytest.raises(ValueError, match="shape"):
        cluster_questions(["a", "b"], embeddings=np.zeros((3, 4)))


# --- rank_gaps --------------------------------------------------------------------------


def _cluster(label, members):
    members = tuple(members)
    return QuestionCluster(label=label, size=len(members), members=members, examples=(label,))


def test_rank_gaps_orders_by_size_times_badness_with_stats():
    ok = QuestionOutcome(answered_by_bot=True, escalated=False, no_article_matched=False, rating=5)
    miss = QuestionOutcome(answered_by_bot=False, escalated=True, no_article_matched=True, rating=1)
    unrated_miss = QuestionOutcome(
        answered_by_bot=False, escalated=False, no_article_matched=True, rating=None
    )
    outcomes = (
        [ok] * 16  # 0-15: "served": 16 questions, all fine -> not a gap
        + [miss] * 4  # 16-19: "small": 4 questions, all bad
        + [miss] * 3
        + [ok] * 6  # 20-28: "big": 9 questions, a third bad
        + [unrated_miss] * 4  # 29-32: no article, nobody rated
    )
    served = _cluster("served", range(16))
    small = _cluster("small", range(16, 20))
    big = _cluster("big", range(20, 29))
    unrated = _cluster("unrated", range(29, 33))
    gaps = rank_gaps([served, big, unrated, small], outcomes)

    # small: sqrt(4) x (0.5 + 0.3 + 0.2) = 2.0
    # unrated: sqrt(4) x 0.5 = 1.0
    # big: sqrt(9) x (0.5/3 + 0.3/3 + 0.2 x 3/9) = 3 x 1/3 = 1.0, ties broken by size
    assert [gap.cluster.label for gap in gaps] == ["small", "big", "unrated"]
    assert [gap.score for gap in gaps] == pytest.approx([2.0, 1.0, 1.0])

    first, second, third = gaps
    assert first.size == 4
    assert (first.answered_by_bot_share, first.escalated_share) == (0.0, 1.0)
    assert (first.no_article_share, first.low_rating_share) == (1.0, 1.0)
    assert first.average_rating == 1.0
    assert second.answered_by_bot_share == pytest.approx(6 / 9)
    assert second.escalated_share == pytest.approx(1 / 3)
    assert second.average_rating == pytest.approx((3 * 1 + 6 * 5) / 9)
    assert (third.average_rating, third.rated, third.low_rating_share) == (None, 0, 0.0)


def test_rank_gaps_frequency_counts_but_sublinearly():
    bad = {"answered_by_bot": False, "escalated": False, "no_article_matched": True, "rating": 3}
    half_bad = [bad, {**bad, "no_article_matched": False}]
    outcomes = [bad] * 4 + half_bad * 8  # accepts mappings too
    rare = _cluster("rare but all unmatched", range(4))
    common = _cluster("common, half unmatched", range(4, 20))
    gaps = rank_gaps([rare, common], outcomes)
    # rare: sqrt(4) x 0.5 = 1.0; common: sqrt(16) x 0.25 = 1.0 -> tie, larger first
    assert [g.score for g in gaps] == pytest.approx([1.0, 1.0])
    assert gaps[0].cluster is common
    # One more pair of questions and the common topic outranks the rare one.
    outcomes += half_bad
    common_bigger = _cluster("common", range(4, 22))
    top = rank_gaps([rare, common_bigger], outcomes)[0]
    assert top.cluster is common_bigger
    assert top.score == pytest.approx(math.sqrt(18) * 0.25)


def test_rank_gaps_leaves_out_topics_served_well_and_counts_low_ratings():
    fine = QuestionOutcome(answered_by_bot=True, escalated=False, no_article_matched=False)
    unhappy = QuestionOutcome(
        answered_by_bot=True, escalated=False, no_article_matched=False, rating=2
    )
    happy = _cluster("happy", range(4))
    grumpy = _cluster("grumpy", range(4, 8))
    gaps = rank_gaps([happy, grumpy], [fine] * 4 + [unhappy] * 4)
    # Rating 2 is low (<= 2 of 5): sqrt(4) x 0.2 x 1 = 0.4; "happy" scores 0, not a gap.
    assert [(g.cluster.label, g.score) for g in gaps] == [("grumpy", pytest.approx(0.4))]
    assert gaps[0].low_rating_share == 1.0
