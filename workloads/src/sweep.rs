//! `sweep.epidemic`: a parameter sweep of a discrete SIR epidemic in integers.
//!
//! Each point of a grid of (beta, gamma), both in thousandths per day, runs the same model:
//! every day `floor(beta * S * I / (1000 * N))` susceptibles (at most S) fall ill and
//! `floor(gamma * I / 1000)` of the ill (at most I) recover. Whole people, floor division in
//! `u128`: identical on every node. Each point reports its epidemic's peak, the day of the
//! peak and how many ever fell ill.
//!
//! Graph: flat, one sub-task per chunk of `chunk_size` points (beta-major order); the output is
//! every point's result in grid order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::class::SubtaskKind;
use crate::codec::{bounded, decode, decode_output, encode};
use crate::error::{AggError, ExecError, ParamError};
use crate::graph::{independent, SubtaskSpec};
use crate::params::Fields;

pub const MAX_POPULATION: u64 = 1_000_000_000;
pub const MAX_DAYS: u64 = 3650;
/// Rates in thousandths per day: up to 10 (a very fast disease, or very fast recovery).
pub const MAX_RATE: u64 = 10_000;
pub const MAX_STEPS: u64 = 64;
pub const MAX_POINTS: u64 = MAX_STEPS * MAX_STEPS;
pub const MAX_CHUNKS: u64 = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSpec {
    model: Model,
    betas: Vec<u32>,
    gammas: Vec<u32>,
    chunk_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Model {
    population: u64,
    initial_infected: u64,
    days: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkInput {
    model: Model,
    /// (beta, gamma) pairs, thousandths per day.
    points: Vec<(u32, u32)>,
}

/// One grid point's epidemic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointResult {
    pub beta: u32,
    pub gamma: u32,
    pub peak_infected: u64,
    pub peak_day: u32,
    pub total_infected: u64,
}

/// `population` (1..=10^9), `initial_infected` (1..=population), `days` (1..=3650),
/// `beta_min`/`beta_max`/`beta_steps` and `gamma_min`/`gamma_max`/`gamma_steps` (rates
/// 0..=10000 thousandths, steps 1..=64, min <= max), `chunk_size` (1..=4096, default 64, at
/// most 256 chunks).
pub(crate) fn parse(f: &mut Fields) -> Result<SweepSpec, ParamError> {
    let population = f.int("population", 1, MAX_POPULATION, None)?;
    let initial_infected = f.int("initial_infected", 1, population, None)?;
    let days = f.int("days", 1, MAX_DAYS, None)? as u32;
    let betas = grid(f, ["beta_min", "beta_max", "beta_steps"])?;
    let gammas = grid(f, ["gamma_min", "gamma_max", "gamma_steps"])?;
    let chunk_size = f.int("chunk_size", 1, MAX_POINTS, Some(64))?;
    let points = (betas.len() * gammas.len()) as u64;
    if points.div_ceil(chunk_size) > MAX_CHUNKS {
        return Err(f.err(
            "chunk_size",
            format!("{points} points in chunks of {chunk_size}: more than {MAX_CHUNKS} chunks"),
        ));
    }
    Ok(SweepSpec {
        model: Model {
            population,
            initial_infected,
            days,
        },
        betas,
        gammas,
        chunk_size: chunk_size as u32,
    })
}

/// `steps` values from min to max, evenly spaced (floor); one step is just min.
fn grid(f: &mut Fields, [min, max, steps]: [&'static str; 3]) -> Result<Vec<u32>, ParamError> {
    let lo = f.int(min, 0, MAX_RATE, None)?;
    let hi = f.int(max, lo, MAX_RATE, None)?;
    let steps = f.int(steps, 1, MAX_STEPS, None)?;
    if steps == 1 {
        return Ok(vec![lo as u32]);
    }
    Ok((0..steps)
        .map(|i| (lo + (hi - lo) * i / (steps - 1)) as u32)
        .collect())
}

fn points(spec: &SweepSpec) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(spec.betas.len() * spec.gammas.len());
    for &b in &spec.betas {
        out.extend(spec.gammas.iter().map(|&g| (b, g)));
    }
    out
}

pub(crate) fn plan(spec: &SweepSpec) -> Vec<SubtaskSpec> {
    let points = points(spec);
    let chunks = points.chunks(spec.chunk_size as usize).map(|chunk| {
        let input = encode(&ChunkInput {
            model: spec.model,
            points: chunk.to_vec(),
        });
        (input, chunk.len() as u64 * u64::from(spec.model.days))
    });
    independent(SubtaskKind::SweepChunk, chunks)
}

/// The model at one point. Ends early once nobody is ill: nothing changes after that.
pub fn simulate(
    population: u64,
    initial_infected: u64,
    days: u32,
    beta: u32,
    gamma: u32,
) -> PointResult {
    let n = u128::from(population);
    let (mut s, mut i) = (population - initial_infected, initial_infected);
    let (mut peak_infected, mut peak_day) = (i, 0);
    for day in 1..=days {
        if i == 0 {
            break;
        }
        let infections = u128::from(beta) * u128::from(s) * u128::from(i) / (1000 * n);
        let infections = infections.min(u128::from(s)) as u64;
        let recoveries = (u128::from(gamma) * u128::from(i) / 1000).min(u128::from(i)) as u64;
        s -= infections;
        i = i - recoveries + infections;
        if i > peak_infected {
            (peak_infected, peak_day) = (i, day);
        }
    }
    PointResult {
        beta,
        gamma,
        peak_infected,
        peak_day,
        total_infected: population - s,
    }
}

pub(crate) fn execute_chunk(input: &[u8]) -> Result<Vec<u8>, ExecError> {
    let ChunkInput { model, points } = decode(input)?;
    bounded("population", model.population, 1..=MAX_POPULATION)?;
    bounded(
        "initial_infected",
        model.initial_infected,
        1..=model.population,
    )?;
    bounded("days", u64::from(model.days), 1..=MAX_DAYS)?;
    bounded("points", points.len() as u64, 1..=MAX_POINTS)?;
    let mut results = Vec::with_capacity(points.len());
    for (beta, gamma) in points {
        bounded("beta", u64::from(beta), 0..=MAX_RATE)?;
        bounded("gamma", u64::from(gamma), 0..=MAX_RATE)?;
        results.push(simulate(
            model.population,
            model.initial_infected,
            model.days,
            beta,
            gamma,
        ));
    }
    Ok(encode(&results))
}

/// Every chunk's results, in chunk order; each must answer exactly its chunk's points.
pub(crate) fn aggregate(
    spec: &SweepSpec,
    outputs: &BTreeMap<u32, Vec<u8>>,
) -> Result<Vec<u8>, AggError> {
    let mut all: Vec<PointResult> = Vec::new();
    for (i, chunk) in points(spec).chunks(spec.chunk_size as usize).enumerate() {
        let index = i as u32;
        let results: Vec<PointResult> = decode_output(outputs, index)?;
        let answered: Vec<(u32, u32)> = results.iter().map(|r| (r.beta, r.gamma)).collect();
        if answered != chunk {
            return Err(AggError::Malformed {
                index,
                reason: "results do not match the chunk's points".to_string(),
            });
        }
        all.extend(results);
    }
    Ok(encode(&all))
}

pub(crate) fn run_in_one_process(spec: &SweepSpec) -> Vec<u8> {
    let m = spec.model;
    let all: Vec<PointResult> = points(spec)
        .into_iter()
        .map(|(b, g)| simulate(m.population, m.initial_infected, m.days, b, g))
        .collect();
    encode(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_spread_without_contact_and_everyone_ill_without_recovery() {
        let r = simulate(1000, 10, 100, 0, 100);
        assert_eq!((r.peak_infected, r.peak_day, r.total_infected), (10, 0, 10));
        let r = simulate(1000, 10, 365, 2000, 0);
        assert_eq!(r.total_infected, 1000);
        assert_eq!(r.peak_infected, 1000);
    }

    #[test]
    fn the_extremes_stay_in_range() {
        let r = simulate(MAX_POPULATION, 1, MAX_DAYS as u32, MAX_RATE as u32, 0);
        assert!(r.total_infected <= MAX_POPULATION);
        let r = simulate(
            MAX_POPULATION,
            MAX_POPULATION,
            10,
            MAX_RATE as u32,
            MAX_RATE as u32,
        );
        assert_eq!(r.peak_infected, MAX_POPULATION);
    }
}
