"""More Rust functions with #[test] tests that call them (kind "test"), part B: numbers,
slices and maps.

About half of the test names do not contain the function's name (``it_works``, ...).
Written for plip-nn; every sample compiles and passes with ``rustc --test`` (slow test).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "rs_longest_run",
        r"""fn longest_run(items: &[i32]) -> usize {
    let mut best = 0;
    let mut run = 0;
    for (i, x) in items.iter().enumerate() {
        run = if i > 0 && items[i - 1] == *x { run + 1 } else { 1 };
        best = best.max(run);
    }
    best
}

#[test]
fn it_works() {
    assert_eq!(longest_run(&[1, 1, 2, 2, 2, 3]), 3);
}
""",
    ),
    (
        "rs_triangular",
        r"""fn triangular_number(n: u64) -> u64 {
    n * (n + 1) / 2
}

#[test]
fn test_triangular_number() {
    assert_eq!(triangular_number(10), 55);
}
""",
    ),
    (
        "rs_digital_root",
        r"""fn digital_root(mut n: u64) -> u64 {
    while n >= 10 {
        let mut sum = 0;
        while n > 0 {
            sum += n % 10;
            n /= 10;
        }
        n = sum;
    }
    n
}

#[test]
fn single_digit() {
    assert_eq!(digital_root(9875), 2);
}
""",
    ),
    (
        "rs_least_multiple",
        r"""fn least_multiple(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        let t = x % y;
        x = y;
        y = t;
    }
    a / x * b
}

#[test]
fn test_least_multiple() {
    assert_eq!(least_multiple(4, 6), 12);
}
""",
    ),
    (
        "rs_is_armstrong",
        r"""fn is_armstrong(n: u32) -> bool {
    let digits: Vec<u32> = n.to_string().chars().filter_map(|c| c.to_digit(10)).collect();
    let k = digits.len() as u32;
    digits.iter().map(|d| d.pow(k)).sum::<u32>() == n
}

#[test]
fn known_values() {
    assert!(is_armstrong(153));
    assert!(!is_armstrong(154));
}
""",
    ),
    (
        "rs_fizzbuzz_word",
        r"""fn fizzbuzz_word(n: u32) -> String {
    match (n % 3, n % 5) {
        (0, 0) => "FizzBuzz".to_string(),
        (0, _) => "Fizz".to_string(),
        (_, 0) => "Buzz".to_string(),
        _ => n.to_string(),
    }
}

#[test]
fn test_fizzbuzz_word() {
    assert_eq!(fizzbuzz_word(15), "FizzBuzz");
    assert_eq!(fizzbuzz_word(7), "7");
}
""",
    ),
    (
        "rs_percent_of",
        r"""fn percent_of(part: f64, whole: f64) -> f64 {
    (1000.0 * part / whole).round() / 10.0
}

#[test]
fn one_third() {
    assert_eq!(percent_of(1.0, 3.0), 33.3);
}
""",
    ),
    (
        "rs_moving_average",
        r"""fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    values
        .windows(window)
        .map(|w| w.iter().sum::<f64>() / window as f64)
        .collect()
}

#[test]
fn test_moving_average() {
    assert_eq!(moving_average(&[1.0, 2.0, 3.0, 4.0, 5.0], 3), vec![2.0, 3.0, 4.0]);
}
""",
    ),
    (
        "rs_prefix_sums",
        r"""fn prefix_sums(numbers: &[i64]) -> Vec<i64> {
    let mut total = 0;
    numbers
        .iter()
        .map(|n| {
            total += n;
            total
        })
        .collect()
}

#[test]
fn running_totals() {
    assert_eq!(prefix_sums(&[3, 1, 4, 1]), vec![3, 4, 8, 9]);
}
""",
    ),
    (
        "rs_split_parity",
        r"""fn split_parity(numbers: &[i32]) -> (Vec<i32>, Vec<i32>) {
    numbers.iter().partition(|n| *n % 2 == 0)
}

#[test]
fn test_split_parity() {
    assert_eq!(split_parity(&[1, 2, 3, 4, 6]), (vec![2, 4, 6], vec![1, 3]));
}
""",
    ),
    (
        "rs_second_smallest",
        r"""fn second_smallest(values: &[i32]) -> Option<i32> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    v.get(1).copied()
}

#[test]
fn handles_duplicates() {
    assert_eq!(second_smallest(&[5, 1, 4, 1, 2]), Some(2));
    assert_eq!(second_smallest(&[7, 7]), None);
}
""",
    ),
    (
        "rs_total_by_key",
        r"""use std::collections::BTreeMap;

fn total_by_key(rows: &[(&str, u32)]) -> BTreeMap<String, u32> {
    let mut totals = BTreeMap::new();
    for (key, n) in rows {
        *totals.entry(key.to_string()).or_insert(0) += n;
    }
    totals
}

