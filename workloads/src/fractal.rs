//! The integer-only escape-time renderer behind `render.tiles`.
//!
//! Coordinates are signed fixed-point with [`FRAC_BITS`] fractional bits in `i64`, products
//! in `i128` shifted back (an arithmetic shift: floor). No float appears anywhere, so every
//! node, whatever its CPU, compiler flags or libm, computes the same pixel bit for bit, and
//! two nodes' tiles can be compared byte for byte.
//!
//! Overflow cannot happen within [`Scene::check`]'s bounds: a pixel's coordinate is within
//! |center| + span/2 <= 8; a point still iterating has |z| <= 2, so the next z has parts of at
//! most 4 + 8 = 12, whose squares (144 << 48 < 2^56) fit `i64` with room to spare.

use serde::{Deserialize, Serialize};

use crate::error::ExecError;

pub const FRAC_BITS: u32 = 48;
pub const ONE: i64 = 1 << FRAC_BITS;
pub const MAX_ITER: u32 = 4096;
/// Bounds on the scene, in whole units.
pub const MAX_CENTER: i64 = 4;
pub const MAX_SPAN: i64 = 8;
pub const MAX_JULIA_C: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fractal {
    Mandelbrot,
    Julia,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Palette {
    Fire,
    Ocean,
    Grey,
}

impl Palette {
    pub const NAMES: &'static [&'static str] = &["fire", "ocean", "grey"];

    pub fn from_name(name: &str) -> Option<Palette> {
        match name {
            "fire" => Some(Palette::Fire),
            "ocean" => Some(Palette::Ocean),
            "grey" => Some(Palette::Grey),
            _ => None,
        }
    }

    /// Colour stops, evenly spaced; the last equals the first so the cycle has no seam.
    fn stops(self) -> &'static [[u8; 3]] {
        match self {
            Palette::Fire => &[
                [32, 0, 0],
                [200, 30, 0],
                [255, 160, 0],
                [255, 255, 200],
                [32, 0, 0],
            ],
            Palette::Ocean => &[
                [0, 8, 48],
                [0, 80, 160],
                [0, 200, 220],
                [230, 255, 255],
                [0, 8, 48],
            ],
            Palette::Grey => &[[0, 0, 0], [255, 255, 255], [0, 0, 0]],
        }
    }
}

/// What a tile needs to know about the picture, all in fixed point. This is part of every
/// tile's input, so nodes re-check it ([`Scene::check`]) before rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    pub fractal: Fractal,
    pub center_re: i64,
    pub center_im: i64,
    /// Width of the view along the image's longer side, in the complex plane.
    pub span: i64,
    /// The Julia set's constant; zero (and unused) for the Mandelbrot set.
    pub c_re: i64,
    pub c_im: i64,
    pub max_iter: u32,
    pub palette: Palette,
}

fn within(field: &'static str, v: i64, lo: i64, hi: i64) -> Result<(), ExecError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ExecError::OutOfBounds {
            field,
            reason: format!("{v} not in {lo}..={hi} (fixed point, {FRAC_BITS} fractional bits)"),
        })
    }
}

impl Scene {
    pub fn check(&self) -> Result<(), ExecError> {
        let c = MAX_CENTER * ONE;
        within("center_re", self.center_re, -c, c)?;
        within("center_im", self.center_im, -c, c)?;
        within("span", self.span, 1, MAX_SPAN * ONE)?;
        let j = MAX_JULIA_C * ONE;
        within("c_re", self.c_re, -j, j)?;
        within("c_im", self.c_im, -j, j)?;
        within("max_iter", i64::from(self.max_iter), 1, i64::from(MAX_ITER))
    }

