//! Plain aligned tables: columns separated by two spaces, no borders, no colour.

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table of text cells under a header row.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub(crate) fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            headers: columns.iter().map(|&(header, _)| header).collect(),
            aligns: columns.iter().map(|&(_, align)| align).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; its cells' line breaks and other control characters become spaces.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|cell| single_line(&cell)).collect());
    }

    /// The table's lines, header first, without trailing spaces.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|header| (*header).to_owned()).collect();
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .zip(&self.aligns)
                    .map(|((cell, &width), align)| match align {
                        Align::Left => format!("{cell:<width$}"),
                        Align::Right => format!("{cell:>width$}"),
                    })
                    .collect();
                cells.join("  ").trim_end().to_owned()
            })
            .collect()
    }
}

/// `text` on one line: control characters (line breaks, tabs, escapes) become spaces.
pub(crate) fn single_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_numbers_are_right_aligned() {
        let mut table = Table::new(&[("QUEUE", Align::Left), ("COUNT", Align::Right), ("NOTE", Align::Left)]);
        table.row(vec!["mail".into(), "3".into(), String::new()]);
        table.row(vec!["default".into(), "12345".into(), "two\nlines".into()]);
        assert_eq!(table.lines(), vec!["QUEUE    COUNT  NOTE", "mail         3", "default  12345  two lines"]);
    }
}