#[test]
fn test_total_by_key() {
    let t = total_by_key(&[("a", 2), ("b", 1), ("a", 5)]);
    assert_eq!(t["a"], 7);
    assert_eq!(t["b"], 1);
}
""",
    ),
    (
        "rs_transpose",
        r"""fn transpose_rows(matrix: &[Vec<i32>]) -> Vec<Vec<i32>> {
    let cols = matrix.first().map_or(0, |r| r.len());
    (0..cols)
        .map(|c| matrix.iter().map(|row| row[c]).collect())
        .collect()
}

#[test]
fn rectangular() {
    let m = vec![vec![1, 2, 3], vec![4, 5, 6]];
    assert_eq!(transpose_rows(&m), vec![vec![1, 4], vec![2, 5], vec![3, 6]]);
}
""",
    ),
    (
        "rs_trace",
        r"""fn matrix_trace(matrix: &[[i32; 3]; 3]) -> i32 {
    (0..3).map(|i| matrix[i][i]).sum()
}

#[test]
fn test_matrix_trace() {
    assert_eq!(matrix_trace(&[[1, 2, 3], [4, 5, 6], [7, 8, 9]]), 15);
}
""",
    ),
    (
        "rs_window_peaks",
        r"""fn window_peaks(values: &[i32], width: usize) -> Vec<i32> {
    values
        .windows(width)
        .map(|w| *w.iter().max().unwrap())
        .collect()
}

#[test]
fn sliding_max() {
    assert_eq!(window_peaks(&[1, 3, 2, 5, 4], 2), vec![3, 3, 5, 5]);
}
""",
    ),
    (
        "rs_index_of_max",
        r"""fn index_of_max(values: &[i32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        if best.map_or(true, |b| *v > values[b]) {
            best = Some(i);
        }
    }
    best
}

#[test]
fn test_index_of_max() {
    assert_eq!(index_of_max(&[3, 8, 2, 8]), Some(1));
    assert_eq!(index_of_max(&[]), None);
}
""",
    ),
    (
        "rs_rescale",
        r"""fn rescale(values: &[f64], low: f64, high: f64) -> Vec<f64> {
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    values.iter().map(|v| low + (v - lo) * (high - low) / span).collect()
}

#[test]
fn unit_range() {
    assert_eq!(rescale(&[2.0, 4.0, 6.0], 0.0, 1.0), vec![0.0, 0.5, 1.0]);
}
""",
    ),
    (
        "rs_compound",
        r"""fn compound(principal: f64, rate: f64, years: i32) -> f64 {
    let value = principal * (1.0 + rate).powi(years);
    (value * 100.0).round() / 100.0
}

#[test]
fn test_compound() {
    assert_eq!(compound(1000.0, 0.05, 2), 1102.5);
}
""",
    ),
    (
        "rs_is_perfect",
        r"""fn is_perfect_number(n: u32) -> bool {
    n > 1 && (1..n).filter(|d| n % d == 0).sum::<u32>() == n
}

#[test]
fn perfect_numbers() {
    assert!(is_perfect_number(28));
    assert!(!is_perfect_number(12));
}
""",
    ),
    (
        "rs_divisors_of",
        r"""fn divisors_of(n: u32) -> Vec<u32> {
    (1..=n).filter(|d| n % d == 0).collect()
}

#[test]
fn test_divisors_of() {
    assert_eq!(divisors_of(12), vec![1, 2, 3, 4, 6, 12]);
}
""",
    ),
    (
        "rs_fibonacci_upto",
        r"""fn fibonacci_upto(limit: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut a, mut b) = (0, 1);
    while a <= limit {
        out.push(a);
        let next = a + b;
        a = b;
        b = next;
    }
    out
}

#[test]
fn up_to_twenty() {
    assert_eq!(fibonacci_upto(20), vec![0, 1, 1, 2, 3, 5, 8, 13]);
}
""",
    ),
    (
        "rs_from_base",
        r"""fn from_base(digits: &str, base: u32) -> Option<u64> {
    let mut value: u64 = 0;
    for c in digits.chars() {
        value = value * base as u64 + c.to_digit(base)? as u64;
    }
    Some(value)
}

#[test]
fn test_from_base() {
    assert_eq!(from_base("ff", 16), Some(255));
    assert_eq!(from_base("12", 2), None);
}
""",
    ),
    (
        "rs_snap",
        r"""fn snap(value: i32, step: i32) -> i32 {
    let q = (value as f64 / step as f64).round() as i32;
    q * step
}

