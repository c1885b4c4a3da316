"""More Rust functions with #[test] tests that call them (kind "test"), part C: algorithms,
structs with impl methods, enums.

About half of the test names do not contain the function's name (``it_works``, ...).
Written for plip-nn; every sample compiles and passes with ``rustc --test`` (slow test).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "rs_bubble_sorted",
        r"""fn bubble_sorted(items: &[i32]) -> Vec<i32> {
    let mut out = items.to_vec();
    for end in (1..out.len()).rev() {
        for i in 0..end {
            if out[i] > out[i + 1] {
                out.swap(i, i + 1);
            }
        }
    }
    out
}

#[test]
fn sorts_small_list() {
    assert_eq!(bubble_sorted(&[4, 1, 3, 2]), vec![1, 2, 3, 4]);
}
""",
    ),
    (
        "rs_merge_sorted",
        r"""fn merge_sorted(left: &[i32], right: &[i32]) -> Vec<i32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < left.len() && j < right.len() {
        if left[i] <= right[j] {
            out.push(left[i]);
            i += 1;
        } else {
            out.push(right[j]);
            j += 1;
        }
    }
    [out, left[i..].to_vec(), right[j..].to_vec()].concat()
}

#[test]
fn test_merge_sorted() {
    assert_eq!(merge_sorted(&[1, 4, 6], &[2, 3, 7]), [1, 2, 3, 4, 6, 7]);
}
""",
    ),
    (
        "rs_edit_distance",
        r"""fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<_> = b.chars().collect();
    let mut d: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.chars().enumerate() {
        let mut prev = d[0];
        d[0] = i + 1;
        for j in 1..=b.len() {
            let sub = prev + (x != b[j - 1]) as usize;
            prev = d[j];
            d[j] = (d[j] + 1).min(d[j - 1] + 1).min(sub);
        }
    }
    d[b.len()]
}

#[test]
fn kitten() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}
""",
    ),
    (
        "rs_best_slice_sum",
        r"""fn best_slice_sum(numbers: &[i64]) -> i64 {
    let mut best = numbers[0];
    let mut cur = numbers[0];
    for &n in &numbers[1..] {
        cur = n.max(cur + n);
        best = best.max(cur);
    }
    best
}

#[test]
fn test_best_slice_sum() {
    assert_eq!(best_slice_sum(&[-2, 1, -3, 4, -1, 2, 1, -5]), 6);
}
""",
    ),
    (
        "rs_count_primes",
        r"""fn count_primes(limit: usize) -> usize {
    if limit < 3 {
        return 0;
    }
    let mut sieve = vec![true; limit];
    sieve[0] = false;
    sieve[1] = false;
    let mut p = 2;
    while p * p < limit {
        if sieve[p] {
            (p * p..limit).step_by(p).for_each(|m| sieve[m] = false);
        }
        p += 1;
    }
    sieve.iter().filter(|&&s| s).count()
}

#[test]
fn below_thirty() {
    assert_eq!(count_primes(30), 10);
}
""",
    ),
    (
        "rs_stair_ways",
        r"""fn stair_ways(steps: usize, max_jump: usize) -> u64 {
    let mut ways = vec![0u64; steps + 1];
    ways[0] = 1;
    for i in 1..=steps {
        ways[i] = (1..=max_jump.min(i)).map(|j| ways[i - j]).sum();
    }
    ways[steps]
}

