//! What went wrong in a configuration file, and where.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::locate::{locate, Anchor};

/// One step in a path from the document root to a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    pub fn key(k: &str) -> Self {
        Segment::Key(k.to_owned())
    }
}

/// A path such as `routes[2].upstream`, used to name and locate a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn from_segments(segments: Vec<Segment>) -> Self {
        Self(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.0.clone();
        p.push(Segment::key(k));
        Self(p)
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.0.clone();
        p.push(Segment::Index(i));
        Self(p)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let plain =
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key the problem is about.
    pub path: KeyPath,
    /// Whether the location should point at the key or at its value.
    pub anchor: Anchor,
    /// What was expected, or what is wrong.
    pub message: String,
    /// 1-based line and column, once located.
    pub location: Option<(usize, usize)>,
    /// The file, when it is not the report's own (a WAF rule file the
    /// config names); such problems come located.
    pub file: Option<Arc<Path>>,
}

impl Problem {
    pub fn at_value(path: KeyPath, message: impl Into<String>) -> Self {
        Self { path, anchor: Anchor::Value, message: message.into(), location: None, file: None }
    }

    pub fn at_key(path: KeyPath, message: impl Into<String>) -> Self {
        Self { path, anchor: Anchor::Key, message: message.into(), location: None, file: None }
    }

    /// Locates `problems` in `source`, the text of `file`, and marks them as
    /// that file's, for a report about another file.
    pub fn in_file(file: &Path, source: &str, problems: Vec<Problem>) -> Vec<Problem> {
        let file: Arc<Path> = Arc::from(file);
        let mut located = ConfigError::new(&file, source, problems).problems;
        for p in &mut located {
            p.file = Some(file.clone());
        }
        located
    }
}

/// Every problem found in one configuration file. Its `Display` prints one
/// problem per line as `file:line:col: key: message`, the form editors and
/// terminals turn into links.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Builds a report, locating each problem in `source`.
    pub fn new(file: &Path, source: &str, mut problems: Vec<Problem>) -> Self {
        for p in &mut problems {
            if p.location.is_none() && p.file.is_none() && !p.path.is_root() {
                p.location = locate(source, &p.path, p.anchor);
            }
        }
        problems.sort_by(|a, b| {
            let key = |p: &Problem| (p.file.clone(), p.location.unwrap_or((usize::MAX, 0)));
            key(a).cmp(&key(b))
        });
        problems.dedup();
        Self { file: file.to_owned(), problems }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let file = p.file.as_ref().map_or(file.to_string(), |f| f.display().to_string());
            match p.location {
                Some((line, col)) => write!(f, "{file}:{line}:{col}: ")?,
                None => write!(f, "{file}: ")?,
            }
            if p.path.is_root() {
                f.write_str(&p.message)?;
            } else {
                write!(f, "{}: {}", p.path, p.message)?;
            }
        }
        let n = self.problems.len();
        let plural = if n == 1 { "" } else { "s" };
        match self.problems.iter().filter(|p| p.file.is_some()).count() {
            0 => write!(f, "\n{n} problem{plural} in {file}"),
            _ => write!(f, "\n{n} problem{plural} in {file} and the files it names"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The nearest candidate to `word` by edit distance, if it is close enough to
/// be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lc = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lc, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions
/// and swaps of adjacent characters (`bnid` is one step from `bind`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_a_user_would_write_them() {
        let p = KeyPath::root().key("routes").index(2).key("upstream");
        assert_eq!(p.to_string(), "routes[2].upstream");
        let p = KeyPath::root().key("queues").key("payments.fifo");
        assert_eq!(p.to_string(), "queues.\"payments.fifo\"");
    }

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        let keys = ["bind", "tls", "idle_timeout", "header_read_timeout"];
        assert_eq!(suggest("bnid", keys), Some("bind"));
        assert_eq!(suggest("idle_timout", keys), Some("idle_timeout"));
        assert_eq!(suggest("TLS", keys), Some("tls"));
        assert_eq!(suggest("upstream", keys), None);
    }
}