    /// The colour of pixel (x, y) of a `width` x `height` image; pixel centres are spread
    /// evenly over `span` along the longer side, so pixels are square.
    pub fn pixel(&self, width: u32, height: u32, x: u32, y: u32) -> [u8; 3] {
        let side = i128::from(width.max(height)) * 2;
        // Offsets from the image's centre in half pixels: 2x + 1 - width.
        let dx = i128::from(2 * x + 1) - i128::from(width);
        let dy = i128::from(2 * y + 1) - i128::from(height);
        let span = i128::from(self.span);
        let re = self.center_re + (dx * span).div_euclid(side) as i64;
        // Rows go down the image, the imaginary axis up.
        let im = self.center_im - (dy * span).div_euclid(side) as i64;
        let n = match self.fractal {
            Fractal::Mandelbrot => escape_time(0, 0, re, im, self.max_iter),
            Fractal::Julia => escape_time(re, im, self.c_re, self.c_im, self.max_iter),
        };
        colour(self.palette, n, self.max_iter)
    }
}

fn mul(a: i64, b: i64) -> i64 {
    ((i128::from(a) * i128::from(b)) >> FRAC_BITS) as i64
}

/// Iterations of z <- z^2 + c until |z|^2 > 4, at most `max_iter`.
fn escape_time(mut zr: i64, mut zi: i64, cr: i64, ci: i64, max_iter: u32) -> u32 {
    let four = 4 * ONE;
    for n in 0..max_iter {
        let zr2 = mul(zr, zr);
        let zi2 = mul(zi, zi);
        if zr2 + zi2 > four {
            return n;
        }
        let zri = mul(zr, zi);
        zi = 2 * zri + ci;
        zr = zr2 - zi2 + cr;
    }
    max_iter
}

/// Points that never escaped are black; the others cycle through the palette every 32
/// iterations, interpolated in integers.
fn colour(palette: Palette, n: u32, max_iter: u32) -> [u8; 3] {
    if n >= max_iter {
        return [0, 0, 0];
    }
    let stops = palette.stops();
    let segments = (stops.len() - 1) as u32;
    let phase = (n % 32) * 8; // 0..256
    let pos = phase * segments; // 0..256 * segments
    let (seg, t) = ((pos / 256) as usize, (pos % 256) as i32);
    let (a, b) = (stops[seg], stops[seg + 1]);
    let mix = |i: usize| (i32::from(a[i]) + (i32::from(b[i]) - i32::from(a[i])) * t / 256) as u8;
    [mix(0), mix(1), mix(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(fractal: Fractal) -> Scene {
        Scene {
            fractal,
            center_re: -ONE / 2,
            center_im: 0,
            span: 3 * ONE,
            c_re: -ONE * 8 / 10,
            c_im: ONE * 156 / 1000,
            max_iter: 64,
            palette: Palette::Fire,
        }
    }

    #[test]
    fn the_origin_is_inside_and_far_points_escape_at_once() {
        assert_eq!(escape_time(0, 0, 0, 0, 100), 100);
        assert_eq!(escape_time(0, 0, -ONE, 0, 100), 100);
        assert_eq!(escape_time(0, 0, 2 * ONE, 2 * ONE, 100), 1);
        assert_eq!(colour(Palette::Grey, 100, 100), [0, 0, 0]);
    }

    #[test]
    fn the_extreme_corners_of_the_bounds_do_not_overflow() {
        let mut s = scene(Fractal::Mandelbrot);
        s.max_iter = MAX_ITER;
        for (re, im) in [(4, 4), (-4, -4), (4, -4), (0, 0)] {
            s.center_re = re * ONE;
            s.center_im = im * ONE;
            s.span = MAX_SPAN * ONE;
            s.check().unwrap();
            for (x, y) in [(0, 0), (4095, 4095), (0, 4095), (2048, 2048)] {
                s.pixel(4096, 4096, x, y);
            }
        }
        let mut j = scene(Fractal::Julia);
        j.c_re = 2 * ONE;
        j.c_im = -2 * ONE;
        j.check().unwrap();
        j.pixel(1, 1, 0, 0);
    }

    #[test]
    fn bounds_are_checked() {
        let mut s = scene(Fractal::Julia);
        s.span = 0;
        assert!(s.check().is_err());
        s = scene(Fractal::Julia);
        s.max_iter = MAX_ITER + 1;
        assert!(s.check().is_err());
        s = scene(Fractal::Julia);
        s.c_im = 3 * ONE;
        assert!(s.check().is_err());
    }
}