#[test]
fn test_stair_ways() {
    assert_eq!(stair_ways(5, 2), 8);
}
""",
    ),
    (
        "rs_bracket_depth",
        r"""fn bracket_depth(text: &str) -> usize {
    let (mut depth, mut best) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '(' => {
                depth += 1;
                best = best.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    best
}

#[test]
fn nested_twice() {
    assert_eq!(bracket_depth("a(b(c)d)(e)"), 2);
}
""",
    ),
    (
        "rs_best_value",
        r"""fn best_value(weights: &[usize], values: &[u32], capacity: usize) -> u32 {
    let mut table = vec![0u32; capacity + 1];
    for (&w, &v) in weights.iter().zip(values) {
        for c in (w..=capacity).rev() {
            table[c] = table[c].max(table[c - w] + v);
        }
    }
    table[capacity]
}

#[test]
fn test_best_value() {
    assert_eq!(best_value(&[1, 3, 4], &[15, 20, 30], 4), 35);
}
""",
    ),
    (
        "rs_fewest_coins",
        r"""fn fewest_coins(coins: &[usize], amount: usize) -> Option<usize> {
    let mut best = vec![usize::MAX; amount + 1];
    best[0] = 0;
    for a in 1..=amount {
        for &c in coins {
            if c <= a && best[a - c] != usize::MAX {
                best[a] = best[a].min(best[a - c] + 1);
            }
        }
    }
    (best[amount] != usize::MAX).then(|| best[amount])
}

#[test]
fn makes_change() {
    assert_eq!(fewest_coins(&[1, 5, 10], 27), Some(5));
}
""",
    ),
    (
        "rs_manhattan",
        r"""fn manhattan(x1: i32, y1: i32, x2: i32, y2: i32) -> i32 {
    (x1 - x2).abs() + (y1 - y2).abs()
}

#[test]
fn test_manhattan() {
    assert_eq!(manhattan(1, 2, 4, 6), 7);
}
""",
    ),
    (
        "rs_lerp",
        r"""fn lerp(start: f64, end: f64, t: f64) -> f64 {
    start + (end - start) * t
}

#[test]
fn quarter_way() {
    assert_eq!(lerp(10.0, 20.0, 0.25), 12.5);
}
""",
    ),
    (
        "rs_real_roots",
        r"""fn real_roots(a: f64, b: f64, c: f64) -> Vec<f64> {
    let disc = b * b - 4.0 * a * c;
    if disc < 0.0 {
        return vec![];
    }
    let r = disc.sqrt();
    let (x1, x2) = ((-b - r) / (2.0 * a), (-b + r) / (2.0 * a));
    if disc == 0.0 { vec![x1] } else { vec![x1.min(x2), x1.max(x2)] }
}

#[test]
fn test_real_roots() {
    assert_eq!(real_roots(1.0, -3.0, 2.0), vec![1.0, 2.0]);
}
""",
    ),
    (
        "rs_bounding_box",
        r"""fn bounding_box(points: &[(i32, i32)]) -> Option<(i32, i32, i32, i32)> {
    let &(x0, y0) = points.first()?;
    Some(points.iter().fold((x0, y0, x0, y0), |(a, b, c, d), &(x, y)| {
        (a.min(x), b.min(y), c.max(x), d.max(y))
    }))
}

#[test]
fn handles_empty() {
    assert_eq!(bounding_box(&[(1, 5), (3, 2), (-1, 4)]), Some((-1, 2, 3, 5)));
    assert_eq!(bounding_box(&[]), None);
}
""",
    ),
    (
        "rs_luhn_valid",
        r"""fn luhn_valid(number: &str) -> bool {
    let mut total = 0;
    for (i, c) in number.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else { return false };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        total += d;
    }
    total % 10 == 0
}

#[test]
fn test_luhn_valid() {
    assert!(luhn_valid("79927398713"));
    assert!(!luhn_valid("79927398710"));
}
""",
    ),
    (
        "rs_clock_minutes",
        r"""fn clock_minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then(|| h * 60 + m)
}

#[test]
fn morning() {
    assert_eq!(clock_minutes("07:45"), Some(465));
}
""",
    ),
    (
        "rs_gray_code",
        r"""fn gray_code(bits: u32) -> Vec<u32> {
    (0..1u32 << bits).map(|i| i ^ (i >> 1)).collect()
}

#[test]
fn test_gray_code() {
    assert_eq!(gray_code(3), vec![0, 1, 3, 2, 6, 7, 5, 4]);
}
""",
    ),
    (
        "rs_rotate_clockwise",
        r"""fn rotate_clockwise(grid: &[Vec<i32>]) -> Vec<Vec<i32>> {
    let rows = grid.len();
    let cols = grid.first().map_or(0, |r| r.len());
    (0..cols)
        .map(|c| (0..rows).rev().map(|r| grid[r][c]).collect())
        .collect()
}

