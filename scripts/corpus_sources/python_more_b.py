"""More Python functions with doctests (kind "test"), part B: numbers, lists and dicts.

Written for plip-nn; every doctest here passes (tests/test_corpus.py runs them).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "py_longest_run",
        r'''def longest_run(items):
    """Length of the longest stretch of equal neighbours.

    >>> longest_run([1, 1, 2, 2, 2, 3])
    3
    """
    best = run = 0
    for i, x in enumerate(items):
        run = run + 1 if i and items[i - 1] == x else 1
        best = max(best, run)
    return best
''',
    ),
    (
        "py_triangular",
        r'''def triangular_number(n: int) -> int:
    """Sum of the integers 1..n.

    >>> triangular_number(10)
    55
    """
    return n * (n + 1) // 2
''',
    ),
    (
        "py_digit_root",
        r'''def digital_root(n):
    """Repeated digit sum until a single digit remains.

    >>> digital_root(9875)
    2
    """
    while n >= 10:
        n = sum(int(d) for d in str(n))
    return n
''',
    ),
    (
        "py_lcm",
        r'''from math import gcd


def least_multiple(a: int, b: int) -> int:
    """Least common multiple of two positive integers.

    >>> least_multiple(4, 6)
    12
    """
    return a * b // gcd(a, b)
''',
    ),
    (
        "py_is_armstrong",
        r'''def is_armstrong(n):
    """True when n equals the sum of its digits raised to the digit count.

    >>> is_armstrong(153)
    True
    >>> is_armstrong(154)
    False
    """
    digits = str(n)
    return n == sum(int(d) ** len(digits) for d in digits)
''',
    ),
    (
        "py_fizzbuzz",
        r'''def fizzbuzz_word(n):
    """Fizz for multiples of 3, Buzz for 5, both for 15, else the number.

    >>> [fizzbuzz_word(i) for i in (3, 5, 15, 7)]
    ['Fizz', 'Buzz', 'FizzBuzz', '7']
    """
    word = ("Fizz" if n % 3 == 0 else "") + ("Buzz" if n % 5 == 0 else "")
    return word or str(n)
''',
    ),
    (
        "py_percent_of",
        r'''def percent_of(part: float, whole: float, places: int = 1) -> float:
    """Part as a percentage of whole.

    >>> percent_of(1, 3)
    33.3
    """
    return round(100 * part / whole, places)
''',
    ),
    (
        "py_moving_average",
        r'''def moving_average(values, window=3):
    """Means of each full window of consecutive values.

    >>> moving_average([1, 2, 3, 4, 5])
    [2.0, 3.0, 4.0]
    """
    return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]
''',
    ),
    (
        "py_cumulative_sum",
        r'''from itertools import accumulate


def prefix_sums(numbers):
    """Running totals of numbers.

    >>> prefix_sums([3, 1, 4, 1])
    [3, 4, 8, 9]
    """
    return list(accumulate(numbers))
''',
    ),
    (
        "py_split_even_odd",
        r'''def split_parity(numbers: list[int]) -> tuple[list[int], list[int]]:
    """Even and odd numbers, in their original order.

    >>> split_parity([1, 2, 3, 4, 6])
    ([2, 4, 6], [1, 3])
    """
    evens = [n for n in numbers if n % 2 == 0]
    return evens, [n for n in numbers if n % 2]
''',
    ),
    (
        "py_second_smallest",
        r'''def second_smallest(values):
    """The second smallest distinct value, or None.

    >>> second_smallest([5, 1, 4, 1, 2])
    2
    """
    distinct = sorted(set(values))
    return distinct[1] if len(distinct) > 1 else None
''',
    ),
    (
        "py_zip_dict",
        r'''def pair_up(keys, values, default=None):
    """Dict from keys to values; missing values get default.

    >>> pair_up(["a", "b", "c"], [1, 2])
    {'a': 1, 'b': 2, 'c': None}
    """
    return {k: values[i] if i < len(values) else default for i, k in enumerate(keys)}
''',
    ),
    (
        "py_sum_by_key",
        r'''def total_by_key(rows, key, field):
    """Sum field over rows (dicts) grouped by key.

    >>> total_by_key([{"k": "a", "n": 2}, {"k": "b", "n": 1}, {"k": "a", "n": 5}], "k", "n")
    {'a': 7, 'b': 1}
    """
    totals = {}
    for row in rows:
        totals[row[key]] = totals.get(row[key], 0) + row[field]
    return totals
''',
    ),
    (
        "py_without_keys",
        r'''def without_keys(mapping: dict, *drop: str) -> dict:
    """Copy of mapping minus the given keys.

    >>> without_keys({"a": 1, "b": 2, "c": 3}, "b", "c")
    {'a': 1}
    """
    return {k: v for k, v in mapping.items() if k not in drop}
''',
    ),
    (
        "py_nested_get",
        r'''def dig(data, path, default=None):
    """Follow a dotted path through nested dicts.

    >>> dig({"a": {"b": {"c": 7}}}, "a.b.c")
    7
    >>> dig({"a": {}}, "a.x", 0)
    0
    """
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data
''',
    ),
    (
        "py_transpose",
        r'''def transpose_rows(matrix):
    """Rows become columns.

    >>> transpose_rows([[1, 2, 3], [4, 5, 6]])
    [[1, 4], [2, 5], [3, 6]]
    """
    return [list(col) for col in zip(*matrix)]
''',
    ),
    (
        "py_matrix_trace",
        r'''def matrix_trace(matrix: list[list[int]]) -> int:
    """Sum of the main diagonal of a square matrix.

    >>> matrix_trace([[1, 2], [3, 4]])
    5
    """
    return sum(matrix[i][i] for i in range(len(matrix)))
''',
    ),
    (
        "py_window_max",
        r'''def window_peaks(values, width):
    """Maximum of each sliding window of the given width.

    >>> window_peaks([1, 3, 2, 5, 4], 2)
    [3, 3, 5, 5]
    """
    return [max(values[i:i + width]) for i in range(len(values) - width + 1)]
''',
    ),
    (
        "py_argmax",
        r'''def index_of_max(values):
    """Index of the first largest value.

    >>> index_of_max([3, 8, 2, 8])
    1
    """
    return max(range(len(values)), key=lambda i: (values[i], -i))
''',
    ),
    (
        "py_normalize_scores",
        r'''def rescale(values, low=0.0, high=1.0):
    """Map values linearly onto [low, high].

    >>> rescale([2, 4, 6])
    [0.0, 0.5, 1.0]
    """
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1
    return [low + (v - lo) * (high - low) / span for v in values]
''',
    ),
    (
        "py_compound_interest",
        r'''def compound(principal: float, rate: float, years: int, per_year: int = 1) -> float:
    """Balance after compounding, rounded to cents.

    >>> compound(1000, 0.05, 2)
    1102.5
    """
    factor = (1 + rate / per_year) ** (per_year * years)
    return round(principal * factor, 2)
''',
    ),
    (
        "py_bmi",
        r'''def body_mass_index(weight_kg, height_m):
    """Weight divided by the square of height, one decimal.

    >>> body_mass_index(70, 1.75)
    22.9
    """
    return round(weight_kg / height_m ** 2, 1)
''',
    ),
    (
        "py_is_perfect",
        r'''def is_perfect_number(n: int) -> bool:
    """True when n equals the sum of its proper divisors.

    >>> is_perfect_number(28)
    True
    >>> is_perfect_number(12)
    False
    """
    return n > 1 and sum(d for d in range(1, n) if n % d == 0) == n
''',
    ),
    (
        "py_divisors",
        r'''def divisors_of(n):
    """All positive divisors of n in increasing order.

    >>> divisors_of(12)
    [1, 2, 3, 4, 6, 12]
    """
    return [d for d in range(1, n + 1) if n % d == 0]
''',
    ),
    (
        "py_fib_list",
        r'''def fibonacci_upto(limit):
    """Fibonacci numbers not above limit.

    >>> fibonacci_upto(20)
    [0, 1, 1, 2, 3, 5, 8, 13]
    """
    out, a, b = [], 0, 1
    while a <= limit:
        out.append(a)
        a, b = b, a + b
    return out
''',
    ),
    (
        "py_from_base",
        r'''def from_base(digits: str, base: int) -> int:
    """Integer value of digits written in base (2-16).

    >>> from_base("ff", 16)
    255
    """
    value = 0
    for ch in digits.lower():
        value = value * base + "0123456789abcdef".index(ch)
    return value
''',
    ),
    (
        "py_round_to_step",
        r'''def snap(value, step=5):
    """Round value to the nearest multiple of step.

    >>> snap(12), snap(13)
    (10, 15)
    """
    return step * round(value / step)
''',
    ),
    (
        "py_histogram_bins",
        r'''def bin_counts(values, width, start=0):
    """Count values per bin of the given width.

    >>> bin_counts([1, 4, 5, 9, 12], 5)
    {0: 2, 5: 2, 10: 1}
    """
    counts = {}
    for v in values:
        left = start + (v - start) // width * width
        counts[left] = counts.get(left, 0) + 1
    return counts
''',
    ),
    (
        "py_unique_sorted",
        r'''def sorted_unique(items, reverse=False):
    """Distinct items in sorted order.

    >>> sorted_unique([3, 1, 3, 2, 1])
    [1, 2, 3]
    """
    return sorted(set(items), reverse=reverse)
''',
    ),
    (
        "py_take_while",
        r'''def leading_positive(numbers):
    """The numbers before the first one that is not positive.

    >>> leading_positive([4, 2, 0, 5])
    [4, 2]
    """
    out = []
    for n in numbers:
        if n <= 0:
            break
        out.append(n)
    return out
''',
    ),
    (
        "py_pairs_summing",
        r'''def pairs_with_sum(numbers, target):
    """Index pairs (i < j) whose values add up to target.

    >>> pairs_with_sum([1, 4, 2, 3], 5)
    [(0, 1), (2, 3)]
    """
    return [
        (i, j)
        for i in range(len(numbers))
        for j in range(i + 1, len(numbers))
        if numbers[i] + numbers[j] == target
    ]
''',
    ),
    (
        "py_mode",
        r'''from collections import Counter


def most_frequent(items):
    """The most common item; the earliest one wins ties.

    >>> most_frequent(["b", "a", "b", "a", "c"])
    'b'
    """
    return Counter(items).most_common(1)[0][0]
''',
    ),
    (
        "py_range_overlap",
        r'''def overlap_length(start_a, end_a, start_b, end_b):
    """Length of the overlap of two half-open intervals.

    >>> overlap_length(0, 10, 5, 20)
    5
    >>> overlap_length(0, 3, 4, 9)
    0
    """
    return max(0, min(end_a, end_b) - max(start_a, start_b))
''',
    ),
]
