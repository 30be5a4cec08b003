#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Regenerates the tokenizer test corpus and llama.cpp's answers for it.

    . .venv/bin/activate && python scripts/gen_tokenizer_golden.py

Writes, under tests/data/tokenizer/:
  corpus.txt      the test strings, one per line as "s <escaped>"
  smollm2.golden  llama.cpp's view of models/SmolLM2-135M-Instruct.Q4_1.gguf
  gemma3.golden   the same for models/gemma-3-270m-q4_k_m.gguf

Strings are escaped so that any bytes fit on one line: printable ASCII stands
for itself except backslash ("\\\\"); "\\n", "\\t", "\\r" and "\\xHH" cover the
rest, and a space at the end of a line is written "\\x20" so that editors
cannot eat it.

A golden file has one record per line:
  meta n_vocab=N bos=B eos=E add_bos=0|1 add_eos=0|1
  eog ID...                          every id llama_vocab_is_eog accepts
  attr ID:ATTR...                    llama_token_attr of every id whose attr is not NORMAL (4)
  piece SPECIAL BLOCK HEX            FNV-1a 64 of ids [256*BLOCK, 256*BLOCK+256) rendered by
                                     llama_token_to_piece(lstrip 0, special): per id, its
                                     length as 4 little-endian bytes, then its bytes
  ids INDEX p0|p1 ID...              Llama.tokenize(corpus[INDEX], add_bos=True,
                                     special=False|True); "SKIP" where llama.cpp aborts
  detok INDEX 0|1 ESCAPED            llama_detokenize(p1 ids, remove_special=False,
                                     unparse_special=0|1), for a sample of strings

