"""Python functions with doctests (kind "test"); generation prompts are cut from them.

Written for plip-nn; every doctest here passes (tests/test_corpus.py runs them).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "py_clamp",
        r'''def clamp_between(value, low, high):
    """Limit value to the range [low, high].

    >>> clamp_between(15, 0, 10)
    10
    >>> clamp_between(-3, 0, 10)
    0
    """
    return max(low, min(high, value))
''',
    ),
    (
        "py_count_vowels",
        r'''def count_vowels(text: str) -> int:
    """Count the vowels in text.

    >>> count_vowels("Banana")
    3
    """
    return sum(1 for ch in text.lower() if ch in "aeiou")
''',
    ),
    (
        "py_is_palindrome",
        r'''def is_palindrome(word):
    """Tell whether word reads the same both ways, ignoring case.

    >>> is_palindrome("Level")
    True
    >>> is_palindrome("rust")
    False
    """
    w = word.lower()
    return w == w[::-1]
''',
    ),
    (
        "py_mean",
        r'''def arithmetic_mean(values):
    """Arithmetic mean of a non-empty list.

    >>> arithmetic_mean([1, 2, 3, 4])
    2.5
    """
    return sum(values) / len(values)
''',
    ),
    (
        "py_factorial",
        r'''def factorial_of(n: int) -> int:
    """Product of the integers 1..n.

    >>> factorial_of(5)
    120
    >>> factorial_of(0)
    1
    """
    result = 1
    for k in range(2, n + 1):
        result *= k
    return result
''',
    ),
    (
        "py_gcd",
        r'''def greatest_divisor(a, b):
    """Greatest common divisor by Euclid's algorithm.

    >>> greatest_divisor(48, 18)
    6
    """
    while b:
        a, b = b, a % b
    return a
''',
    ),
    (
        "py_popcount",
        r'''def popcount(n: int) -> int:
    """Number of set bits in a non-negative integer.

    >>> popcount(0b101101)
    4
    """
    count = 0
    while n:
        n &= n - 1
        count += 1
    return count
''',
    ),
    (
        "py_is_power_of_two",
        r'''def is_power_of_two(n):
    """True when n is a positive power of two.

    >>> is_power_of_two(64)
    True
    >>> is_power_of_two(12)
    False
    """
    return n > 0 and n & (n - 1) == 0
''',
    ),
    (
        "py_word_count",
        r'''def word_count(text):
    """Count occurrences of each lower-cased word.

    >>> word_count("a b A c")
    {'a': 2, 'b': 1, 'c': 1}
    """
    counts = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts
''',
    ),
    (
        "py_chunk",
        r'''def chunk_items(items, size=2):
    """Split items into lists of at most size elements.

    >>> chunk_items([1, 2, 3, 4, 5])
    [[1, 2], [3, 4], [5]]
    """
    return [items[i:i + size] for i in range(0, len(items), size)]
''',
    ),
    (
        "py_parse_pair",
        r'''def parse_pair(text: str, sep: str = "=") -> tuple:
    """Parse 'key=value' into a stripped pair.

    >>> parse_pair(" name = Ada ")
    ('name', 'Ada')
    """
    key, _, value = text.partition(sep)
    return key.strip(), value.strip()
''',
    ),
    (
        "py_is_leap",
        r'''def is_leap(year: int) -> bool:
    """Gregorian leap year test.

    >>> is_leap(2000), is_leap(1900), is_leap(2024)
    (True, False, True)
    """
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
''',
    ),
    (
        "py_days_in_month",
        r'''def days_in_month(year, month):
    """Number of days in a month of the Gregorian calendar.

    >>> days_in_month(2023, 2)
    28
    >>> days_in_month(2024, 2)
    29
    """
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31
''',
    ),
    (
        "py_distance",
        r'''import math


def point_distance(p, q):
    """Euclidean distance between two 2D points.

    >>> point_distance((0, 0), (3, 4))
    5.0
    """
    return math.hypot(q[0] - p[0], q[1] - p[1])
''',
    ),
    (
        "py_rect_area",
        r'''def rect_area(width: float, height: float) -> float:
    """Area of a rectangle.

    >>> rect_area(3, 4.5)
    13.5
    """
    if width < 0 or height < 0:
        raise ValueError("negative side")
    return width * height
''',
    ),
    (
        "py_title_case",
        r'''def title_case(sentence):
    """Capitalise the first letter of each word.

    >>> title_case("the quick fox")
    'The Quick Fox'
    """
    return " ".join(w[:1].upper() + w[1:] for w in sentence.split())
''',
    ),
    (
        "py_flatten",
        r'''def flatten_nested(nested):
    """Flatten one level of nesting.

    >>> flatten_nested([[1], [2, 3], []])
    [1, 2, 3]
    """
    return [x for inner in nested for x in inner]
''',
    ),
    (
        "py_dedupe",
        r'''def unique_in_order(seq):
    """Drop repeated items, keeping the first occurrence.

    >>> unique_in_order([3, 1, 3, 2, 1])
    [3, 1, 2]
    """
    seen = set()
    return [x for x in seq if not (x in seen or seen.add(x))]
''',
    ),
    (
        "py_caesar",
        r'''def caesar(text, shift=3):
    """Shift lower-case letters around the alphabet.

    >>> caesar("xyz")
    'abc'
    """
    out = []
    for ch in text:
        if "a" <= ch <= "z":
            ch = chr((ord(ch) - 97 + shift) % 26 + 97)
        out.append(ch)
    return "".join(out)
''',
    ),
    (
        "py_to_binary",
        r'''def to_binary(n: int, width: int = 8) -> str:
    """Zero-padded binary string.

    >>> to_binary(5)
    '00000101'
    """
    return format(n, "b").zfill(width)
''',
    ),
    (
        "py_median",
        r'''def middle_value(values: list[float]) -> float:
    """Median of a non-empty list.

    >>> middle_value([3, 1, 2])
    2
    >>> middle_value([4, 1, 3, 2])
    2.5
    """
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
''',
    ),
    (
        "py_stack_push",
        r'''class Stack:
    def __init__(self):
        self.items = []

    def push_item(self, item):
        """Push item and return the new size.

        >>> Stack().push_item("x")
        1
        """
        self.items.append(item)
        return len(self.items)
''',
    ),
    (
        "py_counter_add",
        r'''class Counter:
    def __init__(self, start=0):
        self.value = start

    def increment_by(self, amount=1):
        """Increase the counter and return it.

        >>> Counter(5).increment_by(3)
        8
        """
        self.value += amount
        return self.value
''',
    ),
    (
        "py_vector_dot",
        r'''class Vector:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def dot_with(self, other):
        """Dot product with another vector.

        >>> Vector(1, 2).dot_with(Vector(3, 4))
        11
        """
        return self.x * other.x + self.y * other.y
''',
    ),
    (
        "py_rot_list",
        r'''def rotate_items(items, k):
    """Rotate a list left by k places.

    >>> rotate_items([1, 2, 3, 4], 1)
    [2, 3, 4, 1]
    """
    if not items:
        return []
    k %= len(items)
    return items[k:] + items[:k]
''',
    ),
    (
        "py_parse_csv_line",
        r'''def parse_csv_line(line, delimiter=","):
    """Split a CSV line and strip each field.

    >>> parse_csv_line("a, b ,c")
    ['a', 'b', 'c']
    """
    return [field.strip() for field in line.split(delimiter)]
''',
    ),
    (
        "py_parse_duration",
        r'''def duration_seconds(text):
    """Parse 'MM:SS' into seconds.

    >>> duration_seconds("02:30")
    150
    """
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)
''',
    ),
    (
        "py_format_hms",
        r'''def format_hms(seconds: int) -> str:
    """Format seconds as H:MM:SS.

    >>> format_hms(3725)
    '1:02:05'
    """
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"
''',
    ),
    (
        "py_merge_counts",
        r'''def merge_counts(*dicts):
    """Sum integer values of several dicts key by key.

    >>> merge_counts({"a": 1}, {"a": 2, "b": 5})
    {'a': 3, 'b': 5}
    """
    total = {}
    for d in dicts:
        for key, n in d.items():
            total[key] = total.get(key, 0) + n
    return total
''',
    ),
    (
        "py_build_url",
        r'''def build_url(host, *parts, **query):
    """Join a host, path parts and query parameters.

    >>> build_url("x.org", "a", "b", q=1)
    'https://x.org/a/b?q=1'
    """
    url = "https://" + "/".join((host, *parts))
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url
''',
    ),
    (
        "py_scale_points",
        r'''def scale_coords(points, /, factor, *, round_to=None):
    """Multiply each coordinate by factor.

    >>> scale_coords([(1, 2)], 1.5)
    [(1.5, 3.0)]
    >>> scale_coords([(1, 2)], 1.25, round_to=1)
    [(1.2, 2.5)]
    """
    out = [(x * factor, y * factor) for x, y in points]
    if round_to is not None:
        out = [(round(x, round_to), round(y, round_to)) for x, y in out]
    return out
''',
    ),
    (
        "py_digits",
        r'''def digit_list(n):
    """Decimal digits of a non-negative integer.

    >>> digit_list(4071)
    [4, 0, 7, 1]
    """
    return [int(ch) for ch in str(n)]
''',
    ),
    (
        "py_collatz_steps",
        r'''def collatz_steps(n: int) -> int:
    """Steps for the Collatz sequence from n to reach 1.

    >>> collatz_steps(6)
    8
    """
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps
''',
    ),
    (
        "py_primes_below",
        r'''def primes_below(limit):
    """Primes smaller than limit (sieve of Eratosthenes).

    >>> primes_below(20)
    [2, 3, 5, 7, 11, 13, 17, 19]
    """
    sieve = [True] * limit
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = [False] * len(range(i * i, limit, i))
    return [i for i in range(2, limit) if sieve[i]]
''',
    ),
    (
        "py_reverse_bits",
        r'''def mirror_byte(byte):
    """Reverse the 8 bits of a byte.

    >>> mirror_byte(0b00000110)
    96
    """
    out = 0
    for _ in range(8):
        out = (out << 1) | (byte & 1)
        byte >>= 1
    return out
''',
    ),
    (
        "py_set_bit",
        r'''def with_bit(value: int, index: int, on: bool = True) -> int:
    """Set or clear one bit.

    >>> with_bit(0, 3)
    8
    >>> with_bit(15, 0, on=False)
    14
    """
    mask = 1 << index
    return value | mask if on else value & ~mask
''',
    ),
    (
        "py_snake_case",
        r'''def snake_case(name):
    """Convert CamelCase to snake_case.

    >>> snake_case("HttpServerError")
    'http_server_error'
    """
    out = ""
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out += "_"
        out += ch.lower()
    return out
''',
    ),
    (
        "py_initials",
        r'''def initials(full_name: str) -> str:
    """Upper-case initials of a name.

    >>> initials("ada king lovelace")
    'AKL'
    """
    return "".join(part[0].upper() for part in full_name.split())
''',
    ),
    (
        "py_truncate",
        r'''def ellipsize(text, limit=10, ellipsis="..."):
    """Shorten text to at most limit characters.

    >>> ellipsize("hello wonderful world")
    'hello w...'
    >>> ellipsize("short")
    'short'
    """
    if len(text) <= limit:
        return text
    return text[: limit - len(ellipsis)] + ellipsis
''',
    ),
    (
        "py_group_by_len",
        r'''def group_by_length(words):
    """Map each word length to the words of that length.

    >>> group_by_length(["ox", "cat", "dog", "be"])
    {2: ['ox', 'be'], 3: ['cat', 'dog']}
    """
    groups = {}
    for w in words:
        groups.setdefault(len(w), []).append(w)
    return groups
''',
    ),
    (
        "py_invert_dict",
        r'''def swap_keys_values(mapping: dict) -> dict:
    """Swap keys and values.

    >>> swap_keys_values({"a": 1, "b": 2})
    {1: 'a', 2: 'b'}
    """
    return {v: k for k, v in mapping.items()}
''',
    ),
    (
        "py_running_max",
        r'''def running_max(values):
    """Maximum seen so far at each position.

    >>> running_max([1, 3, 2, 5, 4])
    [1, 3, 3, 5, 5]
    """
    out, best = [], None
    for v in values:
        best = v if best is None else max(best, v)
        out.append(best)
    return out
''',
    ),
    (
        "py_pairwise_diff",
        r'''def pairwise_diff(xs):
    """Differences between neighbours.

    >>> pairwise_diff([1, 4, 9, 16])
    [3, 5, 7]
    """
    return [b - a for a, b in zip(xs, xs[1:])]
''',
    ),
    (
        "py_polygon_perimeter",
        r'''def perimeter(vertices):
    """Perimeter of a polygon given as (x, y) vertices.

    >>> perimeter([(0, 0), (3, 0), (3, 4)])
    12.0
    """
    total = 0.0
    for (x1, y1), (x2, y2) in zip(vertices, vertices[1:] + vertices[:1]):
        total += ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
    return total
''',
    ),
    (
        "py_circle_area",
        r'''from math import pi


def circle_area(radius: float) -> float:
    """Area of a circle, rounded to 2 decimals.

    >>> circle_area(2)
    12.57
    """
    return round(pi * radius ** 2, 2)
''',
    ),
    (
        "py_point_in_rect",
        r'''def point_in_rect(px, py, left, top, right, bottom):
    """True when (px, py) lies inside the rectangle.

    >>> point_in_rect(2, 3, 0, 0, 5, 5)
    True
    >>> point_in_rect(7, 1, 0, 0, 5, 5)
    False
    """
    return left <= px <= right and top <= py <= bottom
''',
    ),
    (
        "py_day_of_year",
        r'''import datetime


def day_of_year(year, month, day):
    """Ordinal day within the year (1-based).

    >>> day_of_year(2024, 3, 1)
    61
    """
    return datetime.date(year, month, day).timetuple().tm_yday
''',
    ),
    (
        "py_weekday_name",
        r'''from datetime import date


def weekday_name(iso: str) -> str:
    """English weekday of an ISO date.

    >>> weekday_name("2024-01-01")
    'Monday'
    """
    return date.fromisoformat(iso).strftime("%A")
''',
    ),
    (
        "py_add_days",
        r'''from datetime import date, timedelta


def add_days(iso, days=1):
    """ISO date plus a number of days.

    >>> add_days("2023-12-31")
    '2024-01-01'
    """
    return (date.fromisoformat(iso) + timedelta(days=days)).isoformat()
''',
    ),
    (
        "py_roman",
        r'''def roman_numeral(number: int) -> str:
    """Roman numeral for 1..3999.

    >>> roman_numeral(1994)
    'MCMXCIV'
    """
    table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"),
             (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"),
             (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, sym in table:
        while number >= value:
            out += sym
            number -= value
    return out
''',
    ),
    (
        "py_parse_kv",
        r'''def parse_pairs(query):
    """Parse 'a=1&b=2' into a dict of strings.

    >>> parse_pairs("a=1&b=two")
    {'a': '1', 'b': 'two'}
    """
    pairs = (item.split("=", 1) for item in query.split("&") if item)
    return {k: v for k, v in pairs}
''',
    ),
    (
        "py_balanced",
        r'''def balanced(text):
    """Check that brackets are balanced.

    >>> balanced("(a[b]{c})")
    True
    >>> balanced("(]")
    False
    """
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack
''',
    ),
    (
        "py_async_double",
        r'''import asyncio


async def double_later(x):
    """Double x after yielding to the event loop.

    >>> asyncio.run(double_later(21))
    42
    """
    await asyncio.sleep(0)
    return 2 * x
''',
    ),
    (
        "py_cached_fib",
        r'''import functools


@functools.lru_cache(maxsize=None)
def fib_memo(n):
    """n-th Fibonacci number.

    >>> fib_memo(10)
    55
    """
    return n if n < 2 else fib_memo(n - 1) + fib_memo(n - 2)
''',
    ),
    (
        "py_static_kelvin",
        r'''class Temperature:
    @staticmethod
    def to_kelvin(celsius: float) -> float:
        """Convert Celsius to Kelvin.

        >>> Temperature.to_kelvin(25)
        298.15
        """
        return celsius + 273.15
''',
    ),
    (
        "py_classmethod_origin",
        r'''class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    @classmethod
    def at_origin(cls):
        """The point (0, 0).

        >>> p = Point.at_origin()
        >>> (p.x, p.y)
        (0, 0)
        """
        return cls(0, 0)
''',
    ),
    (
        "py_unicode_name",
        r'''def größe(länge, breite):
    """Fläche eines Rechtecks.

    >>> größe(2, 3)
    6
    """
    return länge * breite
''',
    ),
    (
        "py_helper_then_main",
        r'''def _square(x):
    return x * x


def sum_of_squares(values):
    """Sum of the squares of values.

    >>> sum_of_squares([1, 2, 3])
    14
    """
    return sum(_square(v) for v in values)
''',
    ),
    (
        "py_hex_to_rgb",
        r'''def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """Parse '#rrggbb' into an RGB triple.

    >>> hex_to_rgb("#ff8000")
    (255, 128, 0)
    """
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))
''',
    ),
    (
        "py_binary_search",
        r'''def binary_search(items, target):
    """Index of target in a sorted list, or -1.

    >>> binary_search([1, 3, 5, 7, 9], 7)
    3
    >>> binary_search([1, 3], 2)
    -1
    """
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
''',
    ),
    (
        "py_interleave",
        r'''def alternate_items(a, b):
    """Alternate items of two lists; the rest of the longer one follows.

    >>> alternate_items([1, 2, 3], "ab")
    [1, 'a', 2, 'b', 3]
    """
    out = []
    for i in range(max(len(a), len(b))):
        out.extend(seq[i] for seq in (a, b) if i < len(seq))
    return out
''',
    ),
    (
        "py_char_histogram",
        r'''from collections import Counter


def top_chars(text, n=2):
    """The n most common non-space characters.

    >>> top_chars("hello world")
    ['l', 'o']
    """
    counts = Counter(ch for ch in text if not ch.isspace())
    return [ch for ch, _ in counts.most_common(n)]
''',
    ),
    (
        "py_dot_product",
        r'''from typing import Sequence


def dot_product(u: Sequence[float], v: Sequence[float]) -> float:
    """Dot product of two equal-length vectors.

    >>> dot_product([1, 2, 3], [4, 5, 6])
    32
    """
    if len(u) != len(v):
        raise ValueError("length mismatch")
    return sum(a * b for a, b in zip(u, v))
''',
    ),
]
