//! The self-contained HTML rendering of the report: inline CSS, every figure embedded as a
//! `data:image/png;base64,` URI (nothing points at a file), the same blocks as the Markdown.

use super::markdown::{Block, Doc};

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// HTML-escapes text.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes and renders the inline Markdown the report uses: `code` and **bold**.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out += &format!("<code>{}</code>", escape(part));
        } else {
            for (j, p) in escape(part).split("**").enumerate() {
                if j % 2 == 1 {
                    out += &format!("<strong>{p}</strong>");
                } else {
                    out += p;
                }
            }
        }
    }
    out
}

const STYLE: &str = "body{font-family:-apple-system,'DejaVu Sans',Helvetica,Arial,sans-serif;\
max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}\
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em}th{background:#f2f2f2}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
code{background:#f4f4f4;padding:0 0.2em}pre{background:#f4f4f4;padding:0.6em;overflow-x:auto}\
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}\
figcaption{font-size:0.9em;color:#555}h1{border-bottom:2px solid #333}\
h2{border-bottom:1px solid #bbb;margin-top:1.6em}";

/// Renders `doc` as one HTML page titled `title`; figures are read and embedded (an
/// unreadable one is replaced by a note).
pub(crate) fn render(doc: &Doc, title: &str) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
    for b in &doc.blocks {
        match b {
            Block::Heading(l, t) => {
                let l = (*l).clamp(1, 6);
                s += &format!("<h{l}>{}</h{l}>\n", inline(t));
            }
            Block::Para(t) => s += &format!("<p>{}</p>\n", inline(t)),
            Block::List(items) => {
                s += "<ul>\n";
                for i in items {
                    s += &format!("<li>{}</li>\n", inline(i));
                }
                s += "</ul>\n";
            }
            Block::Table(t) => {
                s += "<table>\n<thead><tr>";
                for (h, n) in t.header.iter().zip(&t.numeric) {
                    let class = if *n { " class=\"n\"" } else { "" };
                    s += &format!("<th{class}>{}</th>", inline(h));
                }
                s += "</tr></thead>\n<tbody>\n";
                for r in &t.rows {
                    s += "<tr>";
                    for (i, n) in t.numeric.iter().enumerate() {
                        let class = if *n { " class=\"n\"" } else { "" };
                        let c = r.get(i).map(String::as_str).unwrap_or("");
                        s += &format!("<td{class}>{}</td>", inline(c));
                    }
                    s += "</tr>\n";
                }
                s += "</tbody>\n</table>\n";
            }
            Block::Figure(p, caption) => match std::fs::read(p) {
                Ok(bytes) => {
                    s += &format!(
                        "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\">\
                         <figcaption>{}</figcaption></figure>\n",
                        escape(caption),
                        base64(&bytes),
                        inline(caption)
                    );
                }
                Err(e) => {
                    s += &format!(
                        "<p><em>Figure {} could not be read: {}</em></p>\n",
                        escape(&p.display().to_string()),
                        escape(&e.to_string())
                    );
                }
            },
            Block::Code(t) => s += &format!("<pre><code>{}</code></pre>\n", escape(t.trim_end())),
        }
    }
    s += "</body>\n</html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn inline_markup() {
        assert_eq!(
            inline("a `x<y` **b** & c"),
            "a <code>x&lt;y</code> <strong>b</strong> &amp; c"
        );
    }
}
