"""Rust functions with #[test] tests that call them (kind "test").

Written for plip-nn; every sample compiles and passes with ``rustc --test`` (slow test).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "rs_clamp",
        r"""fn clamp_between(value: i32, low: i32, high: i32) -> i32 {
    value.max(low).min(high)
}

#[test]
fn test_clamp_between() {
    assert_eq!(clamp_between(15, 0, 10), 10);
    assert_eq!(clamp_between(-3, 0, 10), 0);
}
""",
    ),
    (
        "rs_count_vowels",
        r"""fn count_vowels(text: &str) -> usize {
    text.chars().filter(|c| "aeiouAEIOU".contains(*c)).count()
}

#[test]
fn test_count_vowels() {
    assert_eq!(count_vowels("Banana"), 3);
}
""",
    ),
    (
        "rs_is_palindrome",
        r"""fn is_palindrome(word: &str) -> bool {
    let w: Vec<char> = word.to_lowercase().chars().collect();
    w.iter().eq(w.iter().rev())
}

#[test]
fn test_is_palindrome() {
    assert!(is_palindrome("Level"));
    assert!(!is_palindrome("rust"));
}
""",
    ),
    (
        "rs_mean",
        r"""fn arithmetic_mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn test_arithmetic_mean() {
    assert_eq!(arithmetic_mean(&[1.0, 2.0, 3.0, 4.0]), 2.5);
}
""",
    ),
    (
        "rs_factorial",
        r"""fn factorial_of(n: u64) -> u64 {
    (1..=n).product()
}

