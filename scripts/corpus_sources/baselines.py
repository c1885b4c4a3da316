"""False-marker baselines (kind "baseline"): a marker-looking token that is not a test.

Python: ``>>>`` in a comment or string inside the function. Rust: an attribute other than
``#[test]`` (``#[derive]``, ``#[inline]``, ...). The false marker always comes *after* the
function's signature, so the marker -> function edges are causally valid.
"""

PYTHON: list[tuple[str, str]] = [
    (
        "pyb_comment_shift",
        r"""def shift_right(x, n):
    # in JavaScript this would be x >>> n (unsigned shift)
    return x >> n
""",
    ),
    (
        "pyb_string_prompt",
        r"""def prompt_line(text):
    prefix = ">>> "
    return prefix + text
""",
    ),
    (
        "pyb_commented_example",
        r"""def squared_number(n):
    # Example (not a doctest):
    # >>> squared_number(4)
    return n * n
""",
    ),
    (
        "pyb_inline_docstring",
        r'''def area(width, height):
    """Area; in a REPL type >>> area(2, 3) to see 6."""
    return width * height
''',
    ),
    (
        "pyb_fstring",
        r"""def echo(command: str) -> str:
    return f">>> {command}"
""",
    ),
    (
        "pyb_log_message",
        r"""import logging


def log_input(line, logger=logging.getLogger("repl")):
    logger.debug("got >>> %s", line)
    return line.strip()
""",
    ),
    (
        "pyb_split_marker",
        r"""def split_prompt(text):
    head, _, tail = text.partition(">>>")
    return head.strip(), tail.strip()
""",
    ),
    (
        "pyb_method_comment",
        r"""class Shell:
    def execute_input(self, command):
        # prompt shown to users: >>>
        return command.upper()
""",
    ),
    (
        "pyb_bytes_literal",
        r"""def is_prompt(raw: bytes) -> bool:
    return raw.startswith(b">>>")
""",
    ),
    (
        "pyb_triple_marker_list",
        r"""def markers():
    return ["#", "//", ">>>"]
""",
    ),
    (
        "pyb_comment_after_code",
        r"""def mirror_text(items):
    out = items[::-1]  # >>> mirror_text([1, 2]) gives [2, 1]
    return out
""",
    ),
    (
        "pyb_arrow_doc",
        r'''def pipe_into(value, *funcs):
    """Apply funcs left to right: value >>> f >>> g."""
    for f in funcs:
        value = f(value)
    return value
''',
    ),
    (
        "pyb_count_prompts",
        r"""def count_prompts(transcript: str) -> int:
    return transcript.count(">>> ")
""",
    ),
    (
        "pyb_kwonly_comment",
        r"""def repeat_phrase(text, *, times=2):
    # old doc said: >>> repeat_phrase("a") -> "aa"
    return text * times
""",
    ),
    (
        "pyb_async_comment",
        r"""async def read_prompt_line(reader):
    # reads one line after the >>> prompt
    return await reader.readline()
""",
    ),
    (
        "pyb_unicode_comment",
        r"""def größe(länge, breite):
    # Beispiel: >>> größe(2, 3)
    return länge * breite
""",
    ),
]

RUST: list[tuple[str, str]] = [
    (
        "rsb_derive_after",
        r"""fn make_point(x: i32, y: i32) -> Point {
    Point { x, y }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    x: i32,
    y: i32,
}
""",
    ),
    (
        "rsb_inline_helper",
        r"""fn blend_values(x: u64, y: u64) -> u64 {
    fast_add(x, y) * 2
}

#[inline]
fn fast_add(a: u64, b: u64) -> u64 {
    a + b
}
""",
    ),
    (
        "rsb_allow_dead_code",
        r"""fn main_value(x: i32) -> i32 {
    x + 1
}

#[allow(dead_code)]
fn unused_helper(a: i32) -> i32 {
    a * 2
}
""",
    ),
    (
        "rsb_must_use",
        r"""fn area(w: u32, h: u32) -> u32 {
    w * h
}

#[must_use]
fn perimeter(w: u32, h: u32) -> u32 {
    2 * (w + h)
}
""",
    ),
    (
        "rsb_repr_enum",
        r"""fn color_code(c: Color) -> u8 {
    c as u8
}

#[repr(u8)]
#[derive(Clone, Copy)]
enum Color {
    Red = 1,
    Green = 2,
}
""",
    ),
    (
        "rsb_cfg_feature",
        r"""fn to_upper(input: &str) -> String {
    input.to_uppercase()
}

#[cfg(feature = "serde")]
fn to_json(input: &str) -> String {
    format!("\"{}\"", input)
}
""",
    ),
    (
        "rsb_deprecated",
        r"""fn sum_slice(values: &[i32]) -> i32 {
    values.iter().sum()
}

#[deprecated(note = "use sum")]
fn total(values: &[i32]) -> i32 {
    sum_slice(values)
}
""",
    ),
    (
        "rsb_method_inline",
        r"""struct Meter(f64);

impl Meter {
    fn feet(&self) -> f64 {
        self.0 * 3.28084
    }

    #[inline(always)]
    fn value(&self) -> f64 {
        self.0
    }
}
""",
    ),
    (
        "rsb_derive_default",
        r"""fn settings(verbose: bool) -> Config {
    Config { verbose, ..Default::default() }
}

#[derive(Default, Debug)]
struct Config {
    verbose: bool,
    level: u8,
}
""",
    ),
    (
        "rsb_allow_clippy",
        r"""fn parse_switch(text: &str) -> bool {
    matches!(text, "1" | "yes" | "true")
}

#[allow(clippy::needless_range_loop)]
fn count_flags(items: &[&str]) -> usize {
    let mut n = 0;
    for i in 0..items.len() { if parse_switch(items[i]) { n += 1 } }
    n
}
""",
    ),
    (
        "rsb_cold",
        r"""fn checked(x: i32) -> i32 {
    if x < 0 { fail() } else { x }
}

#[cold]
fn fail() -> i32 {
    -1
}
""",
    ),
    (
        "rsb_derive_partialeq",
        r"""fn same_pair(a: Pair, b: Pair) -> bool {
    a == b
}

#[derive(PartialEq, Eq)]
struct Pair(u8, u8);
""",
    ),
    (
        "rsb_non_exhaustive",
        r"""fn describe_kind(kind: &Kind) -> &'static str {
    match kind { Kind::Small => "small", _ => "other" }
}

#[non_exhaustive]
enum Kind {
    Small,
    Large,
}
""",
    ),
    (
        "rsb_track_caller",
        r"""fn first_or_panic<T: Copy>(items: &[T]) -> T {
    expect_some(items.first().copied())
}

#[track_caller]
fn expect_some<T>(v: Option<T>) -> T {
    v.expect("empty slice")
}
""",
    ),
    (
        "rsb_allow_unused_vars",
        r"""fn ratio_of(num: f64, den: f64) -> f64 {
    num / den
}

#[allow(unused_variables)]
fn ignore(value: f64) {}
""",
    ),
    (
        "rsb_cfg_attr",
        r"""fn id_of(name: &str) -> usize {
    name.len()
}

#[cfg_attr(test, derive(Debug))]
struct Id(usize);
""",
    ),
]
