"""More Python functions with doctests (kind "test"), part A: strings and text.

Written for plip-nn; every doctest here passes (tests/test_corpus.py runs them).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "py_vowel_ratio",
        r'''def vowel_ratio(text):
    """Share of letters in text that are vowels, rounded to 2 places.

    >>> vowel_ratio("banana")
    0.5
    """
    letters = [c for c in text.lower() if c.isalpha()]
    if not letters:
        return 0.0
    return round(sum(c in "aeiou" for c in letters) / len(letters), 2)
''',
    ),
    (
        "py_mask_card",
        r'''def mask_card(number: str, keep: int = 4) -> str:
    """Hide all but the last keep digits of a card number.

    >>> mask_card("4111222233334444")
    '************4444'
    """
    return "*" * (len(number) - keep) + number[-keep:]
''',
    ),
    (
        "py_acronym",
        r'''def acronym(phrase):
    """Upper-case first letters of the words in phrase.

    >>> acronym("portable network graphics")
    'PNG'
    """
    return "".join(word[0].upper() for word in phrase.split())
''',
    ),
    (
        "py_squeeze_repeats",
        r'''def squeeze_repeats(text: str) -> str:
    """Collapse runs of the same character into one.

    >>> squeeze_repeats("aaabccdd")
    'abcd'
    """
    out = []
    for ch in text:
        if not out or out[-1] != ch:
            out.append(ch)
    return "".join(out)
''',
    ),
    (
        "py_is_anagram",
        r'''def is_anagram(first, second):
    """Tell whether two words use the same letters, ignoring case.

    >>> is_anagram("Listen", "silent")
    True
    >>> is_anagram("abc", "abd")
    False
    """
    return sorted(first.lower()) == sorted(second.lower())
''',
    ),
    (
        "py_kebab_case",
        r'''def kebab_case(words):
    """Join lower-cased words with hyphens.

    >>> kebab_case(["Hello", "Big", "World"])
    'hello-big-world'
    """
    return "-".join(w.lower() for w in words)
''',
    ),
    (
        "py_pad_center",
        r'''def pad_center(text: str, width: int, fill: str = ".") -> str:
    """Center text in a field of width characters.

    >>> pad_center("ab", 6)
    '..ab..'
    """
    return text.center(width, fill)
''',
    ),
    (
        "py_count_substring",
        r'''def count_overlapping(text, pattern):
    """Occurrences of pattern in text, overlaps included.

    >>> count_overlapping("aaaa", "aa")
    3
    """
    return sum(text.startswith(pattern, i) for i in range(len(text)))
''',
    ),
    (
        "py_first_repeated",
        r'''def first_repeated_char(text):
    """The first character that appears a second time, or None.

    >>> first_repeated_char("swiss")
    's'
    >>> first_repeated_char("abc")
    """
    seen = set()
    for ch in text:
        if ch in seen:
            return ch
        seen.add(ch)
    return None
''',
    ),
    (
        "py_wrap_words",
        r'''def greedy_wrap(text, width):
    """Greedy line wrap of text at width characters.

    >>> greedy_wrap("the quick brown fox", 10)
    ['the quick', 'brown fox']
    """
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines
''',
    ),
    (
        "py_strip_vowels",
        r'''def strip_vowels(word: str) -> str:
    """Remove every vowel from word.

    >>> strip_vowels("programming")
    'prgrmmng'
    """
    return "".join(c for c in word if c.lower() not in "aeiou")
''',
    ),
    (
        "py_camel_words",
        r'''import re


def camel_words(identifier):
    """Split a camelCase identifier into lower-case words.

    >>> camel_words("parseHttpHeader")
    ['parse', 'http', 'header']
    """
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+", identifier)]
''',
    ),
    (
        "py_rle_encode",
        r'''def rle_encode(text):
    """Run-length encoding as count+char pairs.

    >>> rle_encode("aaabbc")
    '3a2b1c'
    """
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        out.append(f"{j - i}{text[i]}")
        i = j
    return "".join(out)
''',
    ),
    (
        "py_rle_decode",
        r'''import re


def rle_decode(encoded: str) -> str:
    """Expand count+char pairs back to text.

    >>> rle_decode("3a2b1c")
    'aaabbc'
    """
    return "".join(ch * int(n) for n, ch in re.findall(r"(\d+)(\D)", encoded))
''',
    ),
    (
        "py_longest_word",
        r'''def longest_word(sentence):
    """The longest word; the first one wins ties.

    >>> longest_word("a quick brown fox")
    'quick'
    """
    return max(sentence.split(), key=len)
''',
    ),
    (
        "py_char_positions",
        r'''def char_positions(text, target):
    """Indices where target occurs in text.

    >>> char_positions("banana", "a")
    [1, 3, 5]
    """
    return [i for i, ch in enumerate(text) if ch == target]
''',
    ),
    (
        "py_slugify",
        r'''import re


def slugify(title: str) -> str:
    """URL slug: lower case, runs of non-alphanumerics become one hyphen.

    >>> slugify("Hello, World! 2024")
    'hello-world-2024'
    """
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
''',
    ),
    (
        "py_mirror_words",
        r'''def mirror_words(sentence):
    """Reverse each word but keep the word order.

    >>> mirror_words("abc def")
    'cba fed'
    """
    return " ".join(w[::-1] for w in sentence.split(" "))
''',
    ),
    (
        "py_common_prefix",
        r'''def common_prefix(words):
    """Longest prefix shared by all words.

    >>> common_prefix(["flower", "flow", "flight"])
    'fl'
    """
    if not words:
        return ""
    prefix = words[0]
    for w in words[1:]:
        while not w.startswith(prefix):
            prefix = prefix[:-1]
    return prefix
''',
    ),
    (
        "py_parse_query",
        r'''def query_params(query: str) -> dict:
    """Split a URL query string into a dict.

    >>> query_params("a=1&b=two")
    {'a': '1', 'b': 'two'}
    """
    pairs = (part.split("=", 1) for part in query.split("&") if part)
    return {k: v for k, v in pairs}
''',
    ),
    (
        "py_ordinal_suffix",
        r'''def ordinal_text(n: int) -> str:
    """English ordinal of a positive integer.

    >>> ordinal_text(1), ordinal_text(12), ordinal_text(23)
    ('1st', '12th', '23rd')
    """
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}" + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
''',
    ),
    (
        "py_column_letter",
        r'''def column_letter(index):
    """Spreadsheet column name of a 1-based index.

    >>> column_letter(28)
    'AB'
    """
    name = ""
    while index > 0:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name
''',
    ),
    (
        "py_censor_words",
        r'''def censor_words(text, banned):
    """Replace banned words with asterisks of the same length.

    >>> censor_words("no bad words here", {"bad"})
    'no *** words here'
    """
    return " ".join("*" * len(w) if w in banned else w for w in text.split())
''',
    ),
    (
        "py_indent_lines",
        r'''def indent_lines(text: str, spaces: int = 2) -> str:
    """Prefix every non-empty line with spaces.

    >>> indent_lines("a\\nb")
    '  a\\n  b'
    """
    pad = " " * spaces
    return "\n".join(pad + ln if ln else ln for ln in text.split("\n"))
''',
    ),
    (
        "py_is_pangram",
        r'''import string


def is_pangram(sentence):
    """True when every letter a-z occurs in sentence.

    >>> is_pangram("The quick brown fox jumps over the lazy dog")
    True
    """
    return set(string.ascii_lowercase) <= set(sentence.lower())
''',
    ),
    (
        "py_extract_hashtags",
        r'''import re


def extract_hashtags(post: str) -> list:
    """Hashtags in a post, without the hash sign.

    >>> extract_hashtags("fun #rust and #python3 today")
    ['rust', 'python3']
    """
    return re.findall(r"#(\w+)", post)
''',
    ),
    (
        "py_swap_pairs",
        r'''def swap_adjacent(text):
    """Swap each pair of neighbouring characters.

    >>> swap_adjacent("abcde")
    'badce'
    """
    chars = list(text)
    for i in range(0, len(chars) - 1, 2):
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)
''',
    ),
    (
        "py_parse_ipv4",
        r'''def parse_ipv4(address):
    """The four octets of a dotted IPv4 address, or None if invalid.

    >>> parse_ipv4("192.168.0.1")
    [192, 168, 0, 1]
    >>> parse_ipv4("300.1.1.1")
    """
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    octets = [int(p) for p in parts]
    return octets if all(o < 256 for o in octets) else None
''',
    ),
    (
        "py_html_escape",
        r'''def escape_markup(text: str) -> str:
    """Escape &, < and > for HTML.

    >>> escape_markup("a < b & c")
    'a &lt; b &amp; c'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
