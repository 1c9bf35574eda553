#!/usr/bin/env python3
"""Generates tests/data/tokenizer_corpus.json (deterministic; run from the repo root).

    python3 examples/components/bert-tokenizer/tools/gen_corpus.py tests/data/tokenizer_corpus.json

Each case is {"text": str, "pair": str | None, "max_length": int}. The committed JSON is
the source of truth; this script only documents how it was made.
"""
import json
import random
import sys

rng = random.Random(20240607)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the stage.",
    "Machine learning models are deployed behind an inference server.",
    "The weather in London is rainy again today.",
    "She sells sea shells by the sea shore.",
    "WebAssembly components run in a sandbox with explicit capabilities.",
    "I can't believe it's already the end of the year!",
    "Tokenization splits text into subword units before embedding.",
    "The stock market fell sharply after the announcement.",
    "Please remember to bring your umbrella tomorrow morning.",
    "He walked into the room, sat down, and said nothing for an hour.",
    "Photosynthesis converts light energy into chemical energy.",
    "The children were playing football in the park after school.",
    "Our latency budget for pre-processing is under one millisecond.",
    "The orchestra performed Beethoven's Ninth Symphony flawlessly.",
    "Unbelievably, the antidisestablishmentarianism debate resurfaced.",
    "Researchers published a paper on transformer architectures.",
    "A cat sat on the mat and looked out of the window.",
    "The museum opens at nine and closes at five on weekdays.",
    "Interoperability between runtimes remains a challenging problem.",
]

PLAIN = SENTENCES + [
    "Hello world",
    "hello",
    "A",
    "a b c d e f g",
    "This is a test.",
    "How are you doing today?",
    "The embeddings are normalised to unit length.",
    "Conduit serves machine learning pipelines.",
    "The lazy dog sleeps.",
    "Transformers use self-attention.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Two plus two equals four.",
    "I love programming in Rust and Python.",
    "Sentence embeddings capture semantic similarity.",
    "electroencephalographically",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "unaffordable uncharacteristically counterrevolutionaries",
    "tokenizer tokenizers tokenized tokenizing retokenization",
]

PUNCT = [
    "Hello, world! How's it going?!?",
    "Wait... what?! No -- really??",
    "(parentheses) [brackets] {braces} <angles>",
    "\"Double quotes\" and 'single quotes' and `backticks`",
    "a+b=c; x*y/z^2 % 3 | ~not & and",
    "$100 @home #hashtag ^caret _under_score_",
    "!!!!!!!!!!",
    "...---...",
    "e.g. i.e. etc. vs. Mr. Mrs. Dr.",
    "semi;colon:colon,comma.period",
    "“Smart quotes” and ‘single smart’ — em dash – en dash …",
    "«guillemets» ‹single› „German” ‚quotes‘",
    "¡Hola! ¿Qué tal?",
    "§1.2 ¶3 † ‡ • ‰ ′ ″ ※",
    "C++ / C# / F# / .NET / Node.js",
    "key=value&other=thing?x=1#frag",
    "a/b\\c|d",
    "::: ;;; ,,, ___ --- +++",
    "「日本語の括弧」『二重』【隅付き】",
    "中文标点：，。！？、；",
    "He said: 'I'll be there @ 5pm (maybe).'",
    "####",
    "##ing ##s",
]

ACCENTS = [
    "café",
    "naïve",
    "Ångström",
    "Zürich",
    "Crème brûlée is a French dessert.",
    "résumé vs resume",
    "São Paulo, Bogotá, Reykjavík, Kraków, Łódź",
    "Ñandú piñata jalapeño",
    "Straße Maß Fuß ß ẞ",
    "Ærøskøbing Øresund Æsir",
    "façade coöperate naïveté",
    "Dvořák Škoda Čech Žižek",
    "Tiếng Việt có dấu: Nguyễn, Phạm, Hồ Chí Minh",
    "Ḁ ḁ ẞ ǅ ǆ Ǉ",
    "e\u0301 vs \u00e9 (combining vs precomposed)",
    "a\u0308o\u0308u\u0308 combining umlauts",
    "Z\u0351\u0350\u0352a\u0300\u0301l\u0303\u0304g\u0305o\u0306 text",
    "İstanbul ılık ışık İI ıi",
    "ﬁnancial ﬂow ﬀ ﬃ",
    "Ⅻ Ⅳ ⅷ ①②③ Ⓐⓑ",
]

