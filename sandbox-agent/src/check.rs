//! The built-in checkers. Each answers `Ok` or the first difference, worded for the
//! user. Outputs are untrusted: arbitrary bytes, up to the output limit (megabytes), so
//! nothing here assumes UTF-8 and nothing holds more than one line or token at a time
//! beyond the input slices.

use protocol::Checker;

/// Judges `actual` against `expected` with a built-in checker. `Checker::Program` is not
/// built in: the caller runs it; here it is an error.
pub fn check(checker: &Checker, expected: &[u8], actual: &[u8]) -> Result<(), String> {
    match checker {
        Checker::Whitespace => compare_lines(expected, actual, |a, b| a == b),
        Checker::CaseInsensitive => compare_lines(expected, actual, |a, b| a.eq_ignore_ascii_case(b)),
        Checker::Exact => exact(expected, actual),
        Checker::Tokens { case_sensitive } => compare_tokens(expected, actual, |e, a| same_token(e, a, *case_sensitive)),
        Checker::Float { absolute, relative, case_sensitive } => compare_tokens(expected, actual, |e, a| {
            match parse_number(e) {
                Some(x) => match parse_number(a) {
                    Some(y) if within(x, y, *absolute, *relative) => Ok(()),
                    Some(y) => Err(format!(
                        "expected {}, got {} (difference {:.3e}, allowed {:e} absolute or {:e} relative)",
                        show(e),
                        show(a),
                        (x - y).abs(),
                        absolute,
                        relative
                    )),
                    None => Err(format!("expected the number {}, got {}", show(e), show(a))),
                },
                None => same_token(e, a, *case_sensitive),
            }
        }),
        Checker::Program(_) => Err("a checker program is not a built-in checker".into()),
    }
}

/// The default: trailing whitespace on each line and trailing blank lines ignored.
pub fn compare(expected: &[u8], actual: &[u8]) -> Result<(), String> {
    check(&Checker::Whitespace, expected, actual)
}

fn compare_lines(expected: &[u8], actual: &[u8], eq: impl Fn(&[u8], &[u8]) -> bool) -> Result<(), String> {
    let (e, a) = (lines(expected), lines(actual));
    for (i, (el, al)) in e.iter().zip(a.iter()).enumerate() {
        if !eq(el, al) {
            return Err(format!("line {}: expected {}, got {}", i + 1, show(el), show(al)));
        }
    }
    match e.len().cmp(&a.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => {
            Err(format!("line {}: expected {}, got end of output", a.len() + 1, show(e[a.len()])))
        }
        std::cmp::Ordering::Less => {
            Err(format!("line {}: expected end of output, got {}", e.len() + 1, show(a[e.len()])))
        }
    }
}

fn lines(text: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = text.split(|&b| b == b'\n').map(|l| l.trim_ascii_end()).collect();
    while v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

fn exact(expected: &[u8], actual: &[u8]) -> Result<(), String> {
    let Some(at) = expected.iter().zip(actual).position(|(a, b)| a != b).or_else(|| {
        (expected.len() != actual.len()).then_some(expected.len().min(actual.len()))
    }) else {
        return Ok(());
    };
    let line = 1 + expected[..at].iter().filter(|&&b| b == b'\n').count();
    let column = 1 + at - expected[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let around = |t: &[u8]| {
        if at >= t.len() { "end of output".to_string() } else { show(&t[at..t.len().min(at + 20)]) }
    };
    Err(format!("line {line}, column {column} (byte {at}): expected {}, got {}", around(expected), around(actual)))
}

/// Whitespace-separated tokens with the line each starts on.
fn tokens(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut line = 1;
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        line += rest[..start].iter().filter(|&&b| b == b'\n').count();
        rest = &rest[start..];
        let end = rest.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        rest = tail;
        Some((line, token))
    })
}

