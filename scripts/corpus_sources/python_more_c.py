"""More Python functions with doctests (kind "test"), part C: algorithms and class methods.

Written for plip-nn; every doctest here passes (tests/test_corpus.py runs them).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "py_bubble_sort",
        r'''def bubble_sorted(items):
    """Sorted copy of items by bubble sort.

    >>> bubble_sorted([4, 1, 3, 2])
    [1, 2, 3, 4]
    """
    out = list(items)
    for end in range(len(out) - 1, 0, -1):
        for i in range(end):
            if out[i] > out[i + 1]:
                out[i], out[i + 1] = out[i + 1], out[i]
    return out
''',
    ),
    (
        "py_merge_sorted",
        r'''def merge_sorted(left, right):
    """Merge two sorted lists into one sorted list.

    >>> merge_sorted([1, 4, 6], [2, 3, 7])
    [1, 2, 3, 4, 6, 7]
    """
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            out.append(left[i]); i += 1
        else:
            out.append(right[j]); j += 1
    return out + left[i:] + right[j:]
''',
    ),
    (
        "py_edit_distance",
        r'''def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between a and b.

    >>> edit_distance("kitten", "sitting")
    3
    """
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]
''',
    ),
    (
        "py_max_subarray",
        r'''def best_slice_sum(numbers):
    """Largest sum of a non-empty contiguous slice (Kadane).

    >>> best_slice_sum([-2, 1, -3, 4, -1, 2, 1, -5])
    6
    """
    best = cur = numbers[0]
    for n in numbers[1:]:
        cur = max(n, cur + n)
        best = max(best, cur)
    return best
