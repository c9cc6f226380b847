"""Question clustering: time and peak memory of `analytics.clustering.cluster_questions`.

    .venv/bin/python bench/clustering.py [--questions 100000] [--seed 0] [--repeat 3]

Generates synthetic customer questions (fixed seed) from 200 topics, each a (verb, object)
pair such as "return / hiking boots" or "退货 / 登山鞋", asked in one language (150 English
topics, 50 Chinese), with Zipf-like topic frequencies. A topic's questions are paraphrases:
one of several templates, optional filler words, order numbers and PII placeholders
([EMAIL], [PHONE]). Runs the offline TF-IDF path
(no embeddings), then prints:
  time    - wall time of cluster_questions: each of --repeat runs, their median and slowest
  memory  - tracemalloc peak of a second, traced run (Python + numpy allocations) and the
            process's max RSS (resource.getrusage) after both runs
  quality - purity: the share of clustered questions whose cluster's majority topic is their
            own topic and how many questions fell into "other".
"""

import argparse
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analytics.clustering import cluster_questions

EN_VERBS = [
    "return",
    "track",
    "cancel",
    "exchange",
    "pay for",
    "ship",
    "order",
    "repair",
    "wash",
    "resize",
]
ZH_VERBS = ["退货", "查询物流", "取消", "换货", "付款", "发货", "订购", "维修", "清洗", "换尺码"]
EN_OBJECTS = [
    "hiking boots",
    "rain jacket",
    "tent",
    "sleeping bag",
    "backpack",
    "water bottle",
    "trekking poles",
    "headlamp",
    "fleece",
    "gloves",
    "camping stove",
    "kayak",
    "bike helmet",
    "climbing rope",
    "ski goggles",
    "snowshoes",
    "thermos",
    "hammock",
    "compass",
    "sunglasses",
]
ZH_OBJECTS = [
    "登山鞋",
    "雨衣",
    "帐篷",
    "睡袋",
    "背包",
    "水壶",
    "登山杖",
    "头灯",
    "抓绒衣",
    "手套",
    "炉具",
    "皮划艇",
    "头盔",
    "登山绳",
    "滑雪镜",
    "雪鞋",
    "保温杯",
    "吊床",
    "指南针",
    "太阳镜",
]
EN_TEMPLATES = [
    "How do I {v} my {o}?",
    "can i {v} the {o} I bought",
    "Where can I {v} {o}",
    "is it possible to {v} a {o} please",
    "help, I need to {v} my {o}!!",
    "{v} {o}?",
    "What's the way to {v} the {o} from order #{n}",
    "I want to {v} the {o}, my email is [EMAIL]",
    "Hi, how can I {v} {o}? call me at [PHONE]",
]
ZH_TEMPLATES = [
    "我的{o}怎么{v}？",
    "请问{o}可以{v}吗",
    "{o}{v}要多久？",
    "我想{v}{o}",
    "怎么{v}刚买的{o}",
    "订单{n}的{o}能{v}吗？我的邮箱[EMAIL]",
    "你好，{o}如何{v}",
]
EN_FILLERS = ["", "", "", "hello ", "hi there, ", "quick question: ", "sorry, "]
ZH_FILLERS = ["", "", "", "你好，", "请问一下，", "麻烦问下，"]


def generate(count: int, seed: int) -> tuple[list[str], list[tuple[int, str]]]:
    rng = random.Random(seed)
    topics = [(v, o) for v in range(len(EN_VERBS)) for o in range(len(EN_OBJECTS))]
    weights = [1 / (rank + 1) ** 0.7 for rank in range(len(topics))]  # some topics are common
    texts: list[str] = []
    truth: list[tuple[int, str]] = []
    for topic in rng.choices(range(len(topics)), weights=weights, k=count):
        verb, obj = topics[topic]
        number = rng.randint(10000, 99999)
        if topic % 4:  # three topics in four are asked in English
            template = rng.choice(EN_TEMPLATES)
            text = rng.choice(EN_FILLERS) + template.format(
                v=EN_VERBS[verb], o=EN_OBJECTS[obj], n=number
            )
            truth.append((topic, "en"))
        else:
            template = rng.choice(ZH_TEMPLATES)
            text = rng.choice(ZH_FILLERS) + template.format(
                v=ZH_VERBS[verb], o=ZH_OBJECTS[obj], n=number
            )
            truth.append((topic, "zh"))
        texts.append(text)
    return texts, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="Timed (untraced) runs.")
    args = parser.parse_args()

    started = time.perf_counter()
    texts, truth = generate(args.questions, args.seed)
    print(
        f"generated {len(texts):,} questions in {time.perf_counter() - started:.2f} s "
        f"({sum(lang == 'zh' for _, lang in truth):,} Chinese)"
    )
    print(f"cpus: {os.cpu_count()}")

    samples = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        clusters = cluster_questions(texts, random_state=0)
        samples.append(time.perf_counter() - started)
        print(f"  run: {samples[-1]:.2f} s")
    elapsed = statistics.median(samples)

    clustered = sum(cluster.size for cluster in clusters)
    majority = sum(Counter(truth[i] for i in c.members).most_common(1)[0][1] for c in clusters)
    print(
        f"cluster_questions: median {elapsed:.2f} s (slowest {max(samples):.2f} s), "
        f"{len(clusters)} clusters, "
        f"{clustered:,} questions clustered, {len(texts) - clustered:,} in 'other'"
    )
    print(f"purity: {majority / max(clustered, 1):.3f} ({len(set(truth))} true topics)")
    for cluster in clusters[:5]:
        print(f"  {cluster.size:6,}  {cluster.label}")

    tracemalloc.start()
    started = time.perf_counter()
    again = cluster_questions(texts, random_state=0)
    traced = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert again == clusters, "cluster_questions is not deterministic"
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"tracemalloc peak: {peak / 2**20:.1f} MiB (traced run {traced:.2f} s, same result)")
    print(f"max RSS: {max_rss / 2**10:.1f} MiB")


if __name__ == "__main__":
    main()
