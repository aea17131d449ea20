//! `render.tiles`: a fractal image cut into tiles, each rendered on its own, assembled into a
//! PNG. Graph: flat, one sub-task per tile in row-major order; an image that fits one tile is
//! one sub-task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::class::SubtaskKind;
use crate::codec::{bounded, decode, encode};
use crate::error::{AggError, ExecError, ParamError};
use crate::fractal::{Fractal, Palette, Scene, FRAC_BITS, MAX_ITER};
use crate::graph::{independent, SubtaskSpec};
use crate::params::{fixed_point, Fields};
use crate::png;

pub const MAX_SIDE: u64 = 4096;
/// 1024 x 1024: the image's RGB bytes (3 MiB) fit a task's output even if the PNG could not
/// compress them ([`crate::MAX_TASK_OUTPUT_BYTES`]).
pub const MAX_PIXELS: u64 = 1 << 20;
pub const MIN_TILE: u64 = 16;
pub const MAX_TILE: u64 = 1024;
pub const MAX_TILES: u64 = 1024;
/// Pixels x max_iter of one tile: about a second of one core, so a hostile scene cannot make
/// one sub-task run for minutes.
pub const MAX_TILE_WORK: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSpec {
    width: u32,
    height: u32,
    tile: u32,
    scene: Scene,
}

impl RenderSpec {
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    pub fn scene(&self) -> &Scene {
        &self.scene
    }
}

/// One tile's input: the whole picture's geometry (a pixel's colour depends on its place in
/// the whole image, never on the tile) and the tile's rectangle.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TileInput {
    width: u32,
    height: u32,
    x0: u32,
    y0: u32,
    w: u32,
    h: u32,
    scene: Scene,
}

/// `width`, `height` (1..=4096, at most 1024 x 1024 pixels), `tile` (16..=1024, default 256,
/// at most 1024 tiles) and `scene`: `fractal` ("mandelbrot" | "julia"), `center_re`,
/// `center_im` (decimal strings, |.| <= 4, default -0.5 and 0), `span` (0 < span <= 8, default
/// 3), `c_re`, `c_im` (Julia only, |.| <= 2, default -0.8 and 0.156), `max_iter` (1..=4096,
/// default 256), `palette` ("fire" | "ocean" | "grey", default "fire").
pub(crate) fn parse(f: &mut Fields) -> Result<RenderSpec, ParamError> {
    let width = f.int("width", 1, MAX_SIDE, None)?;
    let height = f.int("height", 1, MAX_SIDE, None)?;
    if width * height > MAX_PIXELS {
        return Err(f.err(
            "height",
            format!("{width} x {height} is more than {MAX_PIXELS} pixels"),
        ));
    }
    let tile = f.int("tile", MIN_TILE, MAX_TILE, Some(256))?;
    let tiles = width.div_ceil(tile) * height.div_ceil(tile);
    if tiles > MAX_TILES {
        return Err(f.err(
            "tile",
            format!("{tiles} tiles of {tile} pixels, more than {MAX_TILES}"),
        ));
    }
    // A tile's output is its raw RGB: it must fit a sub-task's output.
    let tile_bytes = tile.min(width) * tile.min(height) * 3;
    if tile_bytes > crate::MAX_OUTPUT_BYTES as u64 {
        return Err(f.err(
            "tile",
            format!(
                "a tile of {tile} pixels is {tile_bytes} bytes of RGB, more than the {} a sub-task may return",
                crate::MAX_OUTPUT_BYTES
            ),
        ));
    }
    let scene_value = f.required("scene")?;
    let scene = parse_scene(&mut Fields::new(scene_value, "scene.")?)?;
    let tile_work = tile.min(width) * tile.min(height) * u64::from(scene.max_iter);
    if tile_work > MAX_TILE_WORK {
        return Err(f.err(
            "tile",
            format!("tile pixels x max_iter = {tile_work}, more than {MAX_TILE_WORK}"),
        ));
    }
    Ok(RenderSpec {
        width: width as u32,
        height: height as u32,
        tile: tile as u32,
        scene,
    })
}

fn parse_scene(f: &mut Fields) -> Result<Scene, ParamError> {
    let fractal = match f.choice("fractal", &["mandelbrot", "julia"], None)? {
        "julia" => Fractal::Julia,
        _ => Fractal::Mandelbrot,
    };
    let center_re = decimal(f, "center_re", "-0.5", 4)?;
    let center_im = decimal(f, "center_im", "0", 4)?;
    let span = decimal(f, "span", "3", 8)?;
    if span <= 0 {
        return Err(f.err("span", "expected a value above 0 (at least 2^-48)"));
    }
    let (c_re, c_im) = match fractal {
        Fractal::Julia => (
            decimal(f, "c_re", "-0.8", 2)?,
            decimal(f, "c_im", "0.156", 2)?,
        ),
        Fractal::Mandelbrot => {
            for name in ["c_re", "c_im"] {
                if f.get(name).is_some() {
                    return Err(f.err(name, "only for the julia fractal"));
                }
            }
            (0, 0)
        }
    };
    let max_iter = f.int("max_iter", 1, u64::from(MAX_ITER), Some(256))? as u32;
    let palette = f.choice("palette", Palette::NAMES, Some("fire"))?;
    let palette = Palette::from_name(palette).unwrap_or(Palette::Fire);
    f.finish()?;
    Ok(Scene {
        fractal,
        center_re,
        center_im,
        span,
        c_re,
        c_im,
        max_iter,
        palette,
    })
}