#[test]
fn rounds_to_step() {
    assert_eq!(snap(12, 5), 10);
    assert_eq!(snap(13, 5), 15);
}
""",
    ),
    (
        "rs_bin_counts",
        r"""use std::collections::BTreeMap;

fn bin_counts(values: &[i32], width: i32) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(v.div_euclid(width) * width).or_insert(0) += 1;
    }
    counts
}

#[test]
fn test_bin_counts() {
    let c = bin_counts(&[1, 4, 5, 9, 12], 5);
    assert_eq!(c.into_iter().collect::<Vec<_>>(), vec![(0, 2), (5, 2), (10, 1)]);
}
""",
    ),
    (
        "rs_leading_positive",
        r"""fn leading_positive(numbers: &[i32]) -> &[i32] {
    let end = numbers.iter().position(|n| *n <= 0).unwrap_or(numbers.len());
    &numbers[..end]
}

#[test]
fn stops_at_zero() {
    assert_eq!(leading_positive(&[4, 2, 0, 5]), &[4, 2]);
}
""",
    ),
    (
        "rs_pairs_with_sum",
        r"""fn pairs_with_sum(numbers: &[i32], target: i32) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..numbers.len() {
        for j in i + 1..numbers.len() {
            if numbers[i] + numbers[j] == target {
                out.push((i, j));
            }
        }
    }
    out
}

#[test]
fn test_pairs_with_sum() {
    assert_eq!(pairs_with_sum(&[1, 4, 2, 3], 5), vec![(0, 1), (2, 3)]);
}
""",
    ),
    (
        "rs_overlap_length",
        r"""fn overlap_length(start_a: i64, end_a: i64, start_b: i64, end_b: i64) -> i64 {
    (end_a.min(end_b) - start_a.max(start_b)).max(0)
}

#[test]
fn disjoint_and_overlapping() {
    assert_eq!(overlap_length(0, 10, 5, 20), 5);
    assert_eq!(overlap_length(0, 3, 4, 9), 0);
}
""",
    ),
    (
        "rs_most_frequent",
        r"""use std::collections::HashMap;

fn most_frequent(items: &[&str]) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for it in items {
        *counts.entry(it).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    items.iter().find(|it| counts[*it] == best).map(|s| s.to_string())
}

#[test]
fn test_most_frequent() {
    assert_eq!(most_frequent(&["b", "a", "b", "a", "c"]), Some("b".to_string()));
}
""",
    ),
    (
        "rs_sum_digits_base",
        r"""fn digit_total(mut n: u64, base: u64) -> u64 {
    let mut total = 0;
    while n > 0 {
        total += n % base;
        n /= base;
    }
    total
}

#[test]
fn binary_and_decimal() {
    assert_eq!(digit_total(255, 2), 8);
    assert_eq!(digit_total(1234, 10), 10);
}
""",
    ),
    (
        "rs_clamp_all",
        r"""fn clamp_all(values: &mut [i32], low: i32, high: i32) -> usize {
    let mut changed = 0;
    for v in values.iter_mut() {
        let c = (*v).clamp(low, high);
        if c != *v {
            *v = c;
            changed += 1;
        }
    }
    changed
}

#[test]
fn test_clamp_all() {
    let mut v = [-5, 3, 12];
    assert_eq!(clamp_all(&mut v, 0, 10), 2);
    assert_eq!(v, [0, 3, 10]);
}
""",
    ),
    (
        "rs_weighted_mean",
        r"""fn weighted_mean(values: &[f64], weights: &[f64]) -> Option<f64> {
    let total: f64 = weights.iter().sum();
    if values.len() != weights.len() || total == 0.0 {
        return None;
    }
    Some(values.iter().zip(weights).map(|(v, w)| v * w).sum::<f64>() / total)
}

#[test]
fn mismatched_lengths() {
    assert_eq!(weighted_mean(&[1.0, 3.0], &[1.0, 3.0]), Some(2.5));
    assert_eq!(weighted_mean(&[1.0], &[]), None);
}
""",
    ),
    (
        "rs_count_in_range",
        r"""fn count_in_range(values: &[i32], low: i32, high: i32) -> usize {
    values.iter().filter(|v| (low..=high).contains(*v)).count()
}

#[test]
fn test_count_in_range() {
    assert_eq!(count_in_range(&[1, 5, 7, 10, 12], 5, 10), 3);
}
""",
    ),
    (
        "rs_dedupe_sorted",
        r"""fn sorted_unique(items: &[i32], descending: bool) -> Vec<i32> {
    let mut v = items.to_vec();
    v.sort_unstable();
    v.dedup();
    if descending {
        v.reverse();
    }
    v
}

#[test]
fn ascending() {
    assert_eq!(sorted_unique(&[3, 1, 3, 2, 1], false), vec![1, 2, 3]);
}
""",
    ),
]