smollm2_pre.golden checks the other pre-tokenizers on the same vocabulary: the
SmolLM2 metadata is copied into a tensor-less GGUF with tokenizer.ggml.pre
replaced, and llama.cpp tokenizes every corpus string of at most
PRE_MAX_BYTES bytes (parse_special off) under it:
  pre NAME                           the following ids lines are for this pre
  ids INDEX p0 ID...                 ("=" when equal to smollm2.golden's p0 ids)

The corpus is fixed by hand-written strings plus pseudo-random ones from a
seeded generator, so rerunning this script reproduces the same files for the
same llama.cpp.
"""
import ctypes
import os
import random
import sys

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
MODELS = [
    ("smollm2.golden", os.environ.get("INFERD_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))),
    ("gemma3.golden", os.environ.get("INFERD_GEMMA_MODEL", os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))),
]


def u(s):
    return s.encode("utf-8")


# ---------------------------------------------------------------- corpus ----

PROSE = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, "
    "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.",
    "In the beginning God created the heaven and the earth.",
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\nThe slings and arrows of outrageous fortune,",
    "I can't believe it's not butter! We'll see, they've said, you're right, I'd go, he'll come.",
    "DON'T SHOUT. I'M HERE. WE'LL GO. THEY'VE LEFT. YOU'RE LATE. I'D KNOW. IT'S FINE.",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
    "rock 'n' roll, o'clock, y'all, ma'am, 'tis, '90s, the dog's bone, the dogs' bones",
    "Mr. Smith went to Washington D.C. on Jan. 5th, 2021 at 3:45 p.m.",
    "e.g. i.e. etc. vs. Dr. Prof. Ph.D. U.S.A. N.A.S.A.",
    "She said, \"Hello!\" and he replied, 'Goodbye.'",
    "What?! No way... Really??? Yes!!!",
    "This sentence has    multiple   spaces between   words.",
    "Trailing spaces   ",
    "   Leading spaces",
    "A",
    "a",
    " a",
    "I",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "The year 1984 was followed by 1985, and then 1986.",
    "Please respond in JSON format with the keys 'name' and 'age'.",
    "You are a helpful assistant. Answer concisely.",
    "Once upon a time, in a land far, far away, there lived a princess who loved to read books about dragons.",
    "Machine learning is a subset of artificial intelligence that focuses on algorithms that learn from data.",
    "Summarize the following article in three bullet points:\n\n- First point\n- Second point\n- Third point",
    "Q: What is the capital of France?\nA: Paris.",
    "User: hi\nAssistant: Hello! How can I help you today?",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.",
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n\r\n",
    "https://www.example.com/path/to/page?query=value&other=123#fragment",
    "mailto:someone@example.org, user.name+tag@sub.domain.co.uk",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "/usr/local/bin/python3 --version && echo $PATH",
    "#hashtag @mention $ticker %percent ^caret &amp *star (paren) [bracket] {brace} <angle> |pipe| ~tilde` backtick",
    "!!!???...,,,;;;:::---___===+++",
    "The café served crème brûlée and piña colada to the naïve façade-loving señor.",
    "Ångström, Øresund, Łódź, Škoda, Ærø, Þingvellir, Ðakovo, Straße, ǅemal",
    "CamelCaseWordsLikeThis and snake_case_words_like_this and kebab-case-words",
    "ALLCAPS lowercase MiXeD cAsE",
    "It's 5 o'clock somewhere; let's grab a coffee (or two).",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "the the the the the the the the the the",
    "1. First\n2. Second\n3. Third\n",
    "* bullet\n  * nested bullet\n    * deeper",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "> quoted text\n>> nested quote",
    "**bold** __underline__ *italic* `code` ~~strike~~",
    "Tab\tseparated\tvalues\tin\ta\trow",
    "Line one\nLine two\nLine three",
    "Windows\r\nline\r\nendings",
    "Old Mac\rline\rendings",
    "Paragraph one.\n\nParagraph two.\n\n\nParagraph three.",
    "The temperature is -5°C (23°F) today.",
    "Price: $1,299.99 (€1.199,00 / £999 / ¥150000)",
    "50% off! Buy 2, get 1 free.",
    "version 2.0.1-beta+build.123",
    "x = y + z * 2 - (a / b) % c",
    "user@host:~$ ls -la",
]

CODE = [
    "#include <stdio.h>\n\nint main(void) {\n    printf(\"Hello, world!\\n\");\n    return 0;\n}\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo(object):\n\tdef __init__(self, x):\n\t\tself.x = x\n\n\tdef __repr__(self):\n\t\treturn f'Foo({self.x!r})'\n",
    "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\nprint(arr.shape)",
    "const add = (a, b) => a + b;\nconsole.log(add(1, 2));\n",
    "function greet(name) {\n  return `Hello, ${name}!`;\n}",
    "fn main() {\n    let v: Vec<i32> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name ASC LIMIT 10;",
    "<!DOCTYPE html>\n<html>\n<head><title>Test</title></head>\n<body><p class=\"x\">Hi</p></body>\n</html>",
    "{\"name\": \"Alice\", \"age\": 30, \"tags\": [\"a\", \"b\"], \"nested\": {\"k\": null, \"t\": true}}",
    "#!/bin/bash\nfor i in $(seq 1 10); do\n  echo \"$i\"\ndone\n",
    "public static void main(String[] args) {\n    System.out.println(\"Hello\");\n}",
    "template <typename T>\nstd::vector<T> f(const std::vector<T>& v) { return v; }",
    "x := map[string]int{\"a\": 1}\nif v, ok := x[\"a\"]; ok {\n\treturn v\n}",
    "let mut s = String::new();\nstd::io::stdin().read_line(&mut s).unwrap();",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "if (x != NULL && x->next == NULL) { free(x); x = NULL; }",
    "lambda x: x ** 2 if x > 0 else -x",
    "a = [i for i in range(100) if i % 3 == 0]",
    "   indented with three spaces\n\tand a tab\n        and eight spaces",
    "        return self._cache.get(key, default)",
    "}\n}\n}\n",
    "))))]]]]}}}}",
    "<?php echo $var; ?>",
    "@decorator\ndef f(*args, **kwargs):\n    pass",
    "$ git commit -m \"Fix bug #123\" && git push origin main",
    "// comment\n/* block\n   comment */\n# python comment\n-- sql comment",
    "0x7fffffff 0b1010 0o777 1e-10 3.14f 1_000_000 42u64",
    "std::cout << \"value: \" << x << std::endl;",
    "matrix[i][j] += alpha * A[i][k] * B[k][j];",
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "struct point { int x, y; } p = { .x = 1, .y = 2 };",
    "print(\"\\t\\n\\r\\\\\")",
    "regex = r'^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\\.[a-zA-Z0-9-.]+$'",
    "query {\n  user(id: 1) {\n    name\n    friends { name }\n  }\n}",
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test\nspec:\n  containers:\n    - name: app\n      image: nginx:1.25",
    "[section]\nkey = value\nother_key = \"quoted value\"\n",
    "\\documentclass{article}\n\\begin{document}\n$E = mc^2$ and $\\int_0^\\infty e^{-x} dx = 1$\n\\end{document}",
    "<script>alert('xss')</script>",
    "df.groupby('col').agg({'x': 'sum', 'y': 'mean'}).reset_index()",
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    "main :: IO ()\nmain = putStrLn \"Hello\"",
    "(defun square (x) (* x x))",
    "echo 'single' \"double\" `backtick`",
    "      \n\t\t\n   \n",
    "a\tb\t\tc\t\t\td",
    "if __name__ == '__main__':\n    main()\n",
]

NUMBERS = [
    "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "1,000,000", "1.000.000,00", "-42", "+7", "6.022e23", "1/2", "3:30", "2024-01-15", "2024-01-15T10:30:00Z",
    "+1 (555) 123-4567", "192.168.0.1", "::1", "fe80::1ff:fe23:4567:890a",
    "00000000000000000000", "99999999999999999999999999999999999999999999",
    "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679",
    "a1b2c3d4e5", "abc123def456", "123abc", "v1.2.3", "COVID-19", "H2O", "CO2", "4K 8K 1080p",
    "١٢٣٤٥٦٧٨٩٠", "०१२३४५६७८९", "１２３４５６７８９０", "²³¹⁴", "½ ⅓ ¼ ¾ ⅛", "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ ⅻ", "①②③", "𝟏𝟐𝟑 𝟘𝟙𝟚",
    "๑๒๓", "一二三 十 百 千 万", "〇", "𝍠𝍡", "1st 2nd 3rd 4th", "10% 20% 30%", "$100 $1,000.50",
    "1 2 3 4 5 6 7 8 9 10", "1  2   3    4", "12\n34\n56", "3.0 3.00 3.000", ".5 .25 0.125",
]

WHITESPACE = [
    " ", "  ", "   ", "    ", "        ", " " * 17, " " * 33, "\t", "\t\t", "\t\t\t\t", "\n", "\n\n", "\n\n\n",
    "\n" * 10, "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \n ", "\t\n", "\n\t", " \t \t ", "\t \n \t",
    "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \nb", "a\n b", "a \n b", "a  \n  b", "a\r\nb",
    "word \t word", "end with newline\n", "end with spaces  ", "  both  ", "\n\nstart with newlines",
    "x\u00a0y", "x\u2003y", "x\u3000y", "x\u2028y", "x\u2029y", "x\u0085y", "x\u000by", "x\u000cy", "x\u180ey",
    "x\u200by", "x\ufeffy", "\u00a0\u00a0", " \u00a0 ", "\u3000\u3000text", "a \u2009b", "x\u202fy\u205fz",
    "  \n\n  \n", "\t\t\tcode", "a" + " " * 40 + "b", "a" + "\t" * 20 + "b", "a" + "\n" * 20 + "b",
    " " * 31 + "x", " " * 32 + "x", "\n" * 31 + "x", "\n" * 32 + "x", "\t" * 31 + "x", "\t" * 32 + "x",
    "  a  ", "\n a \n", " ! ", "  ?  ", " 1 ", "  12  ",
]

EMOJI = [
    "😀", "😀😃😄😁", "👍", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑‍🤝‍🧑", "🏳️‍🌈", "🏴‍☠️", "❤️", "❤", "♥️",
    "🇺🇸🇬🇧🇯🇵", "🇩🇪", "1️⃣2️⃣3️⃣", "#️⃣", "©️®️™️", "I ❤️ NY", "Hello 👋 world 🌍!", "🎉🎊🎈",
    "🤔💭", "😂😂😂", "🔥🔥", "💯", "✨ sparkle ✨", "🐶🐱🐭🐹🐰🦊🐻🐼", "👁️‍🗨️", "🫠🫡🫥", "🧑🏿‍🦲", "👩‍❤️‍💋‍👨",
    "emoji at end 🎯", "🚀 launch", "a😀b😀c", "😀 😀  😀", "☕", "⚡️", "🏃‍♀️‍➡️", "🪿", "🇦", "🏻",
]

CJK = [
    "你好，世界！", "我爱北京天安门。", "今天天气很好，我们去公园散步吧。", "中华人民共和国", "漢字と仮名",
    "こんにちは世界", "日本語のテキストです。", "ひらがな カタカナ", "東京都渋谷区", "ｶﾀｶﾅ (half-width)",
    "안녕하세요 세계", "한국어 텍스트입니다.", "대한민국 서울특별시", "ㄱㄴㄷ ㅏㅑㅓ",
    "中文English混合text", "日本語とEnglishのmix", "「引用」『二重』【括弧】", "。、！？：；",
    "𠀀𠀁𠀂", "𪜀𫝀𫠝", "龘靐齉", "我们123个人", "第1章 第二章",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", "吾輩は猫である。名前はまだ無い。", "ㄅㄆㄇㄈ",
]

ACCENTS = [
    "café", "cafe\u0301", "naïve", "nai\u0308ve", "résumé", "Zoë", "Ñandú", "São Paulo", "Dvořák", "Kraków",
    "Tiếng Việt có dấu", "Nguyễn Thị Minh Khai", "Ελληνικά γράμματα", "Привет, мир!", "Ёжик в тумане",
    "ﬁ ﬂ ﬃ", "Å Å", "e\u0301\u0302\u0303\u0304", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319"
    "\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u0300\u0301lgo", "a\u0308\u0308\u0308",
    "\u0301 starting with a combining mark", "ǅ ǈ ǋ", "İstanbul ıi", "ß ẞ", "Ⓐⓑⓒ", "ａｂｃ ＡＢＣ",
    "𝐀𝐁𝐂 𝒶𝒷𝒸", "ʰʲʷ", "Ünïcödé", "Čeština, Slovenčina, Hrvatski",
]

SCRIPTS = [
    "مرحبا بالعالم", "اللغة العربية جميلة", "السلام عليكم ورحمة الله", "عربي123", "مَرْحَبًا",
    "שלום עולם", "עברית היא שפה", "שָׁלוֹם", "नमस्ते दुनिया", "हिन्दी भाषा", "क्षत्रिय", "संस्कृतम्",
    "สวัสดีชาวโลก", "ภาษาไทย", "กรุงเทพมหานคร", "বাংলা ভাষা", "தமிழ் மொழி", "తెలుగు", "ಕನ್ನಡ", "മലയാളം",
    "ગુજરાતી", "ਪੰਜਾਬੀ", "ଓଡ଼ିଆ", "සිංහල", "မြန်မာ", "ខ្មែរ", "ລາວ", "ཏིབེཏ", "ქართული ენა", "Հայերեն",
    "አማርኛ", "ᏣᎳᎩ", "ᠮᠣᠩᠭᠣᠯ", "ܣܘܪܝܝܐ", "ދިވެހި", "ⴰⵎⴰⵣⵉⵖ", "Ꭰ Ꮃ", "ᚠᚢᚦᚨᚱᚲ", "𐌰𐌱𐌲", "ꦗꦮ",
    "Hello مرحبا שלום नमस्ते",
    "\u202eRLO override\u202c", "\u200fRLM\u200e LRM", "‫embedding‬",
    "\U0001e4d0\U0001e4d1\U0001e4eb",          # Nag Mundari (Unicode 15.0 letters)
    "\U00011f04\U00011f05\U00011f12 \U00011f43",  # Kawi letters and punctuation (15.0)
    "\U00031350\U00031351 \U0002ebf0\U0002ebf1",  # CJK extensions H (15.0) and I (15.1)
    "\U0001e4f0\U0001e4f1\U0001e4f2 \U00011f50\U00011f51",  # 15.0 digits
    "\U0001d2c0\U0001d2c1",                    # Kaktovik numerals (15.0)
    "\U00011b00\U00011b01",                    # Devanagari Extended-A punctuation (15.0)
    "\U00010d40\U00010d41 \U00016d40",        # Unicode 16.0 (unassigned for llama.cpp)
    "\u0378\u0379 unassigned", "\ue000\uf8ff private use", "\U000f0000\U0010fffd plane 15/16 PUA",
    "\ufffe\uffff noncharacters", "\ufffd replacement", "\u00ad soft\u00adhyphen", "\u2060word\u2060joiner",
    "\u0600\u0601 Arabic number signs", "\U000e0041\U000e0042 tags", "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
]

SPECIAL = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "<|im_end|><|im_start|>", "<|im_start|><|im_start|><|im_start|>", "text<|im_end|>text", "text <|im_end|> text",
    "<|im_end", "|im_end|>", "<|im_end|", "<<|im_end|>>", "<|<|im_end|>|>", "<|im_start|><|im_end|>",
    "<|IM_END|>", "< |im_end| >", "<|im_start|> user", "<|im_start|>\n\n", "\n<|im_end|>\n",
    "<repo_name>x<file_sep>y<filename>z", "<reponame>", "<gh_stars>100", "<jupyter_code>print(1)<jupyter_output>",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n", "<end_of_turn>", "<start_of_turn>",
    "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<bos><bos>", "text<eos>", "<start_of_image>", "<end_of_image>",
    "[multimodal]", "<unused0>", "<unused99>", "<unused6241>", "<unused6242>", "<unused>",
    "<table><tr><td>cell</td></tr></table>", "<h1>Title</h1>", "<b>bold</b> <i>it</i>", "<s>text</s>", "</s>",
    "<code>x</code>", "<blockquote>q</blockquote>", "<div><span>a</span></div>",
    "Use <end_of_turn> to end a turn and <|im_end|> for ChatML.", "<start_of_turn>model\n  \n\n\t\t<end_of_turn>",
    "[EMPTY_0]", "<0x41>", "<0xFF>", "▁", "▁▁hello", "hello▁world", " ▁ ", "<|endoftext|><|endoftext|>",
    "<empty_output>", "<issue_start><issue_comment><issue_closed>", "<jupyter_start><jupyter_text><jupyter_script>",
]

ODD = [
    b"\x00", b"a\x00b", b"\x00\x00\x00", b"nul at end\x00", b"\x01\x02\x03\x1f\x7f", b"\x1b[31mred\x1b[0m",
    b"\x80", b"\xbf", b"\xff", b"\xfe", b"\xc0", b"\xc1", b"\xf5", b"\xf8", b"\xfc", b"\xfe\xff",
    b"a\x80b", b"abc\xffdef", b"\xff\xfe\xfd", b"\x80\x80\x80\x80",
    b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98", b"\xf0\x9f", b"x\xf0\x9f\x98y", b"\xe2",
    b"\xe2\x82\xac", b"\xe2\x82\xac\xe2\x82", b"end\xe2\x82",
    b"\xc0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x80\xaf", b"\xf0\x80\x80\x80", b"\xf0\x80\x80\xaf",
    b"\xf0\x8f\xbf\xbf", b"\xe0\x9f\xbf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80", b"a\xed\xa0\x80b", b"\xed\x9f\xbf",
    b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf7\xbf\xbf\xbf", b"ok \xf4\x90\x80\x80 then",
    b"\xef\xbb\xbfBOM at start", b"\xef\xbf\xbd", b"\xef\xbf\xbe\xef\xbf\xbf",
    b"mixed \xc3\xa9 and \xe9 latin1", b"caf\xe9", b"na\xefve", b"\x93smart quotes\x94",
    b"\xc3\xa9\xc3", b"\xe4\xbd\xa0\xe5\xa5", b"\xf0\x9f\x91\x8d\xf0\x9f\x8f",
    b"<|im_start|>\xff<|im_end|>", b"\xff<end_of_turn>\xfe", b"<\xff|im_end|>", b"<|im_end|>\x00",
    b"\x80 \x80  \x80", b"\n\xff\n", b"\t\xc0\t", b" \xed\xa0\x80 ", b"1\xff2\xfe3",
    b"\xc2\xa0\xc2\x85\xc2", b"\xe3\x80\x80\xe3\x80", b"\xcc\x81\xcc", b"'\xffs", b"'s\xff",
    bytes(range(0, 128)), bytes(range(128, 256)), bytes(range(256))[::-1],
]

# Where the GPT-2, Llama-3, Qwen2 and default pre-tokenizer regexes disagree.
PRETOK = [
    "(word) [word] {word} <word> \"word\" 'word' `word`", "#include <x.h>", "$var @user %mod &ref *ptr", "¿Qué? ¡Hola!",
    "—dash–dash", "«mot» “quote” ‘single’ „low“", "!!!\n\nNext", "...\r\n\r\nafter", "end.\n", "x;\n\ty",
    "a  \n  b", "a\t\n\tb", " \r\n x", "\n\n\n   \n", "   \n", "?!\n", "):\n    return",
    "12345678901", "x1234y", " 1 23 456 7890 12345", " 2024", "v12.345.6789", "1,234,567.891", "٣٤٥٦٧", "१२३४५",
    "HE'LL SHE'S WE'RE THEY'VE I'M YOU'D IT'LL", "He'Ll she'S we'Re", "'tis ''quoted'' '''triple'''", "don''t", "'\n's",
    "'", "''", "' s", "'s'", "x's'", "'ſ 'K 'ǅ",
    "😀abc abc😀def 😀 1", "a\u200bb a\u2060b", "a\u0301b e\u0301 \u0301x", "ᄀ\u1161\u11a8", "abc\u00a0def\u3000ghi",
    "word...word---word___word", "a+b=c<d>e|f~g^h$i", "C++ C# F# .NET node.js", "l33t sp34k", "ab12cd34",
    "\u0660\u0661 \u06f1\u06f2 \u0966\u0967 \uff11\uff12", "²³ ½ ⅓ ① Ⅻ", "x²+y³", "#1 no.1 №1",
    " \u180e x\u180ey", "\u2028\u2029 lines", "\u0085next", "\ufeff\ufeff",
]

LONG = [
    ("The quick brown fox jumps over the lazy dog. " * 60).strip(),
    " " * 2000,
    "\n" * 500,
    "\t" * 300,
    "9" * 1000,
    "a" * 1500,
    "ab" * 700,
    "😀" * 200,
    "你好" * 300,
    "<|im_start|>" * 50,
    "<end_of_turn>\n" * 40,
    "x" + " \n" * 300 + "y",
    ". " * 500,
    "'s" * 300,
]

RANDOM_POOLS = [
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    " " * 6 + "\t\n\r",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿ",
    "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
    "абвгдежзийклмнопрстуфхцчшщъыьэюя",
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
    "あいうえおかきくけこアイウエオ",
    "가나다라마바사아자차카타파하",
    "مرحباعالمشلוםनमस्तेสวัสดี",
    "😀😂🥲👍🏽❤️🎉🇫🇷👨‍👩‍👧\u200d\ufe0f",
    "\u0301\u0308\u0327\u0303\u20dd",
    "\u00a0\u2003\u3000\u2028\u0085\u180e\u200b",
    "¹²³½①Ⅻ٣३",
]
RANDOM_TOKENS = ["<|im_start|>", "<|im_end|>", "<end_of_turn>", "<start_of_turn>", "<eos>", "<bos>", "</s>", "<s>",
                 "<table>", "  ", "\n\n", "\t\t", "'s", "'ll", "▁"]


def random_corpus(rng):
    out = []
    for _ in range(150):
        n = rng.randint(1, 60)
        pools = rng.sample(RANDOM_POOLS, rng.randint(1, 4))
        parts = []
        for _ in range(n):
            if rng.random() < 0.05:
                parts.append(rng.choice(RANDOM_TOKENS))
            else:
                parts.append(rng.choice(rng.choice(pools)))
        out.append(u("".join(parts)))
    for _ in range(40):
        n = rng.randint(1, 40)
        out.append(bytes(rng.randrange(256) for _ in range(n)))
    for _ in range(20):
        # valid text with a few bytes knocked out or duplicated
        s = bytearray(u(rng.choice(PROSE + CJK + EMOJI + SCRIPTS)))
        for _ in range(rng.randint(1, 3)):
            if not s:
                break
            i = rng.randrange(len(s))
            if rng.random() < 0.5:
                del s[i]
            else:
                s.insert(i, s[i])
        out.append(bytes(s))
    return out


def build_corpus():
    rng = random.Random(20260601)
    items = [b""]
    for group in (PROSE, CODE, NUMBERS, WHITESPACE, EMOJI, CJK, ACCENTS, SCRIPTS, SPECIAL, PRETOK, LONG):
        items += [u(s) for s in group]
    items += ODD
    items += random_corpus(rng)
    return items


# ------------------------------------------------------------- escaping ----

def escape(b):
    out = []
    n = len(b)
    trail = n
    while trail > 0 and b[trail - 1] == 0x20:
        trail -= 1
    for i, c in enumerate(b):
        if c == 0x5C:
            out.append("\\\\")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x0D:
            out.append("\\r")
        elif 0x20 <= c < 0x7F and not (c == 0x20 and i >= trail):
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


# --------------------------------------------------------- llama.cpp side ----

def bpe_reference_aborts(b):
    """llama.cpp's UTF-8 decoder accepts 4-byte forms up to U+1FFFFF and then
    throws (uncaught) when re-encoding one above U+10FFFF."""
    i = 0
    while i < len(b):
        c = b[i]
        if c < 0x80 or not (c & 0x40):
            i += 1
            continue
        need = 2 if not (c & 0x20) else 3 if not (c & 0x10) else 4 if not (c & 0x08) else 0
        if need == 0 or i + need > len(b) or any((b[i + k] & 0xC0) != 0x80 for k in range(1, need)):
            i += 1
            continue
        if need == 4:
            cpt = (c & 0x07) << 18 | (b[i + 1] & 0x3F) << 12 | (b[i + 2] & 0x3F) << 6 | (b[i + 3] & 0x3F)
            if cpt > 0x10FFFF:
                return True
        i += need
    return False


def fnv1a64(data, h=0xCBF29CE484222325):
    for c in data:
        h ^= c
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def piece(vocab, tok, special):
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, tok, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def detokenize(vocab, ids, unparse_special):
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, unparse_special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def write_golden(name, path, corpus):
    """Writes one model's golden file; returns its p0 ids (None where skipped)."""
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    is_bpe = llama_cpp.llama_vocab_type(vocab) == llama_cpp.LLAMA_VOCAB_TYPE_BPE
    lines = ["# generated by scripts/gen_tokenizer_golden.py from %s with llama-cpp-python %s"
             % (os.path.basename(path), llama_cpp.__version__)]
    lines.append("meta n_vocab=%d bos=%d eos=%d add_bos=%d add_eos=%d" % (
        n_vocab, llama_cpp.llama_vocab_bos(vocab), llama_cpp.llama_vocab_eos(vocab),
        int(llama_cpp.llama_vocab_get_add_bos(vocab)), int(llama_cpp.llama_vocab_get_add_eos(vocab))))
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    lines.append("eog " + " ".join(map(str, eog)))
    attrs = [(i, llama_cpp.llama_vocab_get_attr(vocab, i)) for i in range(n_vocab)]
    odd = [(i, a) for i, a in attrs if a != 4]
    for k in range(0, len(odd), 64):
        lines.append("attr " + " ".join("%d:%d" % p for p in odd[k:k + 64]))
    for special in (0, 1):
        for block in range((n_vocab + 255) // 256):
            h = 0xCBF29CE484222325
            for tok in range(block * 256, min(n_vocab, block * 256 + 256)):
                p = piece(vocab, tok, bool(special))
                h = fnv1a64(len(p).to_bytes(4, "little") + p, h)
            lines.append("piece %d %d %016x" % (special, block, h))
    p0_ids = []
    for idx, s in enumerate(corpus):
        p1 = None
        p0_ids.append(None)
        for mode, special in (("p0", False), ("p1", True)):
            if is_bpe and bpe_reference_aborts(s):
                lines.append("ids %d %s SKIP" % (idx, mode))
                continue
            ids = llm.tokenize(s, add_bos=True, special=special)
            if special:
                p1 = ids
            else:
                p0_ids[idx] = ids
            lines.append(("ids %d %s " % (idx, mode)) + " ".join(map(str, ids)))
        if p1 is not None and (idx % 5 == 0 or b"<" in s):
            for render in (0, 1):
                lines.append("detok %d %d %s" % (idx, render, escape(detokenize(vocab, p1, bool(render)))))
    with open(os.path.join(OUT, name), "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d strings, %d eog, %d non-normal attrs" % (name, len(corpus), len(eog), len(odd)))
    return p0_ids


PRE_VARIANTS = ["gpt-2", "llama-bpe", "qwen2", "default", "starcoder"]
PRE_MAX_BYTES = 1000


def copy_metadata(src, dst, pre):
    """A GGUF with src's metadata (no tensors; vocab_only needs none) and another pre."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    r = GGUFReader(src)
    w = GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        v = pre if k == "tokenizer.ggml.pre" else f.contents()
        if f.types[0] == GGUFValueType.ARRAY and f.types[-1] == GGUFValueType.STRING:
            w.add_array(k, v)
        elif f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(k, v, f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(k, v, f.types[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_pre_golden(path, corpus, base_ids):
    import tempfile
    lines = ["# generated by scripts/gen_tokenizer_golden.py: the %s vocabulary under other pre-tokenizers"
             % os.path.basename(path)]
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_VARIANTS:
            variant = os.path.join(tmp, "variant.gguf")
            copy_metadata(path, variant, pre)
            llm = llama_cpp.Llama(model_path=variant, vocab_only=True, verbose=False)
            lines.append("pre " + pre)
            for idx, s in enumerate(corpus):
                if len(s) > PRE_MAX_BYTES:
                    continue
                if bpe_reference_aborts(s):
                    lines.append("ids %d p0 SKIP" % idx)
                    continue
                ids = llm.tokenize(s, add_bos=True, special=False)
                same = ids == base_ids[idx]
                lines.append("ids %d p0 " % idx + ("=" if same else " ".join(map(str, ids))))
            del llm
    with open(os.path.join(OUT, "smollm2_pre.golden"), "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    print("smollm2_pre.golden: %s" % ", ".join(PRE_VARIANTS))


def main():
    os.makedirs(OUT, exist_ok=True)
    corpus = build_corpus()
    with open(os.path.join(OUT, "corpus.txt"), "w", encoding="ascii", newline="\n") as f:
        f.write("# tokenizer test corpus: one string per line as \"s <escaped>\" (see scripts/gen_tokenizer_golden.py)\n")
        for s in corpus:
            f.write("s " + escape(s) + "\n")
    base = None
    for name, path in MODELS:
        if not os.path.exists(path):
            sys.exit("missing model %s" % path)
        ids = write_golden(name, path, corpus)
        base = base or ids
    write_pre_golden(MODELS[0][1], corpus, base)


if __name__ == "__main__":
    main()