#[test]
fn two_by_two() {
    assert_eq!(rotate_clockwise(&[vec![1, 2], vec![3, 4]]), vec![vec![3, 1], vec![4, 2]]);
}
""",
    ),
    (
        "rs_account_withdraw",
        r"""struct Account {
    balance: u64,
}

impl Account {
    fn withdraw(&mut self, amount: u64) -> Result<u64, String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }
}

#[test]
fn test_withdraw() {
    let mut acct = Account { balance: 50 };
    assert_eq!(acct.withdraw(20), Ok(30));
    assert!(acct.withdraw(100).is_err());
}
""",
    ),
    (
        "rs_rect_scaled",
        r"""struct Rect {
    width: f64,
    height: f64,
}

impl Rect {
    fn scaled(&self, fx: f64, fy: f64) -> Rect {
        Rect { width: self.width * fx, height: self.height * fy }
    }
}

#[test]
fn doubles_size() {
    let r = Rect { width: 2.0, height: 3.0 }.scaled(2.0, 2.0);
    assert_eq!((r.width, r.height), (4.0, 6.0));
}
""",
    ),
    (
        "rs_inventory_restock",
        r"""use std::collections::HashMap;

struct Inventory {
    stock: HashMap<String, u32>,
}

impl Inventory {
    fn restock(&mut self, item: &str, quantity: u32) -> u32 {
        let n = self.stock.entry(item.to_string()).or_insert(0);
        *n += quantity;
        *n
    }
}

#[test]
fn test_restock() {
    let mut inv = Inventory { stock: HashMap::new() };
    assert_eq!(inv.restock("apple", 3), 3);
}
""",
    ),
    (
        "rs_matrix2_determinant",
        r"""struct Matrix2 {
    a: i64,
    b: i64,
    c: i64,
    d: i64,
}

impl Matrix2 {
    fn determinant(&self) -> i64 {
        self.a * self.d - self.b * self.c
    }
}

#[test]
fn it_works() {
    let m = Matrix2 { a: 3, b: 8, c: 4, d: 6 };
    assert_eq!(m.determinant(), -14);
}
""",
    ),
    (
        "rs_task_queue",
        r"""use std::collections::VecDeque;

struct TaskQueue {
    tasks: VecDeque<String>,
}

impl TaskQueue {
    fn next_task(&mut self) -> Option<String> {
        self.tasks.pop_front()
    }
}

#[test]
fn test_next_task() {
    let mut q = TaskQueue { tasks: VecDeque::from(vec!["build".to_string()]) };
    assert_eq!(q.next_task().as_deref(), Some("build"));
    assert_eq!(q.next_task(), None);
}
""",
    ),
    (
        "rs_money_split",
        r"""struct Money {
    cents: u64,
}

impl Money {
    fn split_evenly(&self, people: u64) -> Vec<u64> {
        let (base, extra) = (self.cents / people, self.cents % people);
        (0..people).map(|i| base + (i < extra) as u64).collect()
    }
}

#[test]
fn remainder_goes_first() {
    assert_eq!(Money { cents: 1000 }.split_evenly(3), vec![334, 333, 333]);
}
""",
    ),
    (
        "rs_interval_contains",
        r"""#[derive(Debug, Clone, Copy)]
struct Interval {
    low: i32,
    high: i32,
}

impl Interval {
    fn includes_value(&self, value: i32) -> bool {
        self.low <= value && value <= self.high
    }
}

#[test]
fn test_includes_value() {
    let iv = Interval { low: 1, high: 5 };
    assert!(iv.includes_value(3));
    assert!(!iv.includes_value(9));
}
""",
    ),
    (
        "rs_circle_circumference",
        r"""struct Circle {
    radius: f64,
}

impl Circle {
    fn circumference(&self) -> f64 {
        2.0 * std::f64::consts::PI * self.radius
    }
}

#[test]
fn unit_circle() {
    let c = Circle { radius: 1.0 };
    assert!((c.circumference() - 6.283).abs() < 1e-3);
}
""",
    ),
]