MIXED_CASE = [
    "ThIs Is MiXeD cAsE",
    "HELLO WORLD",
    "iPhone MacBook GitHub YouTube",
    "CamelCaseIdentifierNames and snake_case_names",
    "NASA FBI CIA UNESCO",
    "McDonald's O'Reilly MacArthur",
    "ΣΊΣΥΦΟΣ Σίσυφος ΟΔΥΣΣΕΥΣ",
    "ǅemal ǈubljana",
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ １２３",
    "XMLHttpRequest HTTPServer URLEncoder",
]

NUMBERS = [
    "3.14159265358979323846",
    "1,234,567.89",
    "The year 2024 had 366 days.",
    "Call 555-0199 or +1 (415) 555-2671.",
    "0x1F600 0b1010 0o777 1e-10 6.02e23",
    "12:30pm on 2023-11-05T08:15:00Z",
    "version 1.2.3-beta+build.45",
    "١٢٣٤٥ ०१२३४ 一二三 ½ ¾ ² ³",
    "100% of 50 is 50; 25° C = 77° F",
    "99999999999999999999999999999",
    "1st 2nd 3rd 4th 21st 101st",
    "$3.50 €20 £15 ¥1000 ₹500 ₿0.01",
]

URLS = [
    "https://www.example.com/path/to/page?query=1&x=y#section",
    "Visit http://conduit.dev or https://github.com/conduit-ml/conduit for docs.",
    "email me at john.doe+spam@example.co.uk please",
    "ftp://files.example.org/pub/archive.tar.gz",
    "user@localhost:8080/api/v2/models/minilm/infer",
    "mailto:support@conduit.ai?subject=Hello%20World",
    "www.some-site.io/~user/index.html",
    "git@github.com:owner/repo.git",
    "https://例え.jp/パス?q=テスト",
    "C:\\Users\\Admin\\Documents\\file.txt",
    "/usr/local/bin/python3 --version",
    "@user_name #HashTag https://t.co/AbC123",
]

CJK = [
    "我爱自然语言处理。",
    "今天天气很好，我们去公园散步吧。",
    "北京是中华人民共和国的首都。",
    "機器學習是人工智慧的一個分支。",
    "東京は日本の首都です。",
    "ひらがなとカタカナと漢字が混ざった文章です。",
    "私はコーヒーが大好きです",
    "カタカナ コンピューター プログラミング",
    "ｶﾀｶﾅ半角",
    "안녕하세요, 만나서 반갑습니다.",
    "한국어 자연어 처리는 재미있습니다",
    "서울특별시 강남구",
    "Mixed English and 中文 and 日本語 and 한국어 text.",
    "𠀀𠀁 𪜀 CJK extension B and C characters",
    "豈 更 車 CJK compatibility ideographs",
    "野口里佳 Noguchi Rika",
    "〇一二三四五六七八九十",
    "ㄅㄆㄇㄈ bopomofo",
]

SCRIPTS = [
    "مرحبا بالعالم",
    "اللغة العربية جميلة جدا.",
    "القرآنُ الكريمُ",
    "Привет, мир!",
    "Москва — столица России.",
    "Ёлка ЁЖИК ёж",
    "Γειά σου Κόσμε",
    "Η γλώσσα είναι όμορφη. ΆΈΉΊΌΎΏ",
    "שלום עולם",
    "नमस्ते दुनिया",
    "हिन्दी भाषा बहुत सुंदर है।",
    "สวัสดีชาวโลก",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Გამარჯობა ქართული ენა",
    "Բարեւ աշխարհ",
    "Ꭰ Ꭱ Ꭲ ꭰ ꭱ Cherokee",
    "ሰላም ዓለም",
    "Xin chào thế giới",
    "Ukrainian: Україна, їжак, ґанок",
    "Türkçe: çağrı, şeker, öğrenci",
]

