//! Hostile or mistaken parameters are refused at intake, naming the field.

use serde_json::{json, Value};

use crate::{parse, ParamError, KNOWN_CLASSES};

fn refused_field(class: &str, params: Value) -> String {
    match parse(class, &params) {
        Ok(_) => panic!("{class} {params}: accepted"),
        Err(e) => {
            // The message names the field too, for the submitter.
            let field = e.field_name().unwrap().to_string();
            assert!(e.to_string().contains(&field), "{e}");
            field
        }
    }
}

#[test]
fn an_unknown_class_lists_the_known_ones() {
    let err = parse("ai.mining", &json!({})).unwrap_err();
    assert!(matches!(err, ParamError::UnknownClass { .. }));
    let msg = err.to_string();
    for known in KNOWN_CLASSES {
        assert!(msg.contains(known), "{msg}");
    }
    // A huge class name is not echoed whole.
    let long = "x".repeat(10_000);
    assert!(parse(&long, &json!({})).unwrap_err().to_string().len() < 300);
}

#[test]
fn each_bad_field_is_named() {
    let mandel = json!({"fractal": "mandelbrot"});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("render.tiles", json!([1, 2]), "params"),
        (
            "render.tiles",
            json!({"height": 10, "scene": mandel}),
            "width",
        ),
        (
            "render.tiles",
            json!({"width": 0, "height": 10, "scene": mandel}),
            "width",
        ),
        (
            "render.tiles",
            json!({"width": 5000, "height": 10, "scene": mandel}),
            "width",
        ),
        (
            "render.tiles",
            json!({"width": 4096, "height": 4096, "scene": mandel}),
            "height",
        ),
        (
            "render.tiles",
            json!({"width": -3, "height": 10, "scene": mandel}),
            "width",
        ),
        (
            "render.tiles",
            json!({"width": 10.5, "height": 10, "scene": mandel}),
            "width",
        ),
        (
            "render.tiles",
            json!({"width": "10", "height": 10, "scene": mandel}),
            "width",
        ),
        (
            "render.tiles",
            json!({"width": 1024, "height": 1024, "tile": 16, "scene": mandel}),
            "tile",
        ),
        (
            "render.tiles",
            json!({"width": 1024, "height": 1025, "scene": mandel}),
            "height",
        ),
        (
            "render.tiles",
            json!({"width": 1024, "height": 1024, "tile": 512, "scene": mandel}),
            "tile",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64, "tile": 8, "scene": mandel}),
            "tile",
        ),
        (
            "render.tiles",
            json!({"width": 1024, "height": 1024, "tile": 1024,
            "scene": {"fractal": "mandelbrot", "max_iter": 4096}}),
            "tile",
        ),
        ("render.tiles", json!({"width": 64, "height": 64}), "scene"),
        (
            "render.tiles",
            json!({"width": 64, "height": 64, "scene": 3}),
            "scene",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64, "scene": {}}),
            "scene.fractal",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64, "scene": {"fractal": "koch"}}),
            "scene.fractal",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "mandelbrot", "span": "0"}}),
            "scene.span",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "mandelbrot", "span": 0.5}}),
            "scene.span",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "mandelbrot", "center_re": "-4.5"}}),
            "scene.center_re",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "mandelbrot", "c_re": "0.1"}}),
            "scene.c_re",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "julia", "c_im": "2.5"}}),
            "scene.c_im",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "julia", "max_iter": 0}}),
            "scene.max_iter",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "julia", "palette": "rainbow"}}),
            "scene.palette",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64,
            "scene": {"fractal": "julia", "zoom": 2}}),
            "scene.zoom",
        ),
        (
            "render.tiles",
            json!({"width": 64, "height": 64, "scene": mandel, "colour": 1}),
            "colour",
        ),
        ("mapreduce.wordcount", json!({}), "text"),
        (
            "mapreduce.wordcount",
            json!({"text": "a", "documents": ["b"]}),
            "documents",
        ),
        ("mapreduce.wordcount", json!({"text": 5}), "text"),
        (
            "mapreduce.wordcount",
            json!({"text": "x".repeat(5 << 20)}),
            "text",
        ),
        ("mapreduce.wordcount", json!({"documents": []}), "documents"),
        (
            "mapreduce.wordcount",
            json!({"documents": ["a", 3]}),
            "documents[1]",
        ),
        (
            "mapreduce.wordcount",
            json!({"text": "a", "map_shards": 0}),
            "map_shards",
        ),
        (
            "mapreduce.wordcount",
            json!({"text": "a", "map_shards": 65}),
            "map_shards",
        ),
        (
            "mapreduce.wordcount",
            json!({"text": "a", "fan_in": 1}),
            "fan_in",
        ),
        (
            "mapreduce.wordcount",
            json!({"text": "a", "fan_in": 17}),
            "fan_in",
        ),
        (
            "mapreduce.wordcount",
            json!({"text": "a", "reducers": 2}),
            "reducers",
        ),
        (
            "batch.inference",
            json!({"inputs": ["a"], "max_tokens": 5}),
            "model",
        ),
        (
            "batch.inference",
            json!({"model": "bad name!", "inputs": ["a"], "max_tokens": 5}),
            "model",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": [], "max_tokens": 5}),
            "inputs",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": ["x".repeat(17 << 10)],
            "max_tokens": 5}),
            "inputs[0]",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": vec!["p"; 4097], "max_tokens": 5}),
            "inputs",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": vec!["p"; 300], "shard_size": 1,
            "max_tokens": 5}),
            "shard_size",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": ["a"]}),
            "max_tokens",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": ["a"], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            "batch.inference",
            json!({"model": "m", "inputs": ["a"], "max_tokens": 1,
            "temperature": 0.7}),
            "temperature",
        ),
        ("sweep.epidemic", json!({"population": 0}), "population"),
        (
            "sweep.epidemic",
            json!({"population": 100, "initial_infected": 101}),
            "initial_infected",
        ),
        (
            "sweep.epidemic",
            json!({"population": 100, "initial_infected": 1, "days": 4000}),
            "days",
        ),
        (
            "sweep.epidemic",
            json!({"population": 100, "initial_infected": 1, "days": 10,
            "beta_min": 500, "beta_max": 100, "beta_steps": 2}),
            "beta_max",
        ),
        (
            "sweep.epidemic",
            json!({"population": 100, "initial_infected": 1, "days": 10,
            "beta_min": 1, "beta_max": 100, "beta_steps": 65}),
            "beta_steps",
        ),
        (
            "sweep.epidemic",
            json!({"population": 100, "initial_infected": 1, "days": 10,
            "beta_min": 1, "beta_max": 100, "beta_steps": 64,
            "gamma_min": 1, "gamma_max": 100, "gamma_steps": 64, "chunk_size": 1}),
            "chunk_size",
        ),
        (
            "sweep.epidemic",
            json!({"population": 100, "initial_infected": 1, "days": 10,
            "beta_min": 1, "beta_max": 100, "beta_steps": 2,
            "gamma_min": 1, "gamma_max": 100, "gamma_steps": 2, "seed": 1}),
            "seed",
        ),
    ];
    for (class, params, field) in cases {
        assert_eq!(
            refused_field(class, params.clone()),
            field,
            "{class} {params}"
        );
    }
}

#[test]
fn json_null_is_absent_and_defaults_apply() {
    let ok = json!({"width": 32, "height": 32, "tile": null,
                    "scene": {"fractal": "mandelbrot", "palette": null}});
    assert!(parse("render.tiles", &ok).is_ok());
}
