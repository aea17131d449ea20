//! The distributed output against a computation written independently of the crate's own
//! reference, so a bug shared by the reference and the split path (in tiling, sharding,
//! merging, concatenating) still shows.

use std::collections::HashMap;

use super::end_to_end::{batch_cases, render_cases, sweep_cases, wordcount_cases};
use super::{run_distributed, spec};
use crate::batch::TestEngine;
use crate::sweep::PointResult;
use crate::InferenceEngine;
use crate::TaskSpec;

#[test]
fn word_counts_equal_a_plain_count_of_the_whole_text() {
    for params in wordcount_cases() {
        let text = match (params.get("text"), params.get("documents")) {
            (Some(t), _) => t.as_str().unwrap().to_string(),
            (_, Some(d)) => {
                let docs: Vec<String> = serde_json::from_value(d.clone()).unwrap();
                docs.join(" ")
            }
            _ => unreachable!(),
        };
        // Split on every non-alphanumeric character, lowercase char by char, count in a hash
        // map, sort at the end.
        let mut counts: HashMap<String, u64> = HashMap::new();
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() {
                let lower: String = word.chars().flat_map(char::to_lowercase).collect();
                *counts.entry(lower).or_default() += 1;
            }
        }
        let mut expect: Vec<(String, u64)> = counts.into_iter().collect();
        expect.sort();
        let (out, _) = run_distributed(&spec("mapreduce.wordcount", params.clone()), false);
        let got: Vec<(String, u64)> = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, expect, "{params}");
    }
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn rendered_tiles_decode_to_the_image_rendered_in_one_pass() {
    for params in render_cases() {
        let s = spec("render.tiles", params.clone());
        let TaskSpec::RenderTiles(r) = &s else {
            unreachable!()
        };
        let (width, height) = r.size();
        let scene = *r.scene();
        // Column-major, pixel by pixel, into a preallocated buffer: no tiles, no rows.
        let mut expect = vec![0u8; width as usize * height as usize * 3];
        for x in 0..width {
            for y in 0..height {
                let at = (y as usize * width as usize + x as usize) * 3;
                expect[at..at + 3].copy_from_slice(&scene.pixel(width, height, x, y));
            }
        }
        let (out, _) = run_distributed(&s, false);
        let (w, h, pixels) = decode_png(&out);
        assert_eq!((w, h), (width, height));
        assert!(pixels == expect, "{params}: tiles assembled wrongly");
    }
}

/// A float check of the fixed-point renderer's geometry (tests only: nothing here decides an
/// output). Near the set's boundary the two may disagree, so only the inside/outside split is
/// compared, with a tolerance.
#[test]
fn the_fixed_point_mandelbrot_matches_a_float_one_almost_everywhere() {
    let params = serde_json::json!({"width": 90, "height": 60, "tile": 32,
        "scene": {"fractal": "mandelbrot", "center_re": "-0.6", "center_im": "0.2",
                  "span": "2.5", "max_iter": 100, "palette": "grey"}});
    let s = spec("render.tiles", params);
    let (out, _) = run_distributed(&s, false);
    let (w, h, pixels) = decode_png(&out);
    let mut disagree = 0;
    for y in 0..h {
        for x in 0..w {
            let cr = -0.6 + (2.0 * x as f64 + 1.0 - w as f64) * 2.5 / (2.0 * w as f64);
            let ci = 0.2 - (2.0 * y as f64 + 1.0 - h as f64) * 2.5 / (2.0 * w as f64);
            let (mut zr, mut zi, mut n) = (0.0f64, 0.0f64, 0);
            while n < 100 && zr * zr + zi * zi <= 4.0 {
                (zr, zi) = (zr * zr - zi * zi + cr, 2.0 * zr * zi + ci);
                n += 1;
            }
            let inside_f = n == 100;
            let at = ((y * w + x) * 3) as usize;
            let inside_i = pixels[at..at + 3] == [0, 0, 0];
            disagree += usize::from(inside_f != inside_i);
        }
    }
    assert!(
        disagree * 100 < (w * h) as usize,
        "{disagree} of {} pixels",
        w * h
    );
}

#[test]
fn the_sweep_equals_a_plain_simulation_of_every_point() {
    for params in sweep_cases() {
        let get = |k: &str| params[k].as_u64().unwrap();
        let (n, i0, days) = (get("population"), get("initial_infected"), get("days"));
        let axis = |lo: u64, hi: u64, steps: u64| -> Vec<u64> {
            if steps == 1 {
                vec![lo]
            } else {
                (0..steps)
                    .map(|i| lo + (hi - lo) * i / (steps - 1))
                    .collect()
            }
        };
        let betas = axis(get("beta_min"), get("beta_max"), get("beta_steps"));
        let gammas = axis(get("gamma_min"), get("gamma_max"), get("gamma_steps"));
        let mut expect = Vec::new();
        for &beta in &betas {
            for &gamma in &gammas {
                // Signed, with R tracked, and every day run (no early stop).
                let (mut s, mut i, mut r) = (i128::from(n - i0), i128::from(i0), 0i128);
                let (mut peak, mut peak_day) = (i, 0u32);
                for day in 1..=days as u32 {
                    let inf = (i128::from(beta) * s * i / (1000 * i128::from(n))).min(s);
                    let rec = (i128::from(gamma) * i / 1000).min(i);
                    s -= inf;
                    i += inf - rec;
                    r += rec;
                    assert_eq!(s + i + r, i128::from(n));
                    if i > peak {
                        (peak, peak_day) = (i, day);
                    }
                }
                expect.push(PointResult {
                    beta: beta as u32,
                    gamma: gamma as u32,
                    peak_infected: peak as u64,
                    peak_day,
                    total_infected: (i128::from(n) - s) as u64,
                });
            }
        }
        let (out, _) = run_distributed(&spec("sweep.epidemic", params.clone()), false);
        let got: Vec<PointResult> = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, expect, "{params}");
    }
}

#[test]
fn batch_outputs_are_every_prompt_in_order() {
    for params in batch_cases() {
        let model = params["model"].as_str().unwrap();
        let max_tokens = params["max_tokens"].as_u64().unwrap() as u32;
        let mut engine = TestEngine::default();
        let expect: Vec<String> = params["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                engine
                    .infer(model, p.as_str().unwrap(), max_tokens)
                    .unwrap()
            })
            .collect();
        let (out, _) = run_distributed(&spec("batch.inference", params.clone()), false);
        let got: Vec<String> = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, expect, "{params}");
    }
}
