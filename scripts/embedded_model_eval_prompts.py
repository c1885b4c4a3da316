"""Held-out completion prompts for checking the embedded tiny code model.

These prompts were written by hand for plip-nn issue #4 and are never used as training data:
``scripts/train_embedded_model.py`` excludes their function names from the synthetic generator
and reports whether any prompt's signature line occurs verbatim in the gathered training text.

* ``PYTHON_DOCTEST_PROMPTS``: each prompt ends inside the docstring of a function, right after
  ``>>> ``. The check asks whether the greedy completion's first line calls that function.
* ``RUST_TEST_PROMPTS``: each prompt ends with a function followed by ``#[test]\\nfn ``. The check
  asks whether the greedy completion is a test function (identifier, ``()``, ``{`` and a
  statement such as an ``assert``).

Some prompts start with an unrelated helper (with its own doctest or test) so that the model
has to pick the function right above the marker, not merely the first one in the file.
"""

from __future__ import annotations

PYTHON_DOCTEST_PROMPTS: list[tuple[str, str]] = [
    (
        "celsius_to_fahrenheit",
        "def celsius_to_fahrenheit(celsius):\n"
        '    """Convert a temperature from degrees Celsius to degrees Fahrenheit.\n'
        "\n"
        "    >>> ",
    ),
    (
        "gcd",
        "def gcd(a, b):\n"
        '    """Return the greatest common divisor of two non-negative integers.\n'
        "\n"
        "    >>> ",
    ),
    (
        "is_leap_year",
        "def is_leap_year(year: int) -> bool:\n"
        '    """Tell whether ``year`` is a leap year in the Gregorian calendar.\n'
        "\n"
        "    >>> ",
    ),
    (
        "collapse_spaces",
        "import re\n"
        "\n"
        "\n"
        "def collapse_spaces(text):\n"
        '    """Replace every run of whitespace in ``text`` by a single space.\n'
        "\n"
        "    >>> ",
    ),
    (
        "digit_sum",
        "def digit_sum(number: int) -> int:\n"
        '    """Add up the decimal digits of a non-negative integer.\n'
        "\n"
        "    >>> ",
    ),
    (
        "running_total",
        "def running_total(numbers):\n"
        '    """Return the list of prefix sums of ``numbers``.\n'
        "\n"
        "    Args:\n"
        "        numbers: A list of integers.\n"
        "\n"
        "    Returns:\n"
        "        A list of the same length.\n"
        "\n"
        "    >>> ",
    ),
    (
        "initials",
        "def initials(full_name):\n"
        '    """Return the upper-case initials of a person\'s name.\n'
        "\n"
        "    >>> ",
    ),
    (
        "chunk_list",
        "def chunk_list(items, size):\n"
        '    """Split ``items`` into consecutive chunks of at most ``size`` elements.\n'
        "\n"
        "    >>> ",
    ),
    (
        "count_uppercase",
        "def count_uppercase(text: str) -> int:\n"
        '    """Count the upper-case letters in ``text``.\n'
        "\n"
        "    >>> ",
    ),
    (
        "merge_dicts",
        "def merge_dicts(first, second):\n"
        '    """Merge two dictionaries; keys in ``second`` win.\n'
        "\n"
        "    >>> ",
    ),
    (
        "triangle_area",
        "def triangle_area(base, height):\n"
        '    """Compute the area of a triangle from its base and height.\n'
        "\n"
        "    >>> ",
    ),
    (
        "snake_to_camel",
        "def snake_to_camel(name: str) -> str:\n"
        '    """Turn a snake_case identifier into lowerCamelCase.\n'
        "\n"
        "    >>> ",
    ),
    (
        "nth_prime",
        "def is_prime(n):\n"
        '    """Return True if n is prime.\n'
        "\n"
        "    >>> is_prime(7)\n"
        "    True\n"
        '    """\n'
        "    if n < 2:\n"
        "        return False\n"
        "    return all(n % d for d in range(2, int(n ** 0.5) + 1))\n"
        "\n"
        "\n"
        "def nth_prime(n):\n"
        '    """Return the n-th prime number, counting from 1.\n'
        "\n"
        "    >>> ",
    ),
    (
        "second_largest",
        "def second_largest(values):\n"
        '    """Return the second largest distinct value in ``values``.\n'
        "\n"
        "    >>> ",
    ),
    (
        "format_duration",
        "def format_duration(seconds: int) -> str:\n"
        '    """Format a number of seconds as ``H:MM:SS``.\n'
        "\n"
        "    >>> ",
    ),
    (
        "strip_comments",
        "def strip_comments(lines):\n"
        '    """Drop everything after a ``#`` on each line and remove empty lines.\n'
        "\n"
        "    >>> ",
    ),
    (
        "hamming_distance",
        "def hamming_distance(left: str, right: str) -> int:\n"
        '    """Count the positions at which two equal-length strings differ.\n'
        "\n"
        "    >>> ",
    ),
    (
        "parse_version",
        "def parse_version(text):\n"
        '    """Parse a dotted version string into a tuple of integers.\n'
        "\n"
        "    >>> ",
    ),
    (
        "rotate_left",
        "from typing import List\n"
        "\n"
        "\n"
        "def rotate_left(items: List[int], steps: int) -> List[int]:\n"
        '    """Rotate a list to the left by ``steps`` positions.\n'
        "\n"
        "    >>> ",
    ),
    (
        "to_binary",
        "def to_binary(n):\n"
        '    """Return the binary representation of ``n`` without the ``0b`` prefix.\n'
        "\n"
        "    >>> ",
    ),
    (
        "percent_change",
        "def clamp_ratio(ratio):\n"
        '    """Clamp ``ratio`` to the interval [0, 1].\n'
        "\n"
        "    >>> clamp_ratio(1.5)\n"
        "    1.0\n"
        '    """\n'
        "    return max(0.0, min(1.0, ratio))\n"
        "\n"
        "\n"
        "def percent_change(old, new):\n"
        '    """Return the relative change from ``old`` to ``new`` in percent.\n'
        "\n"
        "    >>> ",
    ),
    (
        "word_lengths",
        "def word_lengths(sentence):\n"
        '    """Map each word of ``sentence`` to its length.\n'
        "\n"
        "    Example:\n"
        "\n"
        "    >>> ",
    ),
    (
        "flatten_once",
        "def flatten_once(nested):\n"
        '    """Flatten one level of nesting of a list of lists.\n'
        "\n"
        "    >>> ",
    ),
    (
        "safe_divide",
        "def safe_divide(numerator, denominator, default=0.0):\n"
        '    """Divide two numbers, returning ``default`` when dividing by zero.\n'
        "\n"
        "    >>> ",
    ),
]

