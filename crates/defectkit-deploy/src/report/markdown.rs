//! The report as a small document model ([`Doc`]: headings, paragraphs, lists, tables,
//! figures, code) and its Markdown rendering. The HTML rendering (`html.rs`) walks the same
//! blocks, so both files say the same thing.

use std::path::PathBuf;

/// A table: header cells, which columns are numeric (right-aligned), rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    /// Header cells.
    pub header: Vec<String>,
    /// Right-align this column.
    pub numeric: Vec<bool>,
    /// Body rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with `header`; columns whose name is in `numeric` are right-aligned.
    pub fn new(header: &[&str], numeric: &[usize]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            numeric: (0..header.len()).map(|i| numeric.contains(&i)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut s = String::from("|");
        for h in &self.header {
            s += &format!(" {} |", cell(h));
        }
        s += "\n|";
        for &n in &self.numeric {
            s += if n { " ---: |" } else { " --- |" };
        }
        s += "\n";
        for r in &self.rows {
            s += "|";
            for i in 0..self.header.len() {
                s += &format!(" {} |", cell(r.get(i).map(String::as_str).unwrap_or("")));
            }
            s += "\n";
        }
        s
    }
}

/// One block of the report.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    /// A heading of level 1–3.
    Heading(u8, String),
    /// A paragraph (inline `code` and **bold** allowed).
    Para(String),
    /// A bullet list.
    List(Vec<String>),
    /// A table.
    Table(Table),
    /// A PNG figure (absolute path) with its caption.
    Figure(PathBuf, String),
    /// A code block.
    Code(String),
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Doc {
    /// Its blocks in order.
    pub blocks: Vec<Block>,
}

impl Doc {
    /// Adds a heading.
    pub fn h(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }
    /// Adds a paragraph.
    pub fn p(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }
    /// Adds a list (nothing when empty).
    pub fn list(&mut self, items: Vec<String>) {
        if !items.is_empty() {
            self.blocks.push(Block::List(items));
        }
    }
    /// Adds a table.
    pub fn table(&mut self, t: Table) {
        self.blocks.push(Block::Table(t));
    }
    /// Adds a figure.
    pub fn figure(&mut self, path: PathBuf, caption: impl Into<String>) {
        self.blocks.push(Block::Figure(path, caption.into()));
    }
    /// Adds a code block.
    pub fn code(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Code(text.into()));
    }
}

/// Renders `doc` as Markdown; figure paths are written relative to `base` (the study dir).
pub(crate) fn render(doc: &Doc, base: &std::path::Path) -> String {
    let mut s = String::new();
    for b in &doc.blocks {
        match b {
            Block::Heading(l, t) => {
                s += &format!("{} {}\n\n", "#".repeat(*l as usize), t);
            }
            Block::Para(t) => s += &format!("{t}\n\n"),
            Block::List(items) => {
                for i in items {
                    s += &format!("- {}\n", i.replace('\n', " "));
                }
                s += "\n";
            }
            Block::Table(t) => {
                s += &t.markdown();
                s += "\n";
            }
            Block::Figure(p, caption) => {
                let rel = p.strip_prefix(base).unwrap_or(p);
                let link: String = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().replace(' ', "%20"))
                    .collect::<Vec<_>>()
                    .join("/");
                s += &format!(
                    "![{}]({})\n\n*{}*\n\n",
                    caption.replace(']', ")"),
                    link,
                    caption
                );
            }
            Block::Code(t) => s += &format!("```\n{}\n```\n\n", t.trim_end()),
        }
    }
    s
}