#[test]
fn test_factorial_of() {
    assert_eq!(factorial_of(5), 120);
    assert_eq!(factorial_of(0), 1);
}
""",
    ),
    (
        "rs_gcd",
        r"""fn greatest_divisor(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

#[test]
fn test_greatest_divisor() {
    assert_eq!(greatest_divisor(48, 18), 6);
}
""",
    ),
    (
        "rs_popcount",
        r"""fn popcount(mut n: u32) -> u32 {
    let mut count = 0;
    while n != 0 {
        n &= n - 1;
        count += 1;
    }
    count
}

#[test]
fn test_popcount() {
    assert_eq!(popcount(0b101101), 4);
}
""",
    ),
    (
        "rs_is_power_of_two",
        r"""fn is_power_of_two(n: u64) -> bool {
    n != 0 && n & (n - 1) == 0
}

#[test]
fn test_is_power_of_two() {
    assert!(is_power_of_two(64));
    assert!(!is_power_of_two(12));
}
""",
    ),
    (
        "rs_word_count",
        r"""use std::collections::HashMap;

fn word_count(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn test_word_count() {
    let c = word_count("a b A c");
    assert_eq!(c["a"], 2);
}
""",
    ),
    (
        "rs_chunk",
        r"""fn chunk_items<T: Clone>(items: &[T], size: usize) -> Vec<Vec<T>> {
    items.chunks(size).map(|c| c.to_vec()).collect()
}

#[test]
fn test_chunk_items() {
    assert_eq!(chunk_items(&[1, 2, 3, 4, 5], 2), vec![vec![1, 2], vec![3, 4], vec![5]]);
}
""",
    ),
    (
        "rs_parse_pair",
        r"""fn parse_pair(text: &str, sep: char) -> Option<(&str, &str)> {
    let (k, v) = text.split_once(sep)?;
    Some((k.trim(), v.trim()))
}

#[test]
fn test_parse_pair() {
    assert_eq!(parse_pair(" name = Ada ", '='), Some(("name", "Ada")));
    assert_eq!(parse_pair("novalue", '='), None);
}
""",
    ),
    (
        "rs_is_leap",
        r"""fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

#[test]
fn test_is_leap() {
    assert!(is_leap(2000));
    assert!(!is_leap(1900));
}
""",
    ),
    (
        "rs_days_in_month",
        r"""fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[test]
fn test_days_in_month() {
    assert_eq!(days_in_month(2023, 2), 28);
    assert_eq!(days_in_month(2024, 2), 29);
}
""",
    ),
    (
        "rs_distance",
        r"""fn point_distance(p: (f64, f64), q: (f64, f64)) -> f64 {
    ((q.0 - p.0).powi(2) + (q.1 - p.1).powi(2)).sqrt()
}

#[test]
fn test_point_distance() {
    assert_eq!(point_distance((0.0, 0.0), (3.0, 4.0)), 5.0);
}
""",
    ),
    (
        "rs_rect_area",
        r"""fn rect_area(width: f64, height: f64) -> Result<f64, String> {
    if width < 0.0 || height < 0.0 {
        return Err(format!("negative side: {width} x {height}"));
    }
    Ok(width * height)
}

#[test]
fn test_rect_area() {
    assert_eq!(rect_area(3.0, 4.5), Ok(13.5));
    assert!(rect_area(-1.0, 2.0).is_err());
}
""",
    ),
    (
        "rs_title_case",
        r"""fn title_case(sentence: &str) -> String {
    sentence
        .split_whitespace()
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn test_title_case() {
    assert_eq!(title_case("the quick fox"), "The Quick Fox");
}
""",
    ),
    (
        "rs_flatten",
        r"""fn flatten_nested(nested: Vec<Vec<i32>>) -> Vec<i32> {
    nested.into_iter().flatten().collect()
}

#[test]
fn test_flatten_nested() {
    assert_eq!(flatten_nested(vec![vec![1], vec![2, 3], vec![]]), vec![1, 2, 3]);
}
""",
    ),
    (
        "rs_dedupe",
        r"""use std::collections::HashSet;

fn unique_in_order(seq: &[i32]) -> Vec<i32> {
    let mut seen = HashSet::new();
    seq.iter().copied().filter(|x| seen.insert(*x)).collect()
}

#[test]
fn test_unique_in_order() {
    assert_eq!(unique_in_order(&[3, 1, 3, 2, 1]), vec![3, 1, 2]);
}
""",
    ),
    (
        "rs_caesar",
        r"""fn caesar(text: &str, shift: u8) -> String {
    text.chars()
        .map(|c| if c.is_ascii_lowercase() { ((c as u8 - b'a' + shift) % 26 + b'a') as char } else { c })
        .collect()
}

#[test]
fn test_caesar() {
    assert_eq!(caesar("xyz", 3), "abc");
}
""",
    ),
    (
        "rs_to_binary",
        r"""fn to_binary(n: u32, width: usize) -> String {
    format!("{:0width$b}", n, width = width)
}

#[test]
fn test_to_binary() {
    assert_eq!(to_binary(5, 8), "00000101");
}
""",
    ),
    (
        "rs_median",
        r"""fn middle_value(values: &mut Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

#[test]
fn test_middle_value() {
    assert_eq!(middle_value(&mut vec![3.0, 1.0, 2.0]), 2.0);
    assert_eq!(middle_value(&mut vec![4.0, 1.0, 3.0, 2.0]), 2.5);
}
""",
    ),
    (
        "rs_stack_push",
        r"""struct Stack {
    items: Vec<i32>,
}

impl Stack {
    fn push_item(&mut self, item: i32) -> usize {
        self.items.push(item);
        self.items.len()
    }
}

#[test]
fn test_push_item() {
    let mut s = Stack { items: vec![] };
    assert_eq!(s.push_item(7), 1);
}
""",
    ),
    (
        "rs_counter_add",
        r"""struct Counter {
    value: u32,
}

impl Counter {
    fn increment_by(&mut self, amount: u32) -> u32 {
        self.value += amount;
        self.value
    }
}

#[test]
fn test_increment_by() {
    let mut c = Counter { value: 5 };
    assert_eq!(c.increment_by(3), 8);
}
""",
    ),
    (
        "rs_vector_dot",
        r"""struct Vector {
    x: f64,
    y: f64,
}

impl Vector {
    fn dot_with(&self, other: &Vector) -> f64 {
        self.x * other.x + self.y * other.y
    }
}

#[test]
fn test_dot_with() {
    let a = Vector { x: 1.0, y: 2.0 };
    assert_eq!(a.dot_with(&Vector { x: 3.0, y: 4.0 }), 11.0);
}
""",
    ),
    (
        "rs_rotate",
        r"""fn rotate_items<T: Clone>(items: &[T], k: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = k % items.len();
    [&items[k..], &items[..k]].concat()
}

#[test]
fn test_rotate_items() {
    assert_eq!(rotate_items(&[1, 2, 3, 4], 1), vec![2, 3, 4, 1]);
}
""",
    ),
    (
        "rs_parse_csv_line",
        r"""fn parse_csv_line(line: &str, delimiter: char) -> Vec<String> {
    line.split(delimiter).map(|f| f.trim().to_string()).collect()
}

#[test]
fn test_parse_csv_line() {
    assert_eq!(parse_csv_line("a, b ,c", ','), vec!["a", "b", "c"]);
}
""",
    ),
    (
        "rs_parse_duration",
        r"""fn duration_seconds(text: &str) -> Option<u32> {
    let (m, s) = text.split_once(':')?;
    Some(m.parse::<u32>().ok()? * 60 + s.parse::<u32>().ok()?)
}

#[test]
fn test_duration_seconds() {
    assert_eq!(duration_seconds("02:30"), Some(150));
    assert_eq!(duration_seconds("x"), None);
}
""",
    ),
    (
        "rs_format_hms",
        r"""fn format_hms(seconds: u32) -> String {
    format!("{}:{:02}:{:02}", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

#[test]
fn test_format_hms() {
    assert_eq!(format_hms(3725), "1:02:05");
}
""",
    ),
    (
        "rs_digits",
        r"""fn digit_list(n: u64) -> Vec<u32> {
    n.to_string().chars().map(|c| c.to_digit(10).unwrap()).collect()
}

#[test]
fn test_digit_list() {
    assert_eq!(digit_list(4071), vec![4, 0, 7, 1]);
}
""",
    ),
    (
        "rs_collatz",
        r"""fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

#[test]
fn test_collatz_steps() {
    assert_eq!(collatz_steps(6), 8);
}
""",
    ),
    (
        "rs_primes_below",
        r"""fn primes_below(limit: usize) -> Vec<usize> {
    let mut sieve = vec![true; limit];
    let mut primes = Vec::new();
    for i in 2..limit {
        if sieve[i] {
            primes.push(i);
            let mut j = i * i;
            while j < limit { sieve[j] = false; j += i; }
        }
    }
    primes
}

#[test]
fn test_primes_below() {
    assert_eq!(primes_below(20), vec![2, 3, 5, 7, 11, 13, 17, 19]);
}
""",
    ),
    (
        "rs_reverse_bits",
        r"""fn mirror_byte(byte: u8) -> u8 {
    let mut out = 0u8;
    for i in 0..8 {
        out |= ((byte >> i) & 1) << (7 - i);
    }
    out
}

#[test]
fn test_mirror_byte() {
    assert_eq!(mirror_byte(0b0000_0110), 96);
}
""",
    ),
    (
        "rs_set_bit",
        r"""fn with_bit(value: u32, index: u32, on: bool) -> u32 {
    if on { value | (1 << index) } else { value & !(1 << index) }
}

#[test]
fn test_with_bit() {
    assert_eq!(with_bit(0, 3, true), 8);
    assert_eq!(with_bit(15, 0, false), 14);
}
""",
    ),
    (
        "rs_snake_case",
        r"""fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[test]
fn test_snake_case() {
    assert_eq!(snake_case("HttpServerError"), "http_server_error");
}
""",
    ),
    (
        "rs_initials",
        r"""fn initials(full_name: &str) -> String {
    full_name
        .split_whitespace()
        .filter_map(|p| p.chars().next())
        .flat_map(char::to_uppercase)
        .collect()
}

#[test]
fn test_initials() {
    assert_eq!(initials("ada king lovelace"), "AKL");
}
""",
    ),
    (
        "rs_truncate",
        r"""fn ellipsize<'a>(text: &'a str, limit: usize) -> std::borrow::Cow<'a, str> {
    if text.chars().count() <= limit {
        return text.into();
    }
    let kept: String = text.chars().take(limit.saturating_sub(3)).collect();
    (kept + "...").into()
}

#[test]
fn test_ellipsize() {
    assert_eq!(ellipsize("hello wonderful world", 10), "hello w...");
    assert_eq!(ellipsize("short", 10), "short");
}
""",
    ),
    (
        "rs_group_by_len",
        r"""use std::collections::BTreeMap;

fn group_by_length<'a>(words: &[&'a str]) -> BTreeMap<usize, Vec<&'a str>> {
    let mut groups = BTreeMap::new();
    for w in words {
        groups.entry(w.len()).or_insert_with(Vec::new).push(*w);
    }
    groups
}

#[test]
fn test_group_by_length() {
    let g = group_by_length(&["ox", "cat", "dog", "be"]);
    assert_eq!(g[&2], vec!["ox", "be"]);
}
""",
    ),
    (
        "rs_running_max",
        r"""fn running_max(values: &[i64]) -> Vec<i64> {
    let mut best = i64::MIN;
    values.iter().map(|&v| { best = best.max(v); best }).collect()
}

#[test]
fn test_running_max() {
    assert_eq!(running_max(&[1, 3, 2, 5, 4]), vec![1, 3, 3, 5, 5]);
}
""",
    ),
    (
        "rs_pairwise_diff",
        r"""fn pairwise_diff(xs: &[i32]) -> Vec<i32> {
    xs.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn test_pairwise_diff() {
    assert_eq!(pairwise_diff(&[1, 4, 9, 16]), vec![3, 5, 7]);
}
""",
    ),
    (
        "rs_perimeter",
        r"""fn perimeter(vertices: &[(f64, f64)]) -> f64 {
    let n = vertices.len();
    (0..n)
        .map(|i| {
            let (a, b) = (vertices[i], vertices[(i + 1) % n]);
            ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
        })
        .sum()
}

#[test]
fn test_perimeter() {
    assert_eq!(perimeter(&[(0.0, 0.0), (3.0, 0.0), (3.0, 4.0)]), 12.0);
}
""",
    ),
    (
        "rs_circle_area",
        r"""fn circle_area(radius: f64) -> f64 {
    std::f64::consts::PI * radius * radius
}

#[test]
fn test_circle_area() {
    assert!((circle_area(2.0) - 12.566).abs() < 1e-3);
}
""",
    ),
    (
        "rs_point_in_rect",
        r"""fn point_in_rect((px, py): (i32, i32), left: i32, top: i32, right: i32, bottom: i32) -> bool {
    (left..=right).contains(&px) && (top..=bottom).contains(&py)
}

#[test]
fn test_point_in_rect() {
    assert!(point_in_rect((2, 3), 0, 0, 5, 5));
    assert!(!point_in_rect((7, 1), 0, 0, 5, 5));
}
""",
    ),
    (
        "rs_day_of_year",
        r"""fn day_of_year(year: i32, month: usize, day: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    days[..month - 1].iter().sum::<u32>() + day
}

#[test]
fn test_day_of_year() {
    assert_eq!(day_of_year(2024, 3, 1), 61);
}
""",
    ),
    (
        "rs_roman",
        r"""fn roman_numeral(mut number: u32) -> String {
    const TABLE: [(u32, &str); 13] = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"),
        (100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")];
    let mut out = String::new();
    for &(value, sym) in TABLE.iter() {
        while number >= value { out.push_str(sym); number -= value; }
    }
    out
}

#[test]
fn test_roman_numeral() {
    assert_eq!(roman_numeral(1994), "MCMXCIV");
}
""",
    ),
    (
        "rs_balanced",
        r"""fn balanced(text: &str) -> bool {
    let mut stack = Vec::new();
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => stack.push(c),
            ')' => if stack.pop() != Some('(') { return false },
            ']' => if stack.pop() != Some('[') { return false },
            '}' => if stack.pop() != Some('{') { return false },
            _ => {}
        }
    }
    stack.is_empty()
}

#[test]
fn test_balanced() {
    assert!(balanced("(a[b]{c})"));
    assert!(!balanced("(]"));
}
""",
    ),
    (
        "rs_should_panic_divide",
        r"""fn divide_or_panic(a: i32, b: i32) -> i32 {
    if b == 0 {
        panic!("division by zero");
    }
    a / b
}

#[test]
#[should_panic(expected = "division by zero")]
fn test_checked_div_by_zero() {
    divide_or_panic(1, 0);
}
""",
    ),
    (
        "rs_cfg_test_mod",
        r"""pub fn hex_digit(value: u8) -> char {
    b"0123456789abcdef"[(value & 15) as usize] as char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_hex_digit() {
        assert_eq!(hex_digit(11), 'b');
    }
}
""",
    ),
    (
        "rs_generic_max",
        r"""fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    let mut it = items.iter().copied();
    let first = it.next()?;
    Some(it.fold(first, |m, x| if x > m { x } else { m }))
}