EMOJI = [
    "I love pizza 🍕🍕🍕",
    "😀😃😄😁😆😅😂🤣",
    "Family: 👨‍👩‍👧‍👦 and flags 🇺🇸🇯🇵🇫🇷",
    "Thumbs up 👍🏽 👍🏿 skin tones",
    "🥲 🫠 🫶 newer emoji",
    "❤️ ♥ ☺️ ✔️ ✨",
    "emoji🙂glued🙂to🙂words",
    "Deploy 🚀 to prod 🔥 fix 🐛",
    "⌚⌛⏰ ☀☁☂ ♠♣♥♦",
    "🏳️‍🌈 🏴‍☠️ 🧑‍💻 keycap 1️⃣ #️⃣",
]

WHITESPACE = [
    "tab\tseparated\tvalues",
    "line\nbreaks\r\nand\rreturns",
    "non\u00a0breaking\u00a0space",
    "zero\u200bwidth\u200bspace",
    "\ufeffbyte order mark at start",
    "word\ufeffjoiner",
    "vertical\x0btab and form\x0cfeed",
    "next\u0085line",
    "null\x00char and \x01\x02\x03 controls \x7f del",
    "replacement \ufffd char",
    "em\u2003space and thin\u2009space and ideographic\u3000space",
    "soft\u00adhyphen",
    "zwj\u200dand zwnj\u200c",
    "direction \u200emarks\u200f and \u202aembedding\u202c",
    "private \ue000\uf8ff use",
    "   leading and trailing spaces   ",
    "multiple     internal      spaces",
    "\t\n mixed \r\n whitespace \t",
    "line separator\u2028paragraph separator\u2029end",
    "ogham\u1680space narrow\u202fnbsp",
    "unit\x1fseparator record\x1eseparator",
]

SPECIAL = [
    "[CLS] already has special tokens [SEP]",
    "masked [MASK] language model",
    "[PAD][PAD][UNK]",
    "lowercase [cls] [sep] [mask] are not special",
    "glued[SEP]tokens[MASK]here",
    "[CLS",
    "[ SEP ]",
]

EMPTYISH = ["", " ", "   ", "\t", "\n\n", "\u00a0", "\u200b", "\u3000 \u2003", "\x00", "."]


def long_text(n_sentences):
    return " ".join(rng.choice(SENTENCES) for _ in range(n_sentences))


def long_word(n, alphabet="abcdefghijklmnopqrstuvwxyz"):
    return "".join(rng.choice(alphabet) for _ in range(n))


LONG = [
    long_text(12),
    long_text(20),
    long_text(40),
    " ".join(["word"] * 300),
    ", ".join(str(i) for i in range(200)),
    "你好世界" * 60,
    "こんにちは世界 " * 40,
    "Привет мир! " * 50,
    "🙂 " * 200,
    "a " * 600,
    long_text(8) + " 东京 " + long_text(8),
]

LONG_WORDS = [
    "a" * 100,
    "a" * 101,
    "b" * 150 + " short words after",
    "short before " + long_word(120) + " after",
    long_word(99),
    "é" * 101,
    "é" * 100,
    "x" * 500,
    "https://example.com/" + "very-long-path-segment-" * 8,
    "ab" * 60 + "!" + "cd" * 60,
    "漢" * 150,
]

