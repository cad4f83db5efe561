//! Unified diffs of text files: `--dry-run` and the install report, and the changes
//! `gateway watch` reports.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

const CONTEXT: usize = 3;
/// Above this many cells the LCS table is not built; the diff shows old and new whole instead.
const MAX_CELLS: usize = 16_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Del,
    Add,
}

fn ops(a: &[&str], b: &[&str]) -> Vec<(Op, usize, usize)> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS {
        let mut out: Vec<_> = (0..n).map(|i| (Op::Del, i, 0)).collect();
        out.extend((0..m).map(|j| (Op::Add, n, j)));
        return out;
    }
    // lcs[i][j]: length of the common subsequence of a[i..] and b[j..].
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Op::Keep, i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            out.push((Op::Del, i, j));
            i += 1;
        } else {
            out.push((Op::Add, i, j));
            j += 1;
        }
    }
    out
}

/// `diff -u` style text between two versions of `path`; empty when they are equal.
/// `None` stands for a file that does not exist.
pub fn unified(path: &str, old: Option<&str>, new: Option<&str>) -> String {
    if old == new {
        return String::new();
    }
    let label = |t: Option<&str>| if t.is_some() { path } else { "/dev/null" };
    labelled(label(old), label(new), old.unwrap_or(""), new.unwrap_or(""))
}

/// `diff -u` style text from `old` (headed `from`) to `new` (headed `to`), for texts the
/// caller knows differ.
pub fn labelled(from: &str, to: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut s = String::new();
    let _ = writeln!(s, "--- {from}");
    let _ = writeln!(s, "+++ {to}");
    let ops = ops(&a, &b);
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Keep).collect();
    if changed.is_empty() {
        // Same lines, different bytes (a trailing newline).
        let _ = writeln!(s, "@@ only the final newline differs @@");
        return s;
    }
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_start = hunk[0].1;
        let b_start = hunk[0].2;
        let a_len = hunk.iter().filter(|o| o.0 != Op::Add).count();
        let b_len = hunk.iter().filter(|o| o.0 != Op::Del).count();
        let _ = writeln!(
            s,
            "@@ -{},{a_len} +{},{b_len} @@",
            a_start + usize::from(a_len > 0),
            b_start + usize::from(b_len > 0)
        );
        for &(op, i, j) in hunk {
            let _ = match op {
                Op::Keep => writeln!(s, " {}", a[i]),
                Op::Del => writeln!(s, "-{}", a[i]),
                Op::Add => writeln!(s, "+{}", b[j]),
            };
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_exactly_the_changed_lines() {
        let old = "a\nb\nvastai_kaalia ALL=(ALL) NOPASSWD:ALL\nc\n";
        let new = "a\nb\nc\n";
        let d = unified("/etc/sudoers", Some(old), Some(new));
        assert!(d.contains("-vastai_kaalia ALL=(ALL) NOPASSWD:ALL\n"), "{d}");
        assert_eq!(d.lines().filter(|l| l.starts_with('+')).count(), 1, "{d}");
        assert!(d.contains("@@ -1,4 +1,3 @@"), "{d}");
    }

    #[test]
    fn new_and_removed_files_diff_against_dev_null() {
        let d = unified("/etc/sudoers.d/gateway", None, Some("x\n"));
        assert!(
            d.starts_with("--- /dev/null\n+++ /etc/sudoers.d/gateway\n"),
            "{d}"
        );
        assert!(d.contains("+x\n"));
        let d = unified("/f", Some("x\n"), None);
        assert!(d.contains("+++ /dev/null") && d.contains("-x"), "{d}");
        assert_eq!(unified("/f", Some("same\n"), Some("same\n")), "");
    }
}