#[test]
fn test_largest() {
    assert_eq!(largest(&[3, 9, 2]), Some(9));
    assert_eq!(largest::<f64>(&[]), None);
}
""",
    ),
    (
        "rs_where_clause",
        r"""fn sum_all<I, T>(items: I) -> T
where
    I: IntoIterator<Item = T>,
    T: std::ops::Add<Output = T> + Default,
{
    items.into_iter().fold(T::default(), |acc, x| acc + x)
}

#[test]
fn test_sum_all() {
    assert_eq!(sum_all(vec![1, 2, 3]), 6);
}
""",
    ),
    (
        "rs_longest",
        r"""fn longest_of<'a>(a: &'a str, b: &'a str) -> &'a str {
    if b.len() > a.len() { b } else { a }
}

#[test]
fn test_longest_of() {
    assert_eq!(longest_of("apple", "fig"), "apple");
}
""",
    ),
    (
        "rs_hex_to_rgb",
        r"""fn hex_to_rgb(color: &str) -> Option<(u8, u8, u8)> {
    let c = color.strip_prefix('#')?;
    let part = |i: usize| u8::from_str_radix(c.get(i..i + 2)?, 16).ok();
    Some((part(0)?, part(2)?, part(4)?))
}

#[test]
fn test_hex_to_rgb() {
    assert_eq!(hex_to_rgb("#ff8000"), Some((255, 128, 0)));
}
""",
    ),
    (
        "rs_binary_search",
        r"""fn binary_search(items: &[i32], target: i32) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, items.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if items[mid] == target { return Some(mid); }
        if items[mid] < target { lo = mid + 1 } else { hi = mid }
    }
    None
}

