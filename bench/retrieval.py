"""Knowledge-base retrieval: index build time and memory, and per-query search latency.

Builds `bots.retrieval.KnowledgeIndex` directly from synthetic articles (no database) and
measures:
  build  - wall time to build the index over --articles articles (and, for comparison, the
           time with a per-word memo in front of the Snowball stemmer)
  memory - tracemalloc peak while building (a second, traced build, through that memo so
           tracemalloc's overhead stays small; the index is checked to be the same) and what
           the finished index keeps
  search - per-query time of `KnowledgeIndex.search(query, limit=4)` over --queries queries
Prints median, p90, p99 and max in milliseconds; the target is a median under 2 ms.

    .venv/bin/python bench/retrieval.py [--articles 10000] [--queries 2000]

The text is synthetic but shaped like a real shop's help centre, with a fixed seed:
  - 90% English articles: 3-6 word titles, ~120-word bodies and 2-4 tags drawn with Zipf-like
    frequencies (weight 1/rank) from a few hundred outdoor-shop / customer-service words,
    function words ranked first as in real English (the tokenizer drops them as stop words);
  - 10% Chinese (zh-hans) articles built the same way from a few hundred common Chinese
    characters in ~170 words, no spaces, with Chinese punctuation;
  - queries: 80% English questions of 2-8 words, 20% Chinese questions; about one in five
    contains a word or character absent from the index (brand names, typos, off-topic words).
"""

import argparse
import itertools
import os
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

import django  # noqa: E402

django.setup()

from bots import retrieval  # noqa: E402
from bots.retrieval import KnowledgeIndex  # noqa: E402

LIMIT = 4
TARGET_MEDIAN_MS = 2.0
CHINESE_SHARE = 0.10
CHINESE_QUERY_SHARE = 0.20
ABSENT_SHARE = 0.20

# Ranked roughly by how often a help centre uses them: function words first, then the
# shop's everyday vocabulary, then rarer product and policy words.
FUNCTION_WORDS = """
the to and you your a of for is in we our it on be with can are if or will this that at as
from by not have an please all any when days more may which each also
""".split()

SHOP_WORDS = """
order orders return returns shipping delivery refund account item items product products
free size store customer service policy payment card exchange business within time
number email address tracking warranty gift receipt price online package
original condition standard express international full credit purchase buy new check
contact support team help information available option options shipped ship ships cost
costs fee fees charge charged pick pickup local rental rent repair repairs boots boot
jacket jackets tent tents backpack backpacks sleeping bag bags shoes hiking trail running
climbing rope harness helmet ski skis snowboard bike bikes kayak paddle gear equipment
waterproof insulated down fleece wool socks gloves hat layer layers rain shell pants
shorts shirt base camping stove fuel lantern headlamp battery batteries water bottle filter
tracker watch compass map trekking poles pole carabiner chalk crampons ice axe snowshoes
sizing fit fits width length chart guide measure measurements small medium large wide
narrow women men kids youth color colors style model season sale sales discount discounts
coupon code promo member members membership rewards points dividend annual loyalty
newsletter subscribe unsubscribe cancel cancelled cancellation change changes update
updated address billing invoice invoices tax taxes vat customs duties import carrier
courier ups fedex usps dhl post postal box lockers signature damaged damage defective
missing lost stolen wrong late delayed delay estimate estimated arrive arrival window
weekend holiday holidays hours open close closed location locations nearest warehouse
stock backorder backordered preorder restock notify notification alert available
unavailable limited quantity quantities bulk wholesale team group corporate school club
price match adjustment adjustments lower higher difference paypal visa mastercard amex
apple pay klarna installment installments financing declined authorization pending hold
verify verification password login sign reset profile history wishlist cart checkout
secure security privacy data personal cookie cookies settings preferences language
currency region country countries canada mexico europe shipping label prepaid drop
service center technician inspection clean cleaning care wash washing dry drying
waterproofing reproofing resole resoling zipper zippers seam seams patch patches stitch
buckle strap straps frame hipbelt sternum torso volume liters capacity weight grams
ounces ultralight durable lifetime guarantee claim claims proof photo photos form submit
approved denied processing processed refunded store credit voucher balance expire
expired expiration transfer online chat phone call agent hours reply response ticket
""".split()

