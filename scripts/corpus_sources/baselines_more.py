"""More false-marker baselines (kind "baseline"), added for issue 29 (see ``baselines``).

Python: ``>>>`` in a comment, string or default value inside the function. Rust: an attribute
other than ``#[test]`` on the item after the function. The false marker always comes after
the function's signature.
"""

PYTHON: list[tuple[str, str]] = [
    (
        "pyb_repl_banner",
        r"""def repl_banner(version):
    return f"Python {version}\n>>> "
""",
    ),
    (
        "pyb_strip_prompt",
        r"""def strip_prompt(line: str) -> str:
    if line.startswith(">>> "):
        return line[4:]
    return line
""",
    ),
    (
        "pyb_todo_comment",
        r"""def tax_amount(price, rate):
    # TODO: show as >>> tax_amount(100, 0.2) in the docs
    return price * rate
""",
    ),
    (
        "pyb_shift_doc",
        r'''def unsigned_shift(value, places):
    """Like Java's value >>> places for 32-bit ints."""
    return (value % (1 << 32)) >> places
''',
    ),
    (
        "pyb_prompt_constant",
        r"""def console_lines(commands):
    marker = ">>>"
    return [f"{marker} {c}" for c in commands]
""",
    ),
    (
        "pyb_regex_prompt",
        r"""import re


def find_prompts(text):
    return re.findall(r"^>>> (.*)$", text, re.M)
""",
    ),
    (
        "pyb_help_text",
        r"""def usage_hint(name):
    # users type the name at the >>> prompt
    return f"type {name}() to start"
""",
    ),
    (
        "pyb_join_marker",
        r"""def join_session(lines):
    return "\n".join(">>> " + ln for ln in lines)
""",
    ),
    (
        "pyb_method_string",
        r"""class Console:
    def render_input(self, command):
        return ">>> " + command.rstrip()
""",
    ),
    (
        "pyb_arrow_chain",
        r"""def compose_names(*names):
    # shown to users as a >>> b >>> c
    return " >>> ".join(names)
""",
    ),
    (
        "pyb_prompt_length",
        r"""def prompt_width(prompt=">>> "):
    return len(prompt)
""",
    ),
    (
        "pyb_replace_marker",
        r"""def quote_session(text):
    return text.replace(">>>", "&gt;&gt;&gt;")
""",
    ),
    (
        "pyb_dict_marker",
        r"""def prompt_for(language):
    prompts = {"python": ">>>", "shell": "$", "sql": "sql>"}
    return prompts.get(language, "?")
""",
    ),
    (
        "pyb_note_comment",
        r"""def minutes_between(start, end):
    # note: >>> minutes_between(0, 90) was 90 in the old API
    return (end - start) // 60
""",
    ),
    (
        "pyb_is_continuation",
        r"""def is_input_line(line: str) -> bool:
    return line.lstrip().startswith((">>>", "..."))
""",
    ),
    (
        "pyb_raw_bytes_marker",
        r"""def encode_prompt(command: str) -> bytes:
    return b">>> " + command.encode()
""",
    ),
    (
        "pyb_count_inputs",
        r"""def count_inputs(log_lines):
    total = 0
    for line in log_lines:
        total += line.startswith(">>>")
    return total
""",
    ),
    (
        "pyb_static_comment",
        r"""class Parser:
    @staticmethod
    def tokens_of(text):
        # like >>> in a shell, '>>' is one token here
        return text.split()
""",
    ),
    (
        "pyb_default_arg_marker",
        r"""def write_prompt(out, newline=False, marker=">>> "):
    out.append(marker + ("\n" if newline else ""))
    return len(out)
""",
    ),
    (
        "pyb_docstring_mention",
        r'''def session_depth(text):
    """Count nested >>> prompts (not a doctest)."""
    return text.count(">>>")
''',
    ),
    (
        "pyb_format_marker",
        r"""def prompt_banner(width):
    return "{:>{w}}".format(">>>", w=width)
""",
    ),
    (
        "pyb_lambda_marker",
        r"""def prompt_maker(symbol=">>>"):
    return lambda text: f"{symbol} {text}"
""",
    ),
    (
        "pyb_tuple_markers",
        r"""def comment_tokens():
    # ">>>" is deliberately absent here
    return ("#", "//", "--")
""",
    ),
    (
        "pyb_kwargs_comment",
        r"""def scale_all(values, **options):
    # doc example: >>> scale_all([1], factor=2)
    factor = options.get("factor", 1)
    return [v * factor for v in values]
""",
    ),
]

