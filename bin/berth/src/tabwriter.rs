//! Column alignment of tab-separated text, cell for cell as Go's
//! `text/tabwriter` does with the docker CLI's settings (minimum width 10,
//! padding 3, spaces), so tables line up exactly like docker's.

/// Column settings: docker's tables use [`TABLE`], `docker top` [`TOP`],
/// `docker version` [`VERSION`].
#[derive(Clone, Copy)]
pub struct Layout {
    min_width: usize,
    padding: usize,
}

pub const TABLE: Layout = Layout {
    min_width: 10,
    padding: 3,
};

/// `docker top`: minimum width 20.
pub const TOP: Layout = Layout {
    min_width: 20,
    padding: 3,
};

pub const VERSION: Layout = Layout {
    min_width: 20,
    padding: 1,
};

/// Aligns `text` as a docker table.
pub fn align(text: &str) -> String {
    align_with(text, TABLE)
}

/// Aligns `text`: each `\t`-terminated cell is padded to the widest cell of its
/// column block; the cell after a line's last tab is written as it is.
pub fn align_with(text: &str, layout: Layout) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(&mut out, &lines, 0, lines.len(), &mut widths, layout);
    out
}

fn cell_width(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    out: &mut String,
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    layout: Layout,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block of consecutive lines that all have a cell in this column.
        write_lines(out, lines, line0, this, widths);
        line0 = this;
        let mut width = layout.min_width;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + layout.padding);
            this += 1;
        }
        widths.push(width);
        format_block(out, lines, line0, this, widths, layout);
        widths.pop();
        line0 = this;
    }
    write_lines(out, lines, line0, line1, widths);
}

fn write_lines(out: &mut String, lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize]) {
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(width) = widths.get(j) {
                let pad = width.saturating_sub(cell_width(cell));
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn aligns_like_go_tabwriter() {
        let table = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\nbb\tlatest\t1aea1c180b7e\t3 seconds ago\t1.98MB\n";
        assert_eq!(
            align(table),
            "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n\
             bb           latest    1aea1c180b7e   3 seconds ago   1.98MB\n"
        );
    }

    #[test]
    fn lines_without_tabs_end_a_block() {
        assert_eq!(
            align("a\tb\nplain\nccc\td\n"),
            "a         b\nplain\nccc       d\n"
        );
    }
}