# Plausible query words the index never contains: brands, typos, off-topic requests.
ABSENT_WORDS = """
zorblax shiping refnud recieve hoverboard cryptocurrency bitcoin telescope xylophone
sushi mortgage quantum jetpack patagucci nortface salomonn blockchain horoscope dentist
lawnmower piano saxophone submarine trampoline
""".split()

QUESTION_STARTS = [
    ["how", "do", "i"],
    ["can", "i"],
    ["what", "is", "the"],
    ["where", "is", "my"],
    ["do", "you"],
    ["is", "there", "a"],
    ["how", "long", "does"],
    ["when", "will", "my"],
    [],
    [],
]

# Common characters of a Chinese shop's help pages, mostly as the words they form.
CHINESE_WORDS = """
订单 退货 退款 发货 快递 物流 运费 包邮 免费 配送 地址 修改 取消 支付 付款 微信 支付宝
银行卡 信用卡 发票 会员 积分 优惠券 折扣 活动 价格 保价 尺码 尺寸 鞋码 大小 合适 颜色
款式 商品 产品 质量 问题 售后 客服 人工 联系 电话 时间 工作日 小时 天内 收到 签收 拒收
包裹 包装 损坏 破损 缺少 错发 漏发 换货 维修 保修 保修期 质保 三包 鉴定 检测 清洗 保养
防水 保暖 透气 羽绒 冲锋衣 抓绒 速干 登山鞋 徒步鞋 登山包 背包 帐篷 睡袋 防潮垫 炉头 气罐
头灯 电池 水壶 净水器 登山杖 手套 帽子 袜子 滑雪 滑雪板 骑行 自行车 头盔 攀岩 绳索 安全带
露营 户外 装备 租赁 租用 押金 门店 线下 自提 仓库 库存 缺货 预售 到货 通知 提醒 账户 账号
密码 登录 注册 手机号 验证码 隐私 个人 信息 安全 海外 国际 关税 清关 海关 港澳台 偏远 地区
省份 城市 上门 取件 寄回 原包装 吊牌 标签 未使用 影响 二次 销售 七天 无理由 十五天 三十天
一年 两年 终身 申请 审核 通过 拒绝 处理 完成 原路 返回 到账 余额 礼品卡 兑换 有效期 过期
使用 规则 说明 步骤 方法 操作 页面 点击 选择 填写 提交 上传 照片 凭证 订单号 单号 查询 跟踪
""".split()

CHINESE_FUNCTION = "的 了 是 在 和 我 您 你 可以 请 如果 需要 我们 会 就 也 都 要".split()
ABSENT_CHINESE = """
火箭 量子 股票 彩票 菜谱 钢琴 牙医 房贷 宠物 星座 游戏机 外卖 咖啡 电影票 机票 酒店
""".split()
CHINESE_QUESTION_ENDS = ["吗？", "怎么办？", "多久？", "怎么弄？", "？", "呢？", ""]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(name: str, values: list[float]) -> str:
    return (
        f"{name:<8} n={len(values):<5} median={statistics.median(values):7.3f}  "
        f"p90={percentile(values, 90):7.3f}  p99={percentile(values, 99):7.3f}  "
        f"max={max(values):7.3f}"
    )


class Zipf:
    """Draws from a ranked vocabulary with weight 1/rank."""

    def __init__(self, words: list[str], rng: random.Random) -> None:
        self.words = list(dict.fromkeys(words))  # keep rank order, drop repeats
        self.cum = list(itertools.accumulate(1 / rank for rank in range(1, len(self.words) + 1)))
        self.rng = rng

    def draw(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cum, k=k)


def english_article(rng: random.Random, words: Zipf, content: Zipf) -> tuple[str, str, list]:
    title = " ".join(content.draw(rng.randint(3, 6))).title()
    sentences = []
    remaining = rng.randint(100, 140)
    while remaining > 0:
        n = min(remaining, rng.randint(8, 18))
        sentence = " ".join(words.draw(n))
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".....?!"))
        remaining -= n
    return title, " ".join(sentences), content.draw(rng.randint(2, 4))


