//! Text rendering for the bitmap backend.
//!
//! plotters 0.3.7's `ab_glyph` text path drops each glyph's left side bearing and rounds
//! its vertical placement per glyph, so labels come out uneven ("resnet1 8"). This module
//! wraps [`BitMapBackend`] in a backend that lays text out itself with `ab_glyph` (caret
//! advance + kerning, glyphs positioned on one baseline, anti-aliased coverage blended
//! into the frame) and delegates every other primitive unchanged. Anchors and rotations
//! follow plotters' own `draw_text` semantics, so chart layout code works as before.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontStyle,
};

/// The embedded DejaVu Sans faces (regular, bold), parsed once.
struct Faces {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn faces() -> Option<&'static Faces> {
    static FACES: OnceLock<Option<Faces>> = OnceLock::new();
    FACES
        .get_or_init(|| {
            Some(Faces {
                regular: FontRef::try_from_slice(dejavu::sans::regular()).ok()?,
                bold: FontRef::try_from_slice(dejavu::sans::bold()).ok()?,
            })
        })
        .as_ref()
}

/// Checks that the embedded fonts parse (called before any drawing).
pub(crate) fn fonts_available() -> bool {
    faces().is_some()
}

/// A line of text laid out at the origin: glyphs on the baseline `y = ascent`.
struct Layout {
    glyphs: Vec<ab_glyph::Glyph>,
    width: f32,
    height: f32,
}

fn layout(font: &FontRef<'static>, size: f64, text: &str) -> Layout {
    let scale = PxScale::from(size.max(1.0) as f32);
    let scaled = font.as_scaled(scale);
    let ascent = scaled.ascent();
    let mut caret = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scale, point(caret, ascent)));
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    Layout {
        glyphs,
        width: caret.max(0.0),
        height: scaled.ascent() - scaled.descent(),
    }
}

fn face_for(style: FontStyle) -> Option<&'static FontRef<'static>> {
    let f = faces()?;
    Some(match style {
        FontStyle::Bold => &f.bold,
        _ => &f.regular,
    })
}

/// [`BitMapBackend`] with correct text rendering (see the module docs).
pub(crate) struct TextBackend<'a> {
    inner: BitMapBackend<'a>,
}

impl<'a> TextBackend<'a> {
    pub(crate) fn new(inner: BitMapBackend<'a>) -> Self {
        Self { inner }
    }
}

type Err<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for TextBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Err<'a>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Err<'a>> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Err<'a>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), Err<'a>> {
        self.inner.blit_bitmap(pos, (iw, ih), src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), Err<'a>> {
        match face_for(style.style()) {
            Some(font) => {
                let l = layout(font, style.size(), text);
                Ok((l.width.ceil() as u32, l.height.ceil() as u32))
            }
            None => self.inner.estimate_text_size(text, style),
        }
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), Err<'a>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let Some(font) = face_for(style.style()) else {
            return self.inner.draw_text(text, style, pos);
        };
        let l = layout(font, style.size(), text);
        let (width, height) = (l.width.round() as i32, l.height.round() as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        for glyph in l.glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // e.g. a space
            };
            let bounds = outline.px_bounds();
            let (bx, by) = (bounds.min.x as i32, bounds.min.y as i32);
            outline.draw(|gx, gy, coverage| {
                if result.is_err() || coverage <= 0.0 {
                    return;
                }
                let (x, y) = trans.transform(bx + gx as i32 + dx, by + gy as i32 + dy);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                    let c = BackendColor {
                        alpha: color.alpha * f64::from(coverage.min(1.0)),
                        rgb: color.rgb,
                    };
                    result = self.inner.draw_pixel((x, y), c);
                }
            });
            if result.is_err() {
                break;
            }
        }
        result
    }
}