''',
    ),
    (
        "py_letter_shift",
        r'''def shift_letters(word, offset, alphabet="abcdefghijklmnopqrstuvwxyz"):
    """Shift each letter of a lower-case word along the alphabet.

    >>> shift_letters("xyz", 2)
    'zab'
    """
    n = len(alphabet)
    return "".join(alphabet[(alphabet.index(c) + offset) % n] for c in word)
''',
    ),
    (
        "py_format_bytes",
        r'''def human_size(num_bytes: int) -> str:
    """Byte count in the largest unit that keeps it >= 1.

    >>> human_size(1536)
    '1.5 KiB'
    """
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
''',
    ),
    (
        "py_parse_semver",
        r'''def parse_semver(tag):
    """Major, minor and patch numbers of a tag like 'v1.4.2'.

    >>> parse_semver("v1.4.2")
    (1, 4, 2)
    """
    major, minor, patch = tag.lstrip("v").split(".")
    return int(major), int(minor), int(patch)
''',
    ),
    (
        "py_count_lines",
        r'''def count_nonblank(text):
    """Number of lines that hold more than whitespace.

    >>> count_nonblank("a\\n\\n  \\nb\\n")
    2
    """
    return sum(1 for line in text.splitlines() if line.strip())
''',
    ),
    (
        "py_surround",
        r'''def enclose(text, left="[", right="]", times=1):
    """Wrap text in left/right delimiters, times deep.

    >>> enclose("x", "(", ")", 2)
    '((x))'
    """
    return left * times + text + right * times
''',
    ),
]
