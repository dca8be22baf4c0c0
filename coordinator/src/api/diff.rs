//! A line diff of two code versions: Myers' O((N+M)·D) shortest edit script, so two
//! large files that differ in a few lines cost little. Beyond `MAX_EDITS` the script is
//! not searched further: everything left is shown as removed and added, which is still
//! a correct (if not minimal) diff.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    Add,
    Remove,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "equal",
            Op::Add => "add",
            Op::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub op: Op,
    /// 1-based line numbers in the old and the new text (None for an added / removed line).
    pub old_line: Option<usize>,
    pub new_line: Option<usize>,
    pub text: &'a str,
}

/// Bounds the search's memory: the trace keeps the frontier of each edit count d
/// (2d+1 entries), about MAX_EDITS² words in all (8 MB).
const MAX_EDITS: usize = 1000;

pub fn lines<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Common prefix and suffix first: the usual edit touches the middle of a file.
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    for (i, text) in a[..prefix].iter().enumerate() {
        out.push(Line { op: Op::Equal, old_line: Some(i + 1), new_line: Some(i + 1), text });
    }
    for (op, i, j) in script(mid_a, mid_b) {
        let (old_line, new_line) = (Some(prefix + i + 1), Some(prefix + j + 1));
        out.push(match op {
            Op::Equal => Line { op, old_line, new_line, text: mid_a[i] },
            Op::Remove => Line { op, old_line, new_line: None, text: mid_a[i] },
            Op::Add => Line { op, old_line: None, new_line, text: mid_b[j] },
        });
    }
    for k in 0..suffix {
        let (i, j) = (a.len() - suffix + k, b.len() - suffix + k);
        out.push(Line { op: Op::Equal, old_line: Some(i + 1), new_line: Some(j + 1), text: a[i] });
    }
    out
}

/// The edit script of `a` into `b` as (op, index in a, index in b), in order.
fn script(a: &[&str], b: &[&str]) -> Vec<(Op, usize, usize)> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = (a.len() + b.len()).min(MAX_EDITS) as isize;
    let offset = max + 1;
    let mut v = vec![0isize; 2 * offset as usize + 1];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'search: for d in 0..=max {
        // Diagonals -d..=d of the previous frontier: all that the walk back reads.
        trace.push(v[(offset - d) as usize..=(offset + d) as usize].to_vec());
        let mut k = -d;
        while k <= d {
            let idx = (k + offset) as usize;
            let mut x = if k == -d || (k != d && v[idx - 1] < v[idx + 1]) { v[idx + 1] } else { v[idx - 1] + 1 };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[idx] = x;
            if x >= n && y >= m {
                found = Some(d);
                break 'search;
            }
            k += 2;
        }
    }
    let Some(d_end) = found else {
        // Too many edits to search: remove everything, then add everything.
        let mut s: Vec<(Op, usize, usize)> = (0..a.len()).map(|i| (Op::Remove, i, 0)).collect();
        s.extend((0..b.len()).map(|j| (Op::Add, a.len(), j)));
        return s;
    };
    // Walk back through the frontiers, from (n, m) to (0, 0).
    let mut edits = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..=d_end).rev() {
        let frontier = &trace[d as usize];
        let at = |k: isize| frontier[(k + d) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) { k + 1 } else { k - 1 };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            edits.push((Op::Equal, x as usize, y as usize));
        }
        if x == prev_x {
            y -= 1;
            edits.push((Op::Add, x as usize, y as usize));
        } else {
            x -= 1;
            edits.push((Op::Remove, x as usize, y as usize));
        }
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        edits.push((Op::Equal, x as usize, y as usize));
    }
    edits.reverse();
    edits
}

/// The diff as text: `+`, `-` or a space, then the line.
pub fn unified(lines: &[Line<'_>]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push(match l.op {
            Op::Equal => ' ',
            Op::Add => '+',
            Op::Remove => '-',
        });
        out.push_str(l.text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applying the diff to the old text must give the new one, and the equal lines must
    /// be the old text minus the removed ones.
    fn check(old: &str, new: &str) -> Vec<Line<'static>> {
        let old: &'static str = Box::leak(old.to_owned().into_boxed_str());
        let new: &'static str = Box::leak(new.to_owned().into_boxed_str());
        let d = lines(old, new);
        let rebuilt_new: Vec<&str> = d.iter().filter(|l| l.op != Op::Remove).map(|l| l.text).collect();
        let rebuilt_old: Vec<&str> = d.iter().filter(|l| l.op != Op::Add).map(|l| l.text).collect();
        assert_eq!(rebuilt_new, new.lines().collect::<Vec<_>>());
        assert_eq!(rebuilt_old, old.lines().collect::<Vec<_>>());
        for l in &d {
            if let Some(n) = l.old_line {
                assert_eq!(old.lines().nth(n - 1), Some(l.text));
            }
            if let Some(n) = l.new_line {
                assert_eq!(new.lines().nth(n - 1), Some(l.text));
            }
        }
        d
    }

    fn ops(d: &[Line<'_>]) -> String {
        d.iter().map(|l| match l.op {
            Op::Equal => '=',
            Op::Add => '+',
            Op::Remove => '-',
        })
        .collect()
    }

    #[test]
    fn one_changed_line_is_one_removal_and_one_addition() {
        let d = check("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(ops(&d), "=-+=");
        assert_eq!(d[1].old_line, Some(2));
        assert_eq!(d[2].new_line, Some(2));
    }

    #[test]
    fn the_script_is_minimal_on_classic_examples() {
        // Myers' paper: ABCABBA -> CBABAC needs 5 edits.
        let a = "A\nB\nC\nA\nB\nB\nA";
        let b = "C\nB\nA\nB\nA\nC";
        let d = check(a, b);
        assert_eq!(d.iter().filter(|l| l.op != Op::Equal).count(), 5, "{}", ops(&d));
        assert_eq!(ops(&check("", "x\ny")), "++");
        assert_eq!(ops(&check("x\ny", "")), "--");
        assert_eq!(ops(&check("same\n", "same\n")), "=");
    }

    #[test]
    fn insertions_in_a_long_file_keep_everything_else_equal() {
        let old: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let mut new = old.replace("line 100\n", "line 100\ninserted\n");
        new = new.replace("line 400\n", "");
        let d = check(&old, &new);
        assert_eq!(ops(&d).matches('+').count(), 1);
        assert_eq!(ops(&d).matches('-').count(), 1);
    }

    #[test]
    fn too_many_edits_still_give_a_correct_diff() {
        let old: String = (0..1500).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..1500).map(|i| format!("b{i}\n")).collect();
        let d = check(&old, &new);
        assert_eq!(d.len(), 3000);
    }
}