''',
    ),
    (
        "py_sieve_count",
        r'''def count_primes(limit: int) -> int:
    """Number of primes below limit (sieve of Eratosthenes).

    >>> count_primes(30)
    10
    """
    if limit < 3:
        return 0
    sieve = [True] * limit
    sieve[0] = sieve[1] = False
    for p in range(2, int(limit ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = [False] * len(range(p * p, limit, p))
    return sum(sieve)
''',
    ),
    (
        "py_stair_ways",
        r'''def stair_ways(steps, max_jump=2):
    """Ways to climb steps stairs taking 1..max_jump at a time.

    >>> stair_ways(5)
    8
    """
    ways = [1] + [0] * steps
    for i in range(1, steps + 1):
        ways[i] = sum(ways[i - j] for j in range(1, max_jump + 1) if j <= i)
    return ways[steps]
''',
    ),
    (
        "py_topo_order",
        r'''def build_order(deps):
    """Order tasks so each follows its dependencies (dict task -> list).

    >>> build_order({"app": ["lib"], "lib": ["core"], "core": []})
    ['core', 'lib', 'app']
    """
    order, done = [], set()

    def visit(task):
        if task not in done:
            done.add(task)
            for dep in deps.get(task, []):
                visit(dep)
            order.append(task)

    for task in deps:
        visit(task)
    return order
''',
    ),
    (
        "py_matching_brackets",
        r'''def bracket_depth(text, open_char="(", close_char=")"):
    """Maximum nesting depth of brackets in text.

    >>> bracket_depth("a(b(c)d)(e)")
    2
    """
    depth = best = 0
    for ch in text:
        if ch == open_char:
            depth += 1
            best = max(best, depth)
        elif ch == close_char:
            depth -= 1
    return best
''',
    ),
    (
        "py_knapsack",
        r'''def best_value(weights, values, capacity):
    """0/1 knapsack: largest total value within capacity.

    >>> best_value([1, 3, 4], [15, 20, 30], 4)
    35
    """
    table = [0] * (capacity + 1)
    for w, v in zip(weights, values):
        for c in range(capacity, w - 1, -1):
            table[c] = max(table[c], table[c - w] + v)
    return table[capacity]
''',
    ),
    (
        "py_coin_change",
        r'''def fewest_coins(coins: list[int], amount: int) -> int:
    """Fewest coins summing to amount, or -1.

    >>> fewest_coins([1, 5, 10], 27)
    5
    """
    best = [0] + [amount + 1] * amount
    for a in range(1, amount + 1):
        for c in coins:
            if c <= a:
                best[a] = min(best[a], best[a - c] + 1)
    return best[amount] if best[amount] <= amount else -1
''',
    ),
    (
        "py_manhattan",
        r'''def manhattan(x1, y1, x2, y2):
    """Taxicab distance between two grid points.

    >>> manhattan(1, 2, 4, 6)
    7
    """
    return abs(x1 - x2) + abs(y1 - y2)
''',
    ),
    (
        "py_lerp",
        r'''def lerp(start: float, end: float, t: float) -> float:
    """Linear interpolation between start and end.

    >>> lerp(10, 20, 0.25)
    12.5
    """
    return start + (end - start) * t
''',
    ),
    (
        "py_quadratic_roots",
        r'''import math


def real_roots(a, b, c):
    """Real roots of a*x**2 + b*x + c, smallest first.

    >>> real_roots(1, -3, 2)
    [1.0, 2.0]
    """
    disc = b * b - 4 * a * c
    if disc < 0:
        return []
    r = math.sqrt(disc)
    return sorted({(-b - r) / (2 * a), (-b + r) / (2 * a)})
''',
    ),
    (
        "py_bounding_box",
        r'''def bounding_box(points):
    """(min_x, min_y, max_x, max_y) of a list of points.

    >>> bounding_box([(1, 5), (3, 2), (-1, 4)])
    (-1, 2, 3, 5)
    """
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    return min(xs), min(ys), max(xs), max(ys)
''',
    ),
    (
        "py_spiral",
        r'''def spiral_order(matrix):
    """Elements of a matrix read clockwise from the top left.

    >>> spiral_order([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    [1, 2, 3, 6, 9, 8, 7, 4, 5]
    """
    out = []
    while matrix:
        out += matrix.pop(0)
        matrix = [list(row) for row in zip(*matrix)][::-1]
    return out
''',
    ),
    (
        "py_luhn",
        r'''def luhn_valid(number: str) -> bool:
    """Luhn checksum test for a string of digits.

    >>> luhn_valid("79927398713")
    True
    """
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0
''',
    ),
    (
        "py_time_to_minutes",
        r'''def clock_minutes(hhmm):
    """Minutes since midnight of a 'HH:MM' time.

    >>> clock_minutes("07:45")
    465
    """
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
''',
    ),
    (
        "py_bank_account",
        r'''class Account:
    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def withdraw(self, amount):
        """Take amount out if covered; return the new balance.

        >>> Account("ann", 50).withdraw(20)
        30
        """
        if amount > self.balance:
            raise ValueError("insufficient funds")
        self.balance -= amount
        return self.balance
''',
    ),
    (
        "py_rect_scale",
        r'''class Rect:
    def __init__(self, width, height):
        self.width, self.height = width, height

    def scaled(self, fx, fy=None):
        """A new Rect scaled by fx (and fy, default fx); returns its size.

        >>> Rect(2, 3).scaled(2)
        (4, 6)
        """
        fy = fx if fy is None else fy
        return (self.width * fx, self.height * fy)
''',
    ),
    (
        "py_inventory",
        r'''class Inventory:
    def __init__(self):
        self.stock = {}

    def restock(self, item, quantity=1):
        """Add quantity of item; return how many are in stock now.

        >>> Inventory().restock("apple", 3)
        3
        """
        self.stock[item] = self.stock.get(item, 0) + quantity
        return self.stock[item]
''',
    ),
    (
        "py_matrix_class",
        r'''class Matrix2:
    def __init__(self, a, b, c, d):
        self.rows = ((a, b), (c, d))

    def determinant(self):
        """ad - bc.

        >>> Matrix2(3, 8, 4, 6).determinant()
        -14
        """
        (a, b), (c, d) = self.rows
        return a * d - b * c
''',
    ),
    (
        "py_queue_class",
        r'''from collections import deque


class TaskQueue:
    def __init__(self, *tasks):
        self.tasks = deque(tasks)

    def next_task(self):
        """Remove and return the oldest task, or None.

        >>> TaskQueue("build", "test").next_task()
        'build'
        """
        return self.tasks.popleft() if self.tasks else None
''',
    ),
    (
        "py_temperature_log",
        r'''class TemperatureLog:
    def __init__(self, readings):
        self.readings = list(readings)

    def warmest(self, count=1):
        """The count highest readings, largest first.

        >>> TemperatureLog([12.5, 18.0, 9.5, 21.0]).warmest(2)
        [21.0, 18.0]
        """
        return sorted(self.readings, reverse=True)[:count]
''',
    ),
    (
        "py_money_class",
        r'''class Money:
    def __init__(self, cents: int):
        self.cents = cents

    def split_evenly(self, people: int) -> list:
        """Shares in cents; the first shares take the remainder.

        >>> Money(1000).split_evenly(3)
        [334, 333, 333]
        """
        base, extra = divmod(self.cents, people)
        return [base + (i < extra) for i in range(people)]
''',
    ),
    (
        "py_gradebook",
        r'''class Gradebook:
    def __init__(self):
        self.grades = {}

    def record(self, student, *scores):
        """Store scores for student; return their average so far.

        >>> Gradebook().record("li", 80, 90)
        85.0
        """
        self.grades.setdefault(student, []).extend(scores)
        marks = self.grades[student]
        return sum(marks) / len(marks)
''',
    ),
    (
        "py_static_parse",
        r'''class Color:
    def __init__(self, r, g, b):
        self.rgb = (r, g, b)

    @staticmethod
    def channel_hex(value: int) -> str:
        """Two-digit hex of a 0-255 channel value.

        >>> Color.channel_hex(171)
        'ab'
        """
        return format(max(0, min(255, value)), "02x")
''',
    ),
    (
        "py_property_like",
        r'''class Circle:
    def __init__(self, radius):
        self.radius = radius

    def circumference(self, digits=2):
        """Perimeter of the circle, rounded.

        >>> Circle(1).circumference()
        6.28
        """
        return round(2 * 3.141592653589793 * self.radius, digits)
''',
    ),
    (
        "py_namedtuple_method",
        r'''from typing import NamedTuple


class Interval(NamedTuple):
    low: int
    high: int

    def includes_value(self, value: int) -> bool:
        """True when low <= value <= high.

        >>> Interval(1, 5).includes_value(3)
        True
        """
        return self.low <= value <= self.high
''',
    ),
    (
        "py_tally_votes",
        r'''def winner(ballots, tie_break="first"):
    """Candidate with the most votes; ties go to the first (or last) seen.

    >>> winner(["amy", "bo", "bo", "amy", "cy"])
    'amy'
    """
    counts = {}
    for name in ballots:
        counts[name] = counts.get(name, 0) + 1
    names = list(counts) if tie_break == "first" else list(reversed(counts))
    return max(names, key=counts.get)
''',
    ),
    (
        "py_grid_neighbors",
        r'''def neighbours(row, col, rows, cols, diagonal=False):
    """Valid neighbour cells of (row, col) in a rows x cols grid.

    >>> neighbours(0, 0, 3, 3)
    [(0, 1), (1, 0)]
    """
    steps = [(-1, 0), (0, -1), (0, 1), (1, 0)]
    if diagonal:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    cells = [(row + dr, col + dc) for dr, dc in steps]
    return sorted((r, c) for r, c in cells if 0 <= r < rows and 0 <= c < cols)
''',
    ),
    (
        "py_price_with_tax",
        r'''def gross_price(net, tax_rate, discount=0.0, quantity=1, shipping=0.0, digits=2):
    """Total for quantity items after discount and tax, plus shipping.

    >>> gross_price(10.0, 0.2, 0.1, 3, 5.0)
    37.4
    """
    subtotal = net * quantity * (1 - discount)
    return round(subtotal * (1 + tax_rate) + shipping, digits)
''',
    ),
    (
        "py_rotate_matrix",
        r'''def rotate_clockwise(grid):
    """Rotate a matrix by 90 degrees clockwise.

    >>> rotate_clockwise([[1, 2], [3, 4]])
    [[3, 1], [4, 2]]
    """
    return [list(row) for row in zip(*grid[::-1])]
''',
    ),
    (
        "py_gray_code",
        r'''def gray_code(bits: int) -> list[int]:
    """The reflected Gray code sequence of the given width.

    >>> gray_code(3)
    [0, 1, 3, 2, 6, 7, 5, 4]
    """
    return [i ^ (i >> 1) for i in range(1 << bits)]
''',
    ),
]