#[test]
fn test_binary_search() {
    assert_eq!(binary_search(&[1, 3, 5, 7, 9], 7), Some(3));
    assert_eq!(binary_search(&[1, 3], 2), None);
}
""",
    ),
    (
        "rs_interleave",
        r"""fn alternate_items(a: &[i32], b: &[i32]) -> Vec<i32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    for i in 0..a.len().max(b.len()) {
        out.extend(a.get(i));
        out.extend(b.get(i));
    }
    out
}

#[test]
fn test_alternate_items() {
    assert_eq!(alternate_items(&[1, 2, 3], &[10, 20]), vec![1, 10, 2, 20, 3]);
}
""",
    ),
    (
        "rs_dot",
        r"""fn dot_product(u: &[f64], v: &[f64]) -> f64 {
    assert_eq!(u.len(), v.len(), "length mismatch");
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

#[test]
fn test_dot_product() {
    assert_eq!(dot_product(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
}
""",
    ),
    (
        "rs_helper_then_main",
        r"""fn square(x: i64) -> i64 {
    x * x
}

fn sum_of_squares(values: &[i64]) -> i64 {
    values.iter().map(|&v| square(v)).sum()
}

#[test]
fn test_sum_of_squares() {
    assert_eq!(sum_of_squares(&[1, 2, 3]), 14);
}
""",
    ),
    (
        "rs_unicode_name",
        r"""fn fläche(länge: u32, breite: u32) -> u32 {
    länge * breite
}

#[test]
fn test_fläche() {
    assert_eq!(fläche(2, 3), 6);
}
""",
    ),
    (
        "rs_temperature",
        r"""struct Temperature;

impl Temperature {
    pub fn to_kelvin(celsius: f64) -> f64 {
        celsius + 273.15
    }
}

#[test]
fn test_to_kelvin() {
    assert_eq!(Temperature::to_kelvin(25.0), 298.15);
}
""",
    ),
    (
        "rs_option_default",
        r"""fn or_zero(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

#[test]
fn test_or_zero() {
    assert_eq!(or_zero(Some(4)), 4);
    assert_eq!(or_zero(None), 0);
}
""",
    ),
    (
        "rs_invert_map",
        r"""use std::collections::HashMap;

fn swap_keys_values(map: &HashMap<String, u32>) -> HashMap<u32, String> {
    map.iter().map(|(k, v)| (*v, k.clone())).collect()
}

#[test]
fn test_swap_keys_values() {
    let m = HashMap::from([("a".to_string(), 1)]);
    assert_eq!(swap_keys_values(&m)[&1], "a");
}
""",
    ),
    (
        "rs_top_char",
        r"""fn top_char(text: &str) -> Option<char> {
    let mut counts = [0usize; 128];
    for b in text.bytes().filter(|b| b.is_ascii_alphabetic()) {
        counts[b as usize] += 1;
    }
    let (i, &n) = counts.iter().enumerate().max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i)))?;
    (n > 0).then(|| i as u8 as char)
}

#[test]
fn test_top_char() {
    assert_eq!(top_char("hello world"), Some('l'));
}
""",
    ),
]