PAIRS = [
    ("The company Conduit is based in the Bay Area",
     "Conduit's headquarters are situated in Mountain View"),
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is playing a guitar.", "A woman is slicing an onion."),
    ("How old are you?", "What is your age?"),
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("The cat sits outside", "The dog plays in the garden"),
    ("I love pasta", "Do you like pizza?"),
    ("Hello", "World"),
    ("", "only the second side"),
    ("only the first side", ""),
    ("", ""),
    ("café naïve", "Zürich Ångström"),
    ("我爱北京", "I love Beijing"),
    ("东京是日本的首都。", "東京は日本の首都です。"),
    ("Привет", "Hello"),
    ("emoji 🚀", "rocket"),
    ("[CLS] inner special", "[SEP] in pair"),
    ("tab\tin first", "nbsp\u00a0in second"),
    ("a" * 101, "b" * 5),
    ("Is this a question?", "Yes, it is."),
]


def build():
    cases = []

    def add(text, pair=None, max_length=128):
        cases.append({"text": text, "pair": pair, "max_length": max_length})

    for group in (PLAIN, PUNCT, ACCENTS, MIXED_CASE, NUMBERS, URLS, CJK, SCRIPTS, EMOJI,
                  WHITESPACE, SPECIAL, EMPTYISH):
        for t in group:
            add(t)
    # A spread of max_length values over the same kinds of text.
    small = [8, 16, 32, 64, 256]
    for i, t in enumerate(PLAIN[:10] + PUNCT[:5] + CJK[:5] + ACCENTS[:5] + EMOJI[:5]):
        add(t, None, small[i % len(small)])
    for t in EMPTYISH[:3]:
        add(t, None, 8)
    # Tiny lengths for single texts: only [CLS] [SEP] (2) or one token (3) survive.
    add(SENTENCES[0], None, 2)
    add(SENTENCES[1], None, 3)
    add("", None, 2)
    add(SENTENCES[2], None, 5)
    add(SENTENCES[3], None, 512)
    for t in LONG:
        add(t)
    for t, n in zip(LONG, [8, 16, 32, 64, 256, 512, 64, 32, 16, 256, 512]):
        add(t, None, n)
    for t in LONG_WORDS:
        add(t)
    add(LONG_WORDS[1], None, 16)
    # Pairs.
    for a, b in PAIRS:
        add(a, b)
    for (a, b), n in zip(PAIRS[:10], [8, 16, 32, 64, 256, 8, 16, 32, 64, 256]):
        add(a, b, n)
    # Long pairs: both sides long, so longest_first truncation alternates between them.
    for n in (128, 128, 64, 32, 16, 256, 512, 9, 10, 3, 4, 5):
        add(long_text(rng.randint(6, 14)), long_text(rng.randint(6, 14)), n)
    # One side long, the other short (only the long side is cut).
    add(long_text(20), "short second sentence", 128)
    add("short first sentence", long_text(20), 128)
    add(long_text(20), "short", 16)
    add("short", long_text(20), 16)
    # Sides of nearly equal token length (odd/even budgets).
    add(" ".join(["alpha"] * 70), " ".join(["beta"] * 71), 128)
    add(" ".join(["alpha"] * 71), " ".join(["beta"] * 70), 127)
    add(" ".join(["alpha"] * 64), " ".join(["beta"] * 64), 131)
    add(" ".join(["alpha"] * 5), " ".join(["beta"] * 200), 64)
    add(" ".join(["alpha"] * 200), " ".join(["beta"] * 5), 64)
    add(" ".join(["alpha"] * 40), " ".join(["beta"] * 40), 64)
    # Random mixes of everything, some as pairs.
    pool = (PLAIN + PUNCT + ACCENTS + MIXED_CASE + NUMBERS + URLS + CJK + SCRIPTS + EMOJI
            + WHITESPACE + SPECIAL)
    for i in range(30):
        text = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 6)))
        pair = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) if i % 3 == 0 else None
        n = rng.choice([128, 128, 128, 128, 8, 16, 32, 64, 256])
        add(text, pair, n)
    return cases


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/tokenizer_corpus.json"
    cases = build()
    assert len(cases) >= 220, len(cases)
    target = ("The company Conduit is based in the Bay Area",
              "Conduit's headquarters are situated in Mountain View")
    assert any((c["text"], c["pair"]) == target for c in cases)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
