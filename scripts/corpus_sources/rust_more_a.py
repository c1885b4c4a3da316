"""More Rust functions with #[test] tests that call them (kind "test"), part A: strings.

About half of the test names do not contain the function's name (``it_works``, ...).
Written for plip-nn; every sample compiles and passes with ``rustc --test`` (slow test).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "rs_vowel_ratio",
        r"""fn vowel_ratio(text: &str) -> f64 {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.is_empty() {
        return 0.0;
    }
    let vowels = letters.iter().filter(|c| "aeiouAEIOU".contains(**c)).count();
    vowels as f64 / letters.len() as f64
}

#[test]
fn it_works() {
    assert_eq!(vowel_ratio("banana"), 0.5);
}
""",
    ),
    (
        "rs_mask_card",
        r"""fn mask_card(number: &str, keep: usize) -> String {
    let hidden = number.len().saturating_sub(keep);
    "*".repeat(hidden) + &number[hidden..]
}

#[test]
fn test_mask_card() {
    assert_eq!(mask_card("4111222233334444", 4), "************4444");
}
""",
    ),
    (
        "rs_acronym",
        r"""fn acronym(phrase: &str) -> String {
    phrase
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[test]
fn basic() {
    assert_eq!(acronym("portable network graphics"), "PNG");
}
""",
    ),
    (
        "rs_squeeze_repeats",
        r"""fn squeeze_repeats(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

#[test]
fn test_squeeze_repeats() {
    assert_eq!(squeeze_repeats("aaabccdd"), "abcd");
}
""",
    ),
    (
        "rs_is_anagram",
        r"""fn is_anagram(first: &str, second: &str) -> bool {
    let mut a: Vec<char> = first.to_lowercase().chars().collect();
    let mut b: Vec<char> = second.to_lowercase().chars().collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[test]
fn detects_anagrams() {
    assert!(is_anagram("Listen", "silent"));
    assert!(!is_anagram("abc", "abd"));
}
""",
    ),
    (
        "rs_kebab_case",
        r"""fn kebab_case(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join("-")
}

#[test]
fn test_kebab_case() {
    assert_eq!(kebab_case(&["Hello", "Big", "World"]), "hello-big-world");
}
""",
    ),
    (
        "rs_count_overlapping",
        r"""fn count_overlapping(text: &str, pattern: &str) -> usize {
    (0..text.len())
        .filter(|&i| text[i..].starts_with(pattern))
        .count()
}

#[test]
fn counts_overlaps() {
    assert_eq!(count_overlapping("aaaa", "aa"), 3);
}
""",
    ),
    (
        "rs_first_repeated",
        r"""use std::collections::HashSet;

fn first_repeated_char(text: &str) -> Option<char> {
    let mut seen = HashSet::new();
    text.chars().find(|c| !seen.insert(*c))
}

#[test]
fn test_first_repeated_char() {
    assert_eq!(first_repeated_char("swiss"), Some('s'));
    assert_eq!(first_repeated_char("abc"), None);
}
""",
    ),
    (
        "rs_strip_vowels",
        r"""fn strip_vowels(word: &str) -> String {
    word.chars()
        .filter(|c| !"aeiouAEIOU".contains(*c))
        .collect()
}

#[test]
fn removes_vowels() {
    let result = strip_vowels("programming");
    assert_eq!(result, "prgrmmng");
}
""",
    ),
    (
        "rs_rle_encode",
        r"""fn rle_encode(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let mut j = i;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        out += &format!("{}{}", j - i, chars[i]);
        i = j;
    }
    out
}

#[test]
fn test_rle_encode() {
    assert_eq!(rle_encode("aaabbc"), "3a2b1c");
}
""",
    ),
    (
        "rs_longest_word",
        r"""fn longest_word(sentence: &str) -> &str {
    let mut best = "";
    for word in sentence.split_whitespace() {
        if word.len() > best.len() {
            best = word;
        }
    }
    best
}

#[test]
fn picks_first_longest() {
    assert_eq!(longest_word("a quick brown fox"), "quick");
}
""",
    ),
    (
        "rs_char_positions",
        r"""fn char_positions(text: &str, target: char) -> Vec<usize> {
    text.char_indices()
        .filter(|&(_, c)| c == target)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn test_char_positions() {
    assert_eq!(char_positions("banana", 'a'), vec![1, 3, 5]);
}
""",
    ),
    (
        "rs_slugify",
        r"""fn slugify(title: &str) -> String {
    let mut out = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[test]
fn it_works() {
    assert_eq!(slugify("Hello, World! 2024"), "hello-world-2024");
}
""",
    ),
    (
        "rs_mirror_words",
        r"""fn mirror_words(sentence: &str) -> String {
    sentence
        .split(' ')
        .map(|w| w.chars().rev().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn test_mirror_words() {
    assert_eq!(mirror_words("abc def"), "cba fed");
}
""",
    ),
    (
        "rs_common_prefix",
        r"""fn common_prefix<'a>(words: &[&'a str]) -> &'a str {
    let Some(first) = words.first() else { return "" };
    let mut len = first.len();
    for w in &words[1..] {
        while !w.starts_with(&first[..len]) {
            len -= 1;
        }
    }
    &first[..len]
}

#[test]
fn shared_prefix() {
    assert_eq!(common_prefix(&["flower", "flow", "flight"]), "fl");
}
""",
    ),
    (
        "rs_ordinal",
        r"""fn ordinal_text(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{}", n, suffix)
}

#[test]
fn test_ordinal_text() {
    assert_eq!(ordinal_text(1), "1st");
    assert_eq!(ordinal_text(12), "12th");
    assert_eq!(ordinal_text(23), "23rd");
}
""",
    ),
    (
        "rs_column_letter",
        r"""fn column_letter(mut index: u32) -> String {
    let mut name = Vec::new();
    while index > 0 {
        let rem = (index - 1) % 26;
        name.push((b'A' + rem as u8) as char);
        index = (index - 1) / 26;
    }
    name.iter().rev().collect()
}

#[test]
fn two_letters() {
    assert_eq!(column_letter(28), "AB");
}
""",
    ),
    (
        "rs_censor_words",
        r"""fn censor_words(text: &str, banned: &[&str]) -> String {
    text.split_whitespace()
        .map(|w| if banned.contains(&w) { "*".repeat(w.len()) } else { w.to_string() })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn test_censor_words() {
    assert_eq!(censor_words("no bad words here", &["bad"]), "no *** words here");
}
""",
    ),
    (
        "rs_is_pangram",
        r"""fn is_pangram(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    ('a'..='z').all(|c| lower.contains(c))
}

#[test]
fn full_alphabet() {
    assert!(is_pangram("The quick brown fox jumps over the lazy dog"));
    assert!(!is_pangram("hello"));
}
""",
    ),
    (
        "rs_extract_hashtags",
        r"""fn extract_hashtags(post: &str) -> Vec<&str> {
    post.split_whitespace()
        .filter_map(|w| w.strip_prefix('#'))
        .filter(|tag| !tag.is_empty())
        .collect()
}

#[test]
fn test_extract_hashtags() {
    assert_eq!(extract_hashtags("fun #rust and #python3 today"), vec!["rust", "python3"]);
}
""",
    ),
    (
        "rs_swap_adjacent",
        r"""fn swap_adjacent(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for pair in chars.chunks_mut(2) {
        pair.reverse();
    }
    chars.into_iter().collect()
}

#[test]
fn odd_length() {
    assert_eq!(swap_adjacent("abcde"), "badce");
}
""",
    ),
    (
        "rs_parse_ipv4",
        r"""fn parse_ipv4(address: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = address.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = part.parse().ok()?;
    }
    Some(out)
}

#[test]
fn test_parse_ipv4() {
    assert_eq!(parse_ipv4("192.168.0.1"), Some([192, 168, 0, 1]));
    assert_eq!(parse_ipv4("300.1.1.1"), None);
}
""",
    ),
    (
        "rs_escape_markup",
        r"""fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn escapes_specials() {
    assert_eq!(escape_markup("a < b & c"), "a &lt; b &amp; c");
}
""",
    ),
    (
        "rs_shift_letters",
        r"""fn shift_letters(word: &str, offset: u8) -> String {
    word.bytes()
        .map(|b| (b'a' + (b - b'a' + offset) % 26) as char)
        .collect()
}

#[test]
fn test_shift_letters() {
    assert_eq!(shift_letters("xyz", 2), "zab");
}
""",
    ),
    (
        "rs_human_size",
        r"""fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < units.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", bytes)
    } else {
        format!("{:.1} {}", size, units[unit])
    }
}

#[test]
fn kibibytes() {
    assert_eq!(human_size(1536), "1.5 KiB");
}
""",
    ),
    (
        "rs_parse_semver",
        r"""fn parse_semver(tag: &str) -> Option<(u32, u32, u32)> {
    let mut it = tag.trim_start_matches('v').split('.').map(|p| p.parse().ok());
    let major = it.next()??;
    let minor = it.next()??;
    let patch = it.next()??;
    Some((major, minor, patch))
}

#[test]
fn test_parse_semver() {
    assert_eq!(parse_semver("v1.4.2"), Some((1, 4, 2)));
}
""",
    ),
    (
        "rs_count_nonblank",
        r"""fn count_nonblank(text: &str) -> usize {
    text.lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn skips_blank_lines() {
    let result = count_nonblank("a\n\n  \nb\n");
    assert_eq!(result, 2);
}
""",
    ),
    (
        "rs_surround",
        r"""fn enclose(text: &str, left: char, right: char, times: usize) -> String {
    let open: String = std::iter::repeat(left).take(times).collect();
    let close: String = std::iter::repeat(right).take(times).collect();
    format!("{}{}{}", open, text, close)
}

#[test]
fn test_enclose() {
    assert_eq!(enclose("x", '(', ')', 2), "((x))");
}
""",
    ),
    (
        "rs_is_hex_color",
        r"""fn is_hex_color(text: &str) -> bool {
    text.len() == 7
        && text.starts_with('#')
        && text[1..].chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn handles_invalid() {
    assert!(is_hex_color("#1a2B3c"));
    assert!(!is_hex_color("#12345g"));
}
""",
    ),
    (
        "rs_count_words_longer",
        r"""fn words_longer_than(text: &str, min_len: usize) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().count() > min_len)
        .count()
}

#[test]
fn test_words_longer_than() {
    assert_eq!(words_longer_than("a bb ccc dddd", 2), 2);
}
""",
    ),
    (
        "rs_capitalize_first",
        r"""fn capitalize_first(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[test]
fn handles_empty() {
    assert_eq!(capitalize_first(""), "");
    assert_eq!(capitalize_first("rust"), "Rust");
}
""",
    ),
    (
        "rs_digits_only",
        r"""fn digits_only(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[test]
fn test_digits_only() {
    assert_eq!(digits_only("tel: +1 (555) 010-99"), "155501099");
}
""",
    ),
    (
        "rs_repeat_join",
        r"""fn repeat_join(word: &str, times: usize, sep: &str) -> String {
    vec![word; times].join(sep)
}

#[test]
fn joins_copies() {
    assert_eq!(repeat_join("ab", 3, "-"), "ab-ab-ab");
}
""",
    ),
    (
        "rs_count_upper_lower",
        r"""fn case_counts(text: &str) -> (usize, usize) {
    let upper = text.chars().filter(|c| c.is_uppercase()).count();
    let lower = text.chars().filter(|c| c.is_lowercase()).count();
    (upper, lower)
}

#[test]
fn test_case_counts() {
    assert_eq!(case_counts("Hello World"), (2, 8));
}
""",
    ),
]
