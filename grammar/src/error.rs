//! Diagnostics: a message about a span of the definition, rendered rustc-style for file definitions.

use crate::ast::Span;

/// An error in a definition: what is wrong, where, and how to fix it where that is knowable.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Where: the offending text.
    pub span: Span,
    /// What is wrong, lowercase, code in backticks, no final period.
    pub message: String,
    /// A suggested fix or extra context, shown as `help: ...`.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The message with its help line, for an inline definition (rustc shows the place).
    pub fn message_with_help(&self) -> String {
        match &self.help {
            Some(help) => format!("{}\n  = help: {}", self.message, help),
            None => self.message.clone(),
        }
    }

    /// Renders the error for a definition read from `path`: the message,
    /// `path:line:column`, the line itself and a caret under the offending text.
    pub fn render(&self, source: &str, path: &str) -> String {
        let (line_no, col, line) = line_of(source, self.span.start);
        let line_end_in_span = (self.span.end.min(source.len())).max(self.span.start);
        let width = source[self.span.start.min(source.len())..line_end_in_span]
            .split('\n')
            .next()
            .map_or(1, |s| s.chars().count())
            .max(1);
        let gutter = line_no.to_string().len();
        let pad = " ".repeat(gutter);
        let lead: String = line
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let mut out = format!(
            "{}\n{pad}--> {path}:{line_no}:{col}\n{pad} |\n{line_no} | {line}\n{pad} | {lead}{}",
            self.message,
            "^".repeat(width)
        );
        if let Some(help) = &self.help {
            out.push_str(&format!("\n{pad} = help: {help}"));
        }
        out
    }
}

/// The 1-based line number and column (in characters) of byte `offset`, and that line's text.
pub fn line_of(source: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line_no = source[..line_start].matches('\n').count() + 1;
    let col = source[line_start..offset].chars().count() + 1;
    (
        line_no,
        col,
        source[line_start..line_end].trim_end_matches('\r'),
    )
}

/// The closest of `candidates` to `name` by edit distance, if close enough
/// to be a likely typo (for "did you mean `sigmoid`?").
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        // `z` for `x` is no typo: a suggestion keeps some of the name
        .filter(|&(d, c)| d <= limit && c != name && d < len.max(c.chars().count()))
        // ties go alphabetically, so the suggestion does not depend on hash order
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_column_and_caret() {
        let src = "input x[2];\nh = sigmod(x);\n";
        let start = src.find("sigmod").unwrap();
        let d = Diagnostic::new(Span::new(start, start + 6), "unknown function `sigmod`")
            .with_help("did you mean `sigmoid`?");
        let text = d.render(src, "nets/xor.nn");
        assert_eq!(
            text,
            "unknown function `sigmod`\n --> nets/xor.nn:2:5\n  |\n2 | h = sigmod(x);\n  |     ^^^^^^\n  = help: did you mean `sigmoid`?"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["sigmoid", "tanh", "relu", "softmax_cross_entropy"];
        assert_eq!(did_you_mean("sigmod", names), Some("sigmoid"));
        assert_eq!(did_you_mean("tahn", names), Some("tanh"));
        assert_eq!(did_you_mean("banana", names), None);
        assert_eq!(did_you_mean("z", ["x", "y", "w"]), None);
        assert_eq!(did_you_mean("ab", ["ac", "aa", "bb"]), Some("aa"));
    }
}