RUST: list[tuple[str, str]] = [
    (
        "rsb_derive_eq",
        r"""fn same_origin(a: Vec2, b: Vec2) -> bool {
    a == b
}

#[derive(PartialEq, Clone, Copy)]
struct Vec2 {
    x: f32,
    y: f32,
}
""",
    ),
    (
        "rsb_inline_always",
        r"""fn mix_channels(r: u8, g: u8) -> u16 {
    pack_pair(r, g)
}

#[inline(always)]
fn pack_pair(hi: u8, lo: u8) -> u16 {
    (hi as u16) << 8 | lo as u16
}
""",
    ),
    (
        "rsb_cfg_unix",
        r"""fn newline_total(text: &str) -> usize {
    text.matches('\n').count()
}

#[cfg(unix)]
fn path_sep() -> char {
    '/'
}
""",
    ),
    (
        "rsb_derive_hash",
        r"""fn build_key(name: &str, id: u32) -> Key {
    Key { name: name.to_string(), id }
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    name: String,
    id: u32,
}
""",
    ),
    (
        "rsb_must_use_msg",
        r"""fn scaled_len(len: usize, factor: usize) -> usize {
    len * factor
}

#[must_use = "the padded value is returned"]
fn padded(len: usize) -> usize {
    len + 8
}
""",
    ),
    (
        "rsb_allow_non_snake",
        r"""fn rgb_sum(red: u32, green: u32, blue: u32) -> u32 {
    red + green + blue
}

#[allow(non_snake_case)]
fn toHex(v: u32) -> String {
    format!("{:x}", v)
}
""",
    ),
    (
        "rsb_derive_default_enum",
        r"""fn level_name(level: Level) -> &'static str {
    match level {
        Level::Low => "low",
        Level::High => "high",
    }
}

#[derive(Default, Clone, Copy)]
enum Level {
    #[default]
    Low,
    High,
}
""",
    ),
    (
        "rsb_cfg_debug",
        r"""fn checksum_of(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, b| a ^ b)
}

#[cfg(debug_assertions)]
fn trace_bytes(bytes: &[u8]) {
    eprintln!("{:?}", bytes);
}
""",
    ),
    (
        "rsb_doc_attr",
        r"""fn half_open(start: i32, end: i32) -> Vec<i32> {
    (start..end).collect()
}

#[doc = "Closed range."]
fn closed(start: i32, end: i32) -> Vec<i32> {
    (start..=end).collect()
}
""",
    ),
    (
        "rsb_derive_ord",
        r"""fn highest_rank(ranks: &[Rank]) -> Option<Rank> {
    ranks.iter().copied().max()
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
struct Rank(u8);
""",
    ),
    (
        "rsb_cold_error",
        r"""fn port_from_text(text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| bad_port(text))
}

#[cold]
fn bad_port(text: &str) -> String {
    format!("bad port: {}", text)
}
""",
    ),
    (
        "rsb_allow_unused_mut",
        r"""fn shout(text: &str) -> String {
    text.to_uppercase() + "!"
}

#[allow(unused_mut)]
fn whisper(text: &str) -> String {
    let mut s = text.to_lowercase();
    s
}
""",
    ),
    (
        "rsb_derive_debug_tuple",
        r"""fn meters_to_feet(m: Meters) -> f64 {
    m.0 * 3.2808
}

#[derive(Debug)]
struct Meters(f64);
""",
    ),
    (
        "rsb_inline_never",
        r"""fn blend_alpha(a: f32, b: f32, t: f32) -> f32 {
    a * (1.0 - t) + b * t
}

#[inline(never)]
fn clamp_unit(t: f32) -> f32 {
    t.max(0.0).min(1.0)
}
""",
    ),
    (
        "rsb_test_module_cfg",
        r"""fn double_all(values: &[i32]) -> Vec<i32> {
    values.iter().map(|v| v * 2).collect()
}

#[cfg(feature = "extra")]
mod extra {
    pub fn triple(v: i32) -> i32 {
        v * 3
    }
}
""",
    ),
    (
        "rsb_repr_c",
        r"""fn pixel_at(x: u16, y: u16) -> Pixel {
    Pixel { x, y }
}

#[repr(C)]
struct Pixel {
    x: u16,
    y: u16,
}
""",
    ),
    (
        "rsb_derive_serde_like",
        r"""fn config_port(cfg: &Config) -> u16 {
    cfg.port
}

#[derive(Clone, Debug, Default)]
struct Config {
    port: u16,
    host: String,
}
""",
    ),
    (
        "rsb_allow_deprecated",
        r"""fn seconds_in(hours: u64) -> u64 {
    hours * 3600
}

#[allow(deprecated)]
fn legacy_seconds(hours: u64) -> u64 {
    seconds_in(hours)
}
""",
    ),
    (
        "rsb_cfg_target",
        r"""fn word_size() -> usize {
    std::mem::size_of::<usize>() * 8
}

#[cfg(target_pointer_width = "64")]
const WIDE: bool = true;
""",
    ),
    (
        "rsb_derive_copy_enum",
        r"""fn flip_side(side: Side) -> Side {
    match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    }
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Left,
    Right,
}
""",
    ),
    (
        "rsb_must_use_fn",
        r"""fn vowel_count(word: &str) -> usize {
    word.chars().filter(|c| "aeiou".contains(*c)).count()
}

#[must_use]
fn consonant_count(word: &str) -> usize {
    word.len() - vowel_count(word)
}
""",
    ),
    (
        "rsb_allow_clippy_cast",
        r"""fn to_percent(part: u32, whole: u32) -> f64 {
    part as f64 * 100.0 / whole as f64
}

#[allow(clippy::cast_possible_truncation)]
fn to_byte(v: u32) -> u8 {
    v as u8
}
""",
    ),
    (
        "rsb_non_exhaustive_struct",
        r"""fn version_tuple(v: &Version) -> (u8, u8) {
    (v.major, v.minor)
}

#[non_exhaustive]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}
""",
    ),
    (
        "rsb_derive_then_impl",
        r"""fn new_tally(start: u32) -> Tally {
    Tally { n: start }
}

#[derive(Debug)]
struct Tally {
    n: u32,
}
""",
    ),
]