fn compare_tokens(
    expected: &[u8],
    actual: &[u8],
    eq: impl Fn(&[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let (mut e, mut a) = (tokens(expected), tokens(actual));
    let mut n = 0usize;
    loop {
        n += 1;
        match (e.next(), a.next()) {
            (None, None) => return Ok(()),
            (Some((_, et)), None) => return Err(format!("token {n}: expected {}, got end of output", show(et))),
            (None, Some((line, at))) => {
                return Err(format!("line {line}, token {n}: expected end of output, got {}", show(at)));
            }
            (Some((_, et)), Some((line, at))) => {
                if let Err(why) = eq(et, at) {
                    return Err(format!("line {line}, token {n}: {why}"));
                }
            }
        }
    }
}

fn same_token(expected: &[u8], actual: &[u8], case_sensitive: bool) -> Result<(), String> {
    let same = if case_sensitive { expected == actual } else { expected.eq_ignore_ascii_case(actual) };
    if same { Ok(()) } else { Err(format!("expected {}, got {}", show(expected), show(actual))) }
}

/// A decimal number as contest outputs write them; not `inf`, `nan` or hex, which
/// Rust's parser would take.
fn parse_number(token: &[u8]) -> Option<f64> {
    if token.is_empty() || !token.iter().all(|b| b.is_ascii_digit() || b"+-.eE".contains(b)) {
        return None;
    }
    let x: f64 = std::str::from_utf8(token).ok()?.parse().ok()?;
    x.is_finite().then_some(x)
}

/// Kattis: accepted when the absolute or the relative error is within its tolerance.
fn within(expected: f64, actual: f64, absolute: f64, relative: f64) -> bool {
    let diff = (expected - actual).abs();
    diff <= absolute || diff <= relative * expected.abs()
}

fn show(text: &[u8]) -> String {
    const MAX: usize = 80;
    let s = String::from_utf8_lossy(&text[..text.len().min(MAX)]);
    if text.len() > MAX { format!("{s:?}...") } else { format!("{s:?}") }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{check, compare};
    use protocol::Checker;

    #[test]
    fn trailing_whitespace_and_blank_lines_are_ignored() {
        assert_eq!(compare(b"1 2\n3\n", b"1 2   \r\n3\n\n\n"), Ok(()));
        assert_eq!(compare(b"a", b"a\n"), Ok(()));
        assert_eq!(compare(b"", b"\n \n"), Ok(()));
    }

    #[test]
    fn differences_are_named_by_line() {
        assert_eq!(compare(b"1\n2\n", b"1\n3\n"), Err("line 2: expected \"2\", got \"3\"".into()));
        assert_eq!(compare(b"1\n2\n", b"1\n"), Err("line 2: expected \"2\", got end of output".into()));
        assert_eq!(compare(b"1\n", b"1\n2"), Err("line 2: expected end of output, got \"2\"".into()));
        // Leading whitespace matters.
        assert!(compare(b"x", b" x").is_err());
    }

    #[test]
    fn exact_names_line_column_and_byte() {
        assert_eq!(check(&Checker::Exact, b"ab\ncd\n", b"ab\ncd\n"), Ok(()));
        assert_eq!(
            check(&Checker::Exact, b"ab\ncd\n", b"ab\ncx\n"),
            Err("line 2, column 2 (byte 4): expected \"d\\n\", got \"x\\n\"".into())
        );
        // A trailing newline is a difference for the exact checker only.
        assert_eq!(
            check(&Checker::Exact, b"ab\n", b"ab"),
            Err("line 1, column 3 (byte 2): expected \"\\n\", got end of output".into())
        );
        assert_eq!(compare(b"ab\n", b"ab"), Ok(()));
    }

    #[test]
    fn case_insensitive_ignores_ascii_case_only() {
        assert_eq!(check(&Checker::CaseInsensitive, b"Yes\nNO\n", b"yES  \nno"), Ok(()));
        assert_eq!(
            check(&Checker::CaseInsensitive, b"yes\n", b"yes!\n"),
            Err("line 1: expected \"yes\", got \"yes!\"".into())
        );
        assert!(check(&Checker::Whitespace, b"Yes", b"yes").is_err());
    }

    #[test]
    fn tokens_ignore_layout_and_name_the_first_differing_token() {
        let t = Checker::Tokens { case_sensitive: true };
        assert_eq!(check(&t, b"1 2\n3\n", b"  1\n2 3"), Ok(()));
        assert_eq!(check(&t, b"1 2 3\n4\n", b"1 2 3\n5\n"), Err("line 2, token 4: expected \"4\", got \"5\"".into()));
        assert_eq!(check(&t, b"1 2", b"1"), Err("token 2: expected \"2\", got end of output".into()));
        assert_eq!(check(&t, b"1", b"1\n\n 9"), Err("line 3, token 2: expected end of output, got \"9\"".into()));
        assert!(check(&t, b"YES", b"yes").is_err());
        assert_eq!(check(&Checker::Tokens { case_sensitive: false }, b"YES", b"yes"), Ok(()));
    }

    #[test]
    fn float_tolerance_is_absolute_or_relative() {
        let f = Checker::Float { absolute: 1e-6, relative: 1e-6, case_sensitive: false };
        assert_eq!(check(&f, b"1.0 2.5\n", b"1.0000009 2.5000001"), Ok(()));
        // Large values pass on the relative error, small ones on the absolute error.
        assert_eq!(check(&f, b"1000000", b"1000000.9"), Ok(()));
        assert_eq!(check(&f, b"0.0000001", b"0.0000009"), Ok(()));
        let err = check(&f, b"1 2", b"1 2.01").unwrap_err();
        assert!(err.starts_with("line 1, token 2: expected \"2\", got \"2.01\" (difference 1.000e-2, allowed 1e-6 absolute"), "{err}");
        // Words between numbers compare as words (case ignored as configured).
        assert_eq!(check(&f, b"Case 1: 0.5", b"case 1: 0.5000000001"), Ok(()));
        assert_eq!(
            check(&f, b"0.5", b"half"),
            Err("line 1, token 1: expected the number \"0.5\", got \"half\"".into())
        );
        // Not numbers even though Rust would parse them.
        assert!(check(&f, b"1", b"inf").is_err());
        assert!(check(&f, b"1", b"NaN").is_err());
        let abs_only = Checker::Float { absolute: 0.1, relative: 0.0, case_sensitive: true };
        assert!(check(&abs_only, b"1000", b"1000.2").is_err());
        assert_eq!(check(&abs_only, b"1000", b"1000.05"), Ok(()));
    }

    #[test]
    fn hostile_output_is_judged_not_trusted() {
        // Binary bytes and invalid UTF-8: a plain WA with a printable message.
        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        for c in [
            Checker::Whitespace,
            Checker::Exact,
            Checker::CaseInsensitive,
            Checker::Tokens { case_sensitive: true },
            Checker::Float { absolute: 1e-9, relative: 1e-9, case_sensitive: true },
        ] {
            let err = check(&c, b"42\n", &binary).unwrap_err();
            assert!(err.len() < 400, "{c:?}: message of {} bytes", err.len());
            assert!(!err.contains('\0'), "{c:?}: raw NUL in {err:?}");
        }
        // Huge output: 64 MiB of digits on one line is judged quickly, and the message
        // shows only the start of the offending token.
        let huge = vec![b'7'; 64 << 20];
        let started = std::time::Instant::now();
        for c in [Checker::Whitespace, Checker::Exact, Checker::Tokens { case_sensitive: true }] {
            let err = check(&c, b"7\n", &huge).unwrap_err();
            assert!(err.len() < 400, "{c:?}: {err}");
        }
        let many_tokens = b"1 ".repeat(8 << 20);
        assert_eq!(check(&Checker::Tokens { case_sensitive: true }, &many_tokens, &many_tokens), Ok(()));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    }
}
