//! Go's `text/tabwriter`, padding with spaces, as kubectl configures it:
//! [`TabWriter::kubectl`] for tables (cli-runtime's `GetNewTabWriter`:
//! minwidth 6, padding 3), [`TabWriter::new`] with minwidth 0 otherwise
//! (describe's padding 2); including kubectl's fork's "remembered widths"
//! that keep watch output aligned across flushes.
//!
//! Text is buffered until [`TabWriter::flush`]. Cells are tab-terminated;
//! the text after a line's last tab is not part of any column. A column
//! block is a run of consecutive lines that have a cell in that column; its
//! width is the widest cell plus the padding.

/// Buffers tab-separated text and aligns it on flush.
#[derive(Debug)]
pub struct TabWriter {
    padding: usize,
    /// The least width of a column, padding included.
    min_width: usize,
    buf: String,
    remember_widths: bool,
    remembered: Vec<usize>,
}

impl TabWriter {
    /// A writer with `padding` spaces between columns (kubectl's tables use
    /// 3, `describe` uses 2).
    pub fn new(padding: usize) -> Self {
        TabWriter {
            padding,
            min_width: 0,
            buf: String::new(),
            remember_widths: false,
            remembered: Vec::new(),
        }
    }

    /// The writer of kubectl's tables (`get`, `api-resources`, custom
    /// columns, `config get-contexts`, `auth`): columns at least 6 wide,
    /// 3 spaces of padding.
    pub fn kubectl() -> Self {
        TabWriter {
            min_width: 6,
            ..TabWriter::new(3)
        }
    }

    /// Keeps column widths across flushes (they only grow), as kubectl does
    /// for `get --watch`.
    pub fn remember_widths(mut self) -> Self {
        self.remember_widths = true;
        self
    }

    /// Forgets remembered widths (a new table starts).
    pub fn reset_widths(&mut self) {
        self.remembered.clear();
    }

    pub fn write(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// Whether text is waiting for a flush.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Aligns and returns the buffered text.
    pub fn flush(&mut self) -> String {
        let text = std::mem::take(&mut self.buf);
        if text.is_empty() {
            return text;
        }
        let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
        // A trailing newline leaves an empty last "line" that is not output.
        let ends_with_newline = text.ends_with('\n');
        if ends_with_newline {
            lines.pop();
        }
        let mut out = String::new();
        let mut widths = Vec::new();
        self.format(&lines, 0, lines.len(), &mut widths, &mut out);
        if !ends_with_newline && out.ends_with('\n') {
            out.pop();
        }
        out
    }

    fn format(
        &mut self,
        lines: &[Vec<&str>],
        mut line0: usize,
        line1: usize,
        widths: &mut Vec<usize>,
        out: &mut String,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            // This line has a cell in this column: a block begins.
            self.write_lines(lines, line0, this, widths, out);
            line0 = this;
            let mut width = self.min_width;
            while this < line1 && column + 1 < lines[this].len() {
                let w = cell_width(lines[this][column]) + self.padding;
                width = width.max(w);
                this += 1;
            }
            if self.remember_widths {
                if let Some(&old) = self.remembered.get(column) {
                    width = width.max(old);
                }
                if self.remembered.len() <= column {
                    self.remembered.resize(column + 1, 0);
                }
                self.remembered[column] = width;
            }
            widths.push(width);
            self.format(lines, line0, this, widths, out);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, line0, line1, widths, out);
    }

    fn write_lines(&self, lines: &[Vec<&str>], line0: usize, line1: usize, widths: &[usize], out: &mut String) {
        for line in &lines[line0..line1] {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if j + 1 < line.len() && j < widths.len() {
                    let pad = widths[j].saturating_sub(cell_width(cell));
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
    }
}

fn cell_width(s: &str) -> usize {
    s.chars().count()
}

/// Aligns `text` in one go.
pub fn align(text: &str, padding: usize) -> String {
    let mut w = TabWriter::new(padding);
    w.write(text);
    w.flush()
}

/// Aligns `text` as kubectl's tables are ([`TabWriter::kubectl`]).
pub fn align_kubectl(text: &str) -> String {
    let mut w = TabWriter::kubectl();
    w.write(text);
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_go() {
        let cases = [
            (
                "NAME\tAGE\nnginx\t5s\n",
                "NAME    AGE\nnginx   5s\n",
                "last cell unpadded",
            ),
            (
                "CURRENT\tNAME\tNS\n*\tctx\t\n",
                "CURRENT   NAME   NS\n*         ctx    \n",
                "empty trailing cell leaves the padding of the previous one",
            ),
            (
                "Name:\tw1\nSpec:\n  Color:\tred\n  Nested:\n    Other Thing:\t4\n  Size:\t3\n",
                "Name:  w1\nSpec:\n  Color:  red\n  Nested:\n    Other Thing:  4\n  Size:           3\n",
                "column blocks are runs of consecutive lines",
            ),
            ("a\tb\n\nccc\td\n", "a   b\n\nccc   d\n", "an empty line ends a block"),
        ];
        for (input, want, why) in cases {
            let pad = if input.contains("Spec:") { 2 } else { 3 };
            assert_eq!(align(input, pad), want, "{why}");
        }
    }

    #[test]
    fn remembered_widths_grow() {
        let mut w = TabWriter::new(3).remember_widths();
        w.write("NAME\tAGE\nlongername\t1s\n");
        assert_eq!(w.flush(), "NAME         AGE\nlongername   1s\n");
        w.write("a\t2s\n");
        assert_eq!(w.flush(), "a            2s\n");
    }
}
