//! Handling of the raw source text: byte offsets to line numbers, and
//! SPIRE's `-expandEnv` substitution.

/// Maps byte offsets in a text to one-based line numbers.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    /// Byte offset at which each line starts; the first is always 0.
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the lines of `source`.
    pub(crate) fn new(source: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// The one-based line holding byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }
}

/// Expands `$VAR` and `${VAR}` in `source`, exactly like Go's `os.ExpandEnv`
/// which SPIRE applies to the configuration file when `-expandEnv` is given.
///
/// `lookup` returns a variable's value; unset variables expand to the empty
/// string, as in Go. Go's rules are kept to the letter:
///
/// * `${NAME}` takes everything up to the closing brace as the name;
/// * `$NAME` takes the longest run of ASCII letters, digits and `_`;
/// * `$` followed by one of `*#$@!?-` or a digit names that one character;
/// * `${}` and an unclosed `${` are removed; a `$` followed by anything else
///   (or at the end) is kept.
///
/// Pass `|name| std::env::var(name).ok()` to read the process environment.
///
/// ```
/// use spinel_config::hcl::expand_env;
///
/// let lookup = |name: &str| (name == "PORT").then(|| "8081".to_owned());
/// assert_eq!(expand_env("bind_port = \"$PORT\" # ${PORT}", lookup), "bind_port = \"8081\" # 8081");
/// assert_eq!(expand_env("a = \"${UNSET}\"", lookup), "a = \"\"");
/// ```
pub fn expand_env(source: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    // `copied` is the offset up to which `source` is already in `out`. All
    // slicing happens next to ASCII bytes, hence on character boundaries.
    let mut copied = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&source[copied..j]);
            let (name, width) = shell_name(&source[j + 1..]);
            match name {
                Some(name) => out.push_str(&lookup(name).unwrap_or_default()),
                // Valid syntax, but no name: keep the dollar.
                None if width == 0 => out.push('$'),
                // Bad syntax: the characters are dropped.
                None => {}
            }
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    out.push_str(&source[copied.min(source.len())..]);
    out
}

/// Go's `getShellName`: the variable name at the start of `s` (which
/// follows a `$`) and how many bytes it spans.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return (None, 0);
    };
    if first == b'{' {
        if bytes.len() > 2 && is_special(bytes[1]) && bytes[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match bytes.iter().skip(1).position(|&b| b == b'}') {
            Some(0) => (None, 2),
            Some(end) => (Some(&s[1..=end]), end + 2),
            None => (None, 1),
        };
    }
    if is_special(first) {
        return (Some(&s[..1]), 1);
    }
    let len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    if len == 0 {
        (None, 0)
    } else {
        (Some(&s[..len]), len)
    }
}

/// Go's `isShellSpecialVar`.
fn is_special(b: u8) -> bool {
    matches!(b, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/spire".to_owned()),
            "TD" => Some("example.org".to_owned()),
            "1" => Some("one".to_owned()),
            "A_B" => Some("ab".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn line_index_maps_offsets() {
        let index = LineIndex::new("ab\ncd\n\nef");
        assert_eq!(index.line(0), 1);
        assert_eq!(index.line(2), 1);
        assert_eq!(index.line(3), 2);
        assert_eq!(index.line(6), 3);
        assert_eq!(index.line(7), 4);
        assert_eq!(index.line(100), 4);
    }

    #[test]
    fn expands_both_forms() {
        assert_eq!(
            expand_env("$HOME/x ${TD}", env),
            "/home/spire/x example.org"
        );
        assert_eq!(expand_env("$A_B-$A_B.", env), "ab-ab.");
        assert_eq!(expand_env("${A_B}c", env), "abc");
        assert_eq!(expand_env("x${TD}y$TD", env), "xexample.orgyexample.org");
    }

    #[test]
    fn unset_variables_expand_to_nothing() {
        assert_eq!(expand_env("a$NOPE b ${NOPE}c", env), "a b c");
    }

    #[test]
    fn follows_go_edge_cases() {
        // A trailing dollar and a dollar before punctuation are kept.
        assert_eq!(expand_env("cost: 5$", env), "cost: 5$");
        assert_eq!(expand_env("a $ b $.", env), "a $ b $.");
        // Special one-character names.
        assert_eq!(expand_env("$1x ${1}", env), "onex one");
        assert_eq!(expand_env("$$", env), "");
        // Bad syntax is eaten.
        assert_eq!(expand_env("a${}b", env), "ab");
        assert_eq!(expand_env("a${TD", env), "aTD");
    }

    #[test]
    fn keeps_non_ascii_text() {
        assert_eq!(expand_env("é$TD→ü", env), "éexample.org→ü");
        assert_eq!(expand_env("no variables here", env), "no variables here");
    }
}
