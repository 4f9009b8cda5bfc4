//! Text from a run folder (class names, image ids, file names, rule
//! messages) made safe for each format misfit writes it into: one function
//! per format, used by every writer. A class folder named
//! `<img src=x onerror=alert(1)>`, a label `=2+5` or a name with `|` or a
//! newline must come out as text, not as HTML a Markdown viewer runs, a
//! formula a spreadsheet evaluates, a broken table, or a terminal control
//! sequence.
//!
//! - [`html`]: HTML text and attribute values (`report.html` escapes through
//!   its template engine, which does the same).
//! - [`md_text`]: Markdown running text (`report.md`, `ticket.md`).
//! - [`md_cell`]: a Markdown table cell (also safe as running text).
//! - [`md_attr`]: an HTML attribute value inside Markdown.
//! - [`md_code`]: a Markdown code span holding the text as it is.
//! - [`csv_cell`]: a CSV cell a spreadsheet opens (`images.csv`).
//! - [`terminal`]: text printed to a terminal.

/// HTML: `&`, `<`, `>`, `"` and `'` as character references.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown running text: HTML's five characters as references (no raw
/// HTML, safe inside an attribute too), Markdown's punctuation
/// backslash-escaped (no emphasis, link, code, heading or strike), line
/// breaks and other control characters as a space (the text stays on its
/// line).
pub fn md_text(s: &str) -> String {
    markdown(s, false)
}

/// A Markdown table cell: [`md_text`], and `|` escaped so the cell stays one
/// cell.
pub fn md_cell(s: &str) -> String {
    markdown(s, true)
}

fn markdown(s: &str, cell: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '|' if cell => out.push_str("\\|"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if is_control(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An HTML attribute value inside Markdown (an `<img>` of `report.md`):
/// [`html`], and `|` as a character reference, so that a table cell stays
/// one cell.
pub fn md_attr(s: &str) -> String {
    html(s).replace('|', "&#124;")
}

/// A Markdown code span (with its backticks) that shows `s` as it is: the
/// fence is one backtick longer than the longest run of backticks in `s`;
/// line breaks and control characters become spaces.
pub fn md_code(s: &str) -> String {
    let s: String = s.chars().map(|c| if is_control(c) { ' ' } else { c }).collect();
    let (mut run, mut longest) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || s.starts_with(' ') && s.ends_with(' ') { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A CSV cell a spreadsheet opens: text that starts like a formula (`=`,
/// `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`, which
/// spreadsheets show as text (OWASP's CSV injection advice). The CSV
/// writer quotes the rest.
pub fn csv_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// Text for a terminal: control characters other than a line break
/// (escape sequences, carriage returns, bidirectional overrides) as `?`.
pub fn terminal(s: &str) -> String {
    s.chars().map(|c| if c != '\n' && is_control(c) { '?' } else { c }).collect()
}

/// C0 and C1 controls, DEL, and the Unicode bidirectional controls that
/// reorder what a reader sees.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<img src=x onerror=alert(1)>";

    #[test]
    fn html_leaves_no_tag_or_attribute_open() {
        assert_eq!(html(HOSTILE), "&lt;img src=x onerror=alert(1)&gt;");
        assert_eq!(html("a\" onload='x' & b"), "a&quot; onload=&#39;x&#39; &amp; b");
    }

    #[test]
    fn markdown_text_and_cells_stay_text_on_one_line() {
        assert_eq!(md_text(HOSTILE), "&lt;img src=x onerror=alert(1)&gt;");
        assert_eq!(
            md_text("pickup_truck *x* [a](b) `c` # ~d~ \\"),
            "pickup\\_truck \\*x\\* \\[a\\](b) \\`c\\` \\# \\~d\\~ \\\\"
        );
        assert_eq!(md_text("a\nb\r\nc\u{1b}[31m"), "a b  c \\[31m");
        assert_eq!(md_text("a|b"), "a|b");
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
        assert_eq!(md_cell("x\" onerror=\"y"), "x&quot; onerror=&quot;y");
        assert_eq!(md_attr("gallery/a|b\" x=\"1.png"), "gallery/a&#124;b&quot; x=&quot;1.png");
    }

    #[test]
    fn a_code_span_holds_any_text() {
        assert_eq!(md_code("misfit findings outputs/demo"), "`misfit findings outputs/demo`");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x``"), "``` `x`` ```");
        assert_eq!(md_code("a\nb"), "`a b`");
    }

    #[test]
    fn csv_cells_that_start_like_a_formula_are_text() {
        for s in ["=2+5", "+1", "-1+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(csv_cell(s), format!("'{s}"));
        }
        for s in ["cat", "", "2=2", "a-b"] {
            assert_eq!(csv_cell(s), s);
        }
    }

    #[test]
    fn the_terminal_gets_no_control_sequence() {
        assert_eq!(terminal("\u{1b}[2J\u{1b}]0;title\u{7}x\ry\u{202e}z\nw"), "?[2J?]0;title?x?y?z\nw");
    }
}