def chinese_article(rng: random.Random, words: Zipf, content: Zipf) -> tuple[str, str, list]:
    title = "".join(content.draw(rng.randint(2, 4)))
    parts = []
    remaining = rng.randint(150, 190)
    while remaining > 0:
        n = min(remaining, rng.randint(6, 14))
        clause = "".join(words.draw(n))
        parts.append(clause + rng.choice("，，，。。；"))
        remaining -= n
    return title, "".join(parts).rstrip("，；") + "。", content.draw(rng.randint(2, 3))


def make_articles(n: int, seed: int) -> list[tuple[int, str, str, str, list]]:
    rng = random.Random(seed)
    english = Zipf(FUNCTION_WORDS + SHOP_WORDS, rng)
    content = Zipf(SHOP_WORDS, rng)
    chinese = Zipf(CHINESE_FUNCTION + CHINESE_WORDS, rng)
    chinese_content = Zipf(CHINESE_WORDS, rng)
    articles = []
    for article_id in range(1, n + 1):
        if rng.random() < CHINESE_SHARE:
            title, body, tags = chinese_article(rng, chinese, chinese_content)
            language = "zh-hans"
        else:
            title, body, tags = english_article(rng, english, content)
            language = "en"
        articles.append((article_id, title, body, language, tags))
    return articles


def make_queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    content = Zipf(SHOP_WORDS, rng)
    chinese = Zipf(CHINESE_WORDS, rng)
    queries = []
    for _ in range(n):
        absent = rng.random() < ABSENT_SHARE
        if rng.random() < CHINESE_QUERY_SHARE:
            picked = chinese.draw(rng.randint(2, 5))
            if absent:
                picked.insert(rng.randrange(len(picked) + 1), rng.choice(ABSENT_CHINESE))
            prefix = rng.choice(["", "请问", "我想问一下", "你好，", ""])
            queries.append(prefix + "".join(picked) + rng.choice(CHINESE_QUESTION_ENDS))
            continue
        total = rng.randint(2, 8)
        start = rng.choice([s for s in QUESTION_STARTS if len(s) <= total - 1])
        picked = content.draw(total - len(start))
        if absent:
            picked[rng.randrange(len(picked))] = rng.choice(ABSENT_WORDS)
        text = " ".join(start + picked)
        queries.append(text[0].upper() + text[1:] + ("?" if start else ""))
    return queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    articles = make_articles(args.articles, args.seed)
    queries = make_queries(args.queries, args.seed + 1)
    chinese_articles = sum(1 for a in articles if a[3] == "zh-hans")
    body_words = statistics.mean(len(a[2].split()) for a in articles if a[3] == "en")

    retrieval._stem.cache_clear()
    started = time.perf_counter()
    index = KnowledgeIndex(articles)
    build_s = time.perf_counter() - started

    # Memory of a second build, traced; the stem memo starts empty again so it counts too.
    retrieval._stem.cache_clear()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    traced_index = KnowledgeIndex(articles)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced_index

    for query in queries[:50]:  # warm-up: stemmer, caches
        index.search(query, limit=LIMIT)
    timings = []
    empty = 0
    for query in queries:
        started = time.perf_counter_ns()
        found = index.search(query, limit=LIMIT)
        timings.append((time.perf_counter_ns() - started) / 1e6)
        empty += not found
    chinese_queries = sum(1 for q in queries if not q.isascii())

    mib = 1024 * 1024
    print(
        f"retrieval: KnowledgeIndex over {len(articles)} articles "
        f"({len(articles) - chinese_articles} English of ~{body_words:.0f} words, "
        f"{chinese_articles} Chinese), {len(index.postings)} distinct terms, "
        f"{sum(len(p) for p in index.postings.values())} postings"
    )
    print(
        f"build    {build_s:.2f} s   "
        f"tracemalloc peak {(peak - baseline) / mib:.1f} MiB, index keeps "
        f"{(kept - baseline) / mib:.1f} MiB"
    )
    print(
        f"search(limit={LIMIT}), {len(queries)} queries ({len(queries) - chinese_queries} "
        f"English, {chinese_queries} Chinese, {empty} with no match), milliseconds:"
    )
    print(report("search", timings))
    median = statistics.median(timings)
    verdict = "met" if median < TARGET_MEDIAN_MS else "NOT met"
    print(f"target: median under {TARGET_MEDIAN_MS:.0f} ms -> {verdict} ({median:.3f} ms)")


if __name__ == "__main__":
    main()
