//! Small plane geometry: the 2-D vector [`V2`], the similarity transform [`Frame`] that
//! places a scene or an object, scalar easing helpers, anti-aliased coverage and the signed
//! distance functions (segment, rounded box, hexagon) that the scenes and defects use.

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct V2 {
    pub(super) x: f32,
    pub(super) y: f32,
}

pub(super) const fn v2(x: f32, y: f32) -> V2 {
    V2 { x, y }
}

impl std::ops::Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        v2(self.x + o.x, self.y + o.y)
    }
}
impl std::ops::Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        v2(self.x - o.x, self.y - o.y)
    }
}
impl std::ops::Mul<f32> for V2 {
    type Output = V2;
    fn mul(self, k: f32) -> V2 {
        v2(self.x * k, self.y * k)
    }
}

impl V2 {
    pub(super) fn len(self) -> f32 {
        (self.x * self.x + self.y * self.y).sqrt()
    }
    pub(super) fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }
    pub(super) fn angle(self) -> f32 {
        self.y.atan2(self.x)
    }
    pub(super) fn from_angle(a: f32) -> V2 {
        v2(a.cos(), a.sin())
    }
    pub(super) fn rot(self, a: f32) -> V2 {
        let (s, c) = a.sin_cos();
        v2(c * self.x - s * self.y, s * self.x + c * self.y)
    }
}

/// A similarity transform: local coordinates = rotate(-angle)(p - centre) / scale.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    c: V2,
    cos: f32,
    sin: f32,
    pub(super) scale: f32,
}

impl Frame {
    pub(super) fn new(c: V2, angle: f32, scale: f32) -> Frame {
        let (sin, cos) = angle.sin_cos();
        Frame { c, cos, sin, scale }
    }
    pub(super) fn local(&self, p: V2) -> V2 {
        let d = p - self.c;
        v2(
            self.cos * d.x + self.sin * d.y,
            -self.sin * d.x + self.cos * d.y,
        ) * (1.0 / self.scale)
    }
    pub(super) fn world(&self, q: V2) -> V2 {
        let q = q * self.scale;
        self.c
            + v2(
                self.cos * q.x - self.sin * q.y,
                self.sin * q.x + self.cos * q.y,
            )
    }
}

pub(super) fn clamp01(x: f32) -> f32 {
    x.clamp(0.0, 1.0)
}
pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = clamp01((x - e0) / (e1 - e0));
    t * t * (3.0 - 2.0 * t)
}
pub(super) fn mix(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}
/// Anti-aliased coverage of a shape with signed distance `d` (negative inside), `px` = one pixel.
pub(super) fn cover(d: f32, px: f32) -> f32 {
    clamp01(0.5 - d / px)
}

pub(super) fn dist_segment(p: V2, a: V2, b: V2) -> f32 {
    let ab = b - a;
    let t = clamp01((p - a).dot(ab) / ab.dot(ab).max(1e-12));
    (p - (a + ab * t)).len()
}

pub(super) fn sd_round_box(p: V2, half: V2, r: f32) -> f32 {
    let q = v2(p.x.abs() - half.x + r, p.y.abs() - half.y + r);
    v2(q.x.max(0.0), q.y.max(0.0)).len() + q.x.max(q.y).min(0.0) - r
}

/// Signed distance to a regular hexagon with apothem `r`, corners at multiples of 60°.
pub(super) fn sd_hexagon(p: V2, r: f32) -> f32 {
    // Inigo Quilez's hexagon: flat edges at y = ±r, so the corners sit on the x axis.
    let p = v2(p.x.abs(), p.y.abs());
    let k = v2(-0.866_025_4, 0.5);
    let t = 2.0 * k.dot(p).min(0.0);
    let p = p - k * t;
    let kz = 0.577_350_3;
    let p = p - v2(p.x.clamp(-kz * r, kz * r), r);
    p.len() * p.y.signum()
}