/// A decimal parameter as fixed point, |value| <= `limit`.
fn decimal(
    f: &mut Fields,
    name: &'static str,
    default: &str,
    limit: i64,
) -> Result<i64, ParamError> {
    let default = serde_json::Value::String(default.to_string());
    let v = f.get(name).unwrap_or(&default);
    let fixed = fixed_point(v, FRAC_BITS).map_err(|reason| f.err(name, reason))?;
    if fixed.unsigned_abs() > (limit as u64) << FRAC_BITS {
        return Err(f.err(name, format!("expected a value in -{limit}..={limit}")));
    }
    Ok(fixed)
}

/// Tile rectangles (x0, y0, w, h), row-major.
fn tiles(spec: &RenderSpec) -> Vec<(u32, u32, u32, u32)> {
    let mut out = Vec::new();
    for y0 in (0..spec.height).step_by(spec.tile as usize) {
        for x0 in (0..spec.width).step_by(spec.tile as usize) {
            let w = spec.tile.min(spec.width - x0);
            let h = spec.tile.min(spec.height - y0);
            out.push((x0, y0, w, h));
        }
    }
    out
}

pub(crate) fn plan(spec: &RenderSpec) -> Vec<SubtaskSpec> {
    let tiles = tiles(spec).into_iter().map(|(x0, y0, w, h)| {
        let input = encode(&TileInput {
            width: spec.width,
            height: spec.height,
            x0,
            y0,
            w,
            h,
            scene: spec.scene,
        });
        (
            input,
            u64::from(w) * u64::from(h) * u64::from(spec.scene.max_iter),
        )
    });
    independent(SubtaskKind::RenderTile, tiles)
}

/// The tile's pixels as raw RGB, row-major: `w * h * 3` bytes.
pub(crate) fn execute_tile(input: &[u8]) -> Result<Vec<u8>, ExecError> {
    let t: TileInput = decode(input)?;
    t.scene.check()?;
    let side = 1..=MAX_SIDE;
    let (width, height) = (u64::from(t.width), u64::from(t.height));
    bounded("width", width, side.clone())?;
    bounded("height", height, side)?;
    bounded("w", u64::from(t.w), 1..=MAX_TILE.min(width))?;
    bounded("h", u64::from(t.h), 1..=MAX_TILE.min(height))?;
    bounded("x0", u64::from(t.x0), 0..=width - u64::from(t.w))?;
    bounded("y0", u64::from(t.y0), 0..=height - u64::from(t.h))?;
    let work = u64::from(t.w) * u64::from(t.h) * u64::from(t.scene.max_iter);
    bounded("max_iter", work, 1..=MAX_TILE_WORK)?;
    let mut rgb = Vec::with_capacity(t.w as usize * t.h as usize * 3);
    for y in t.y0..t.y0 + t.h {
        for x in t.x0..t.x0 + t.w {
            rgb.extend_from_slice(&t.scene.pixel(t.width, t.height, x, y));
        }
    }
    Ok(rgb)
}

/// Places every tile's pixels and encodes the PNG.
pub(crate) fn aggregate(
    spec: &RenderSpec,
    outputs: &BTreeMap<u32, Vec<u8>>,
) -> Result<Vec<u8>, AggError> {
    let row = spec.width as usize * 3;
    let mut canvas = vec![0u8; row * spec.height as usize];
    for (i, (x0, y0, w, h)) in tiles(spec).into_iter().enumerate() {
        let index = i as u32;
        let tile = outputs.get(&index).ok_or(AggError::Missing(index))?;
        let tile_row = w as usize * 3;
        if tile.len() != tile_row * h as usize {
            return Err(AggError::Malformed {
                index,
                reason: format!("{} bytes for a {w}x{h} tile", tile.len()),
            });
        }
        for (dy, line) in tile.chunks_exact(tile_row).enumerate() {
            let at = (y0 as usize + dy) * row + x0 as usize * 3;
            canvas[at..at + tile_row].copy_from_slice(line);
        }
    }
    png::encode_rgb(spec.width, spec.height, &canvas).map_err(AggError::Encode)
}

/// The whole image in one pass, without tiles.
pub(crate) fn run_in_one_process(spec: &RenderSpec) -> Result<Vec<u8>, ExecError> {
    let mut rgb = Vec::with_capacity(spec.width as usize * spec.height as usize * 3);
    for y in 0..spec.height {
        for x in 0..spec.width {
            rgb.extend_from_slice(&spec.scene.pixel(spec.width, spec.height, x, y));
        }
    }
    png::encode_rgb(spec.width, spec.height, &rgb).map_err(ExecError::Output)
}