RUST_TEST_PROMPTS: list[tuple[str, str]] = [
    (
        "gcd",
        "fn gcd(mut a: u64, mut b: u64) -> u64 {\n"
        "    while b != 0 {\n"
        "        let t = b;\n"
        "        b = a % b;\n"
        "        a = t;\n"
        "    }\n"
        "    a\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "celsius_to_fahrenheit",
        "/// Converts degrees Celsius to degrees Fahrenheit.\n"
        "pub fn celsius_to_fahrenheit(celsius: f64) -> f64 {\n"
        "    celsius * 9.0 / 5.0 + 32.0\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "is_leap_year",
        "fn is_leap_year(year: u32) -> bool {\n"
        "    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "digit_sum",
        "fn digit_sum(mut n: u64) -> u64 {\n"
        "    let mut sum = 0;\n"
        "    while n > 0 {\n"
        "        sum += n % 10;\n"
        "        n /= 10;\n"
        "    }\n"
        "    sum\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "count_uppercase",
        "pub fn count_uppercase(text: &str) -> usize {\n"
        "    text.chars().filter(|c| c.is_uppercase()).count()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "running_total",
        "fn running_total(values: &[i64]) -> Vec<i64> {\n"
        "    let mut acc = 0;\n"
        "    values\n"
        "        .iter()\n"
        "        .map(|v| {\n"
        "            acc += v;\n"
        "            acc\n"
        "        })\n"
        "        .collect()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "initials",
        "fn initials(name: &str) -> String {\n"
        "    name.split_whitespace()\n"
        "        .filter_map(|w| w.chars().next())\n"
        "        .flat_map(|c| c.to_uppercase())\n"
        "        .collect()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "triangle_area",
        "/// Area of a triangle given its base and height.\n"
        "fn triangle_area(base: f64, height: f64) -> f64 {\n"
        "    0.5 * base * height\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "hamming_distance",
        "fn hamming_distance(a: &str, b: &str) -> usize {\n"
        "    a.chars().zip(b.chars()).filter(|(x, y)| x != y).count()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "second_largest",
        "fn second_largest(values: &[i32]) -> Option<i32> {\n"
        "    let mut sorted: Vec<i32> = values.to_vec();\n"
        "    sorted.sort_unstable();\n"
        "    sorted.dedup();\n"
        "    sorted.iter().rev().nth(1).copied()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "to_binary",
        'fn to_binary(n: u32) -> String {\n    format!("{:b}", n)\n}\n\n#[test]\nfn ',
    ),
    (
        "parse_version",
        "fn parse_version(text: &str) -> Vec<u32> {\n"
        "    text.split('.').filter_map(|p| p.parse().ok()).collect()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "nth_prime",
        "fn is_prime(n: u64) -> bool {\n"
        "    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn seven_is_prime() {\n"
        "    assert!(is_prime(7));\n"
        "}\n"
        "\n"
        "fn nth_prime(n: usize) -> u64 {\n"
        "    (2..).filter(|&k| is_prime(k)).nth(n - 1).unwrap()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "snake_to_camel",
        "pub fn snake_to_camel(name: &str) -> String {\n"
        "    let mut out = String::new();\n"
        "    let mut upper = false;\n"
        "    for c in name.chars() {\n"
        "        if c == '_' {\n"
        "            upper = true;\n"
        "        } else if upper {\n"
        "            out.extend(c.to_uppercase());\n"
        "            upper = false;\n"
        "        } else {\n"
        "            out.push(c);\n"
        "        }\n"
        "    }\n"
        "    out\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "rotate_left",
        "fn rotate_left(items: &[i32], steps: usize) -> Vec<i32> {\n"
        "    if items.is_empty() {\n"
        "        return Vec::new();\n"
        "    }\n"
        "    let k = steps % items.len();\n"
        "    [&items[k..], &items[..k]].concat()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "percent_change",
        "fn percent_change(old: f64, new: f64) -> f64 {\n"
        "    (new - old) / old * 100.0\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "flatten_once",
        "fn flatten_once(nested: Vec<Vec<u8>>) -> Vec<u8> {\n"
        "    nested.into_iter().flatten().collect()\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "safe_divide",
        "fn safe_divide(numerator: i32, denominator: i32) -> Option<i32> {\n"
        "    if denominator == 0 {\n"
        "        None\n"
        "    } else {\n"
        "        Some(numerator / denominator)\n"
        "    }\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "format_duration",
        "use std::fmt::Write;\n"
        "\n"
        "fn format_duration(seconds: u64) -> String {\n"
        "    let mut out = String::new();\n"
        '    write!(out, "{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60).unwrap();\n'
        "    out\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "collapse_spaces",
        "fn collapse_spaces(text: &str) -> String {\n"
        '    text.split_whitespace().collect::<Vec<_>>().join(" ")\n'
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "word_count",
        "use std::collections::HashMap;\n"
        "\n"
        "fn word_count(text: &str) -> HashMap<&str, usize> {\n"
        "    let mut counts = HashMap::new();\n"
        "    for word in text.split_whitespace() {\n"
        "        *counts.entry(word).or_insert(0) += 1;\n"
        "    }\n"
        "    counts\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "strip_comment",
        "/// Removes a trailing `//` comment from a line of code.\n"
        "fn strip_comment(line: &str) -> &str {\n"
        '    match line.find("//") {\n'
        "        Some(i) => line[..i].trim_end(),\n"
        "        None => line,\n"
        "    }\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "median",
        "fn mean(values: &[f64]) -> f64 {\n"
        "    values.iter().sum::<f64>() / values.len() as f64\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn mean_of_two() {\n"
        "    assert_eq!(mean(&[1.0, 3.0]), 2.0);\n"
        "}\n"
        "\n"
        "fn median(values: &mut [i32]) -> i32 {\n"
        "    values.sort();\n"
        "    values[values.len() / 2]\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
    (
        "bit_count",
        "const fn bit_count(mut x: u32) -> u32 {\n"
        "    let mut n = 0;\n"
        "    while x != 0 {\n"
        "        x &= x - 1;\n"
        "        n += 1;\n"
        "    }\n"
        "    n\n"
        "}\n"
        "\n"
        "#[test]\n"
        "fn ",
    ),
]
