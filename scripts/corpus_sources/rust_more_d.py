"""More Rust functions with #[test] tests that call them (kind "test"), part D: enums,
structs with impl methods, several parameters.

About half of the test names do not contain the function's name (``it_works``, ...).
Written for plip-nn; every sample compiles and passes with ``rustc --test`` (slow test).
"""

SAMPLES: list[tuple[str, str]] = [
    (
        "rs_shape_area",
        r"""enum Shape {
    Square(f64),
    Rectangle(f64, f64),
    Triangle(f64, f64),
}

fn shape_area(shape: &Shape) -> f64 {
    match shape {
        Shape::Square(s) => s * s,
        Shape::Rectangle(w, h) => w * h,
        Shape::Triangle(b, h) => 0.5 * b * h,
    }
}

#[test]
fn test_shape_area() {
    assert_eq!(shape_area(&Shape::Triangle(4.0, 3.0)), 6.0);
    assert_eq!(shape_area(&Shape::Square(2.0)), 4.0);
}
""",
    ),
    (
        "rs_traffic_light",
        r"""#[derive(Debug, PartialEq)]
enum Light {
    Red,
    Yellow,
    Green,
}

fn next_light(current: Light) -> Light {
    match current {
        Light::Red => Light::Green,
        Light::Green => Light::Yellow,
        Light::Yellow => Light::Red,
    }
}

#[test]
fn cycles() {
    assert_eq!(next_light(Light::Red), Light::Green);
}
""",
    ),
    (
        "rs_gross_price",
        r"""fn gross_price(net: f64, tax_rate: f64, discount: f64, quantity: u32, shipping: f64) -> f64 {
    let subtotal = net * quantity as f64 * (1.0 - discount);
    ((subtotal * (1.0 + tax_rate) + shipping) * 100.0).round() / 100.0
}

#[test]
fn test_gross_price() {
    assert_eq!(gross_price(10.0, 0.2, 0.1, 3, 5.0), 37.4);
}
""",
    ),
    (
        "rs_neighbours",
        r"""fn neighbours(row: usize, col: usize, rows: usize, cols: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if row > 0 { out.push((row - 1, col)); }
    if col > 0 { out.push((row, col - 1)); }
    if col + 1 < cols { out.push((row, col + 1)); }
    if row + 1 < rows { out.push((row + 1, col)); }
    out
}

#[test]
fn corner_cell() {
    assert_eq!(neighbours(0, 0, 3, 3), vec![(0, 1), (1, 0)]);
}
""",
    ),
    (
        "rs_winner",
        r"""fn winner<'a>(ballots: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(&str, usize)> = None;
    for name in ballots {
        let n = ballots.iter().filter(|b| *b == name).count();
        if best.map_or(true, |(_, m)| n > m) {
            best = Some((name, n));
        }
    }
    best.map(|(name, _)| name)
}

#[test]
fn test_winner() {
    assert_eq!(winner(&["amy", "bo", "bo", "amy", "cy"]), Some("amy"));
}
""",
    ),
    (
        "rs_build_order",
        r"""fn build_out(deps: &[(&str, &str)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    while out.len() < deps.len() {
        for (task, dep) in deps {
            let done = |t: &str| out.iter().any(|o| o == t);
            if (dep.is_empty() || done(dep)) && !done(task) {
                out.push(task.to_string());
            }
        }
    }
    out
}

#[test]
fn deps_first() {
    let v = build_out(&[("app", "lib"), ("lib", "core"), ("core", "")]);
    assert_eq!(v, ["core", "lib", "app"]);
}
""",
    ),
    (
        "rs_run_lengths",
        r"""fn run_lengths(bits: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut run = 0;
    for &b in bits {
        if b {
            run += 1;
        } else if run > 0 {
            out.push(run);
            run = 0;
        }
    }
    if run > 0 {
        out.push(run);
    }
    out
}

#[test]
fn groups_of_ones() {
    assert_eq!(run_lengths(&[true, true, false, true]), vec![2, 1]);
}
""",
    ),
    (
        "rs_celsius_grid",
        r"""struct Thermometer {
    readings: Vec<f64>,
}

impl Thermometer {
    fn warmest(&self, count: usize) -> Vec<f64> {
        let mut v = self.readings.clone();
        v.sort_by(|a, b| b.partial_cmp(a).unwrap());
        v.truncate(count);
        v
    }
}

#[test]
fn top_two() {
    let t = Thermometer { readings: vec![12.5, 18.0, 9.5, 21.0] };
    assert_eq!(t.warmest(2), vec![21.0, 18.0]);
}
""",
    ),
]
