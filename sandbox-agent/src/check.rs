//! Output comparison. The default checker ignores trailing whitespace on each line and
//! trailing blank lines, as most judges do.

/// `Ok` when `actual` matches `expected`; otherwise the first difference, for the user.
pub fn compare(expected: &[u8], actual: &[u8]) -> Result<(), String> {
    let (e, a) = (lines(expected), lines(actual));
    for (i, (el, al)) in e.iter().zip(a.iter()).enumerate() {
        if el != al {
            return Err(format!("line {}: expected {}, got {}", i + 1, show(el), show(al)));
        }
    }
    match e.len().cmp(&a.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(format!("line {}: expected {}, got end of output", a.len() + 1, show(e[a.len()]))),
        std::cmp::Ordering::Less => Err(format!("line {}: expected end of output, got {}", e.len() + 1, show(a[e.len()]))),
    }
}

fn lines(text: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = text.split(|&b| b == b'\n').map(|l| l.trim_ascii_end()).collect();
    while v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

fn show(line: &[u8]) -> String {
    const MAX: usize = 80;
    let s = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    if line.len() > MAX { format!("{s:?}...") } else { format!("{s:?}") }
}

#[cfg(test)]
mod tests {
    use super::compare;

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
}
