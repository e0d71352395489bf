//! GPU utilisation and memory, sampled through NVML while a run has a stage on the GPU.
//!
//! The first worker placed on the GPU (`StartContext::place`) starts a thread that reads the
//! GPU's utilisation and memory every 100 ms. The run report summarises the samples: mean
//! utilisation over the run and over its steady state (the middle 80% of the time the GPU was in
//! use, so loading models and draining the last items are left out), and peak memory. Without
//! NVML (no NVIDIA driver) the report says why there are no samples.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use serde::Serialize;

const EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug)]
struct Sample {
    at_s: f64,
    /// Percent of the last sample period in which a kernel ran (NVML's definition).
    utilization: u32,
    memory_used: u64,
}

#[derive(Default)]
struct State {
    device: String,
    memory_total: u64,
    samples: Vec<Sample>,
    error: Option<String>,
    /// The GPU's energy counter (mJ) at the first sample and the latest, where NVML has it.
    energy_mj: Option<(u64, u64)>,
}

/// What the run report says of the GPU.
#[derive(Serialize, Debug)]
pub struct GpuReport {
    pub device: String,
    pub samples: usize,
    /// Mean utilisation over every sample, 0-100.
    pub utilization_pct_mean: f64,
    /// Mean utilisation over the steady state: the middle 80% of the time the GPU was in use.
    pub utilization_pct_steady: f64,
    pub memory_used_peak_bytes: u64,
    pub memory_total_bytes: u64,
    /// Why nothing was sampled (no NVML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

static STATE: OnceLock<Arc<Mutex<State>>> = OnceLock::new();

/// Starts sampling (once per process).
pub fn start_sampling() {
    STATE.get_or_init(|| {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let spawned = thread::Builder::new()
            .name("gpu-sampler".into())
            .spawn(move || sample(&shared));
        if let Err(e) = spawned {
            lock(&state).error = Some(format!("cannot start the GPU sampler: {e}"));
        }
        state
    });
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn sample(state: &Mutex<State>) {
    let started = Instant::now();
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            lock(state).error = Some(format!("NVML is not available ({e})"));
            return;
        }
    };
    // The GPU CUDA calls device 0: the first of CUDA_VISIBLE_DEVICES when it names indexes.
    let index = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|v| v.split(',').next()?.trim().parse().ok())
        .unwrap_or(0);
    let device = match nvml.device_by_index(index) {
        Ok(device) => device,
        Err(e) => {
            lock(state).error = Some(format!("NVML cannot open GPU {index} ({e})"));
            return;
        }
    };
    {
        let mut s = lock(state);
        s.device = device.name().unwrap_or_else(|_| format!("GPU {index}"));
        s.memory_total = device.memory_info().map_or(0, |m| m.total);
    }
    loop {
        if let Ok(mj) = device.total_energy_consumption() {
            let mut s = lock(state);
            let first = s.energy_mj.map_or(mj, |(first, _)| first);
            s.energy_mj = Some((first, mj));
        }
        if let (Ok(u), Ok(m)) = (device.utilization_rates(), device.memory_info()) {
            lock(state).samples.push(Sample {
                at_s: started.elapsed().as_secs_f64(),
                utilization: u.gpu,
                memory_used: m.used,
            });
        }
        thread::sleep(EVERY);
    }
}

/// Joules the GPU used since sampling started, where NVML reads its energy counter.
pub fn energy_joules() -> Option<f64> {
    let state = lock(STATE.get()?);
    let (first, last) = state.energy_mj?;
    Some(last.saturating_sub(first) as f64 / 1e3)
}

/// The summary of what was sampled so far; `None` when no stage ran on the GPU.
pub fn report() -> Option<GpuReport> {
    let state = lock(STATE.get()?);
    let (mean, steady) = utilization(&state.samples);
    Some(GpuReport {
        device: state.device.clone(),
        samples: state.samples.len(),
        utilization_pct_mean: mean,
        utilization_pct_steady: steady,
        memory_used_peak_bytes: state
            .samples
            .iter()
            .map(|s| s.memory_used)
            .max()
            .unwrap_or(0),
        memory_total_bytes: state.memory_total,
        error: state.error.clone(),
    })
}

impl GpuReport {
    /// One line for the summary table.
    pub fn summary(&self) -> String {
        if let Some(error) = &self.error {
            return format!("gpu: not sampled: {error}");
        }
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        format!(
            "gpu {}: {:.0}% utilised in the steady state ({:.0}% over the run), memory peak {:.1} of {:.1} GiB",
            self.device,
            self.utilization_pct_steady,
            self.utilization_pct_mean,
            gib(self.memory_used_peak_bytes),
            gib(self.memory_total_bytes)
        )
    }
}

/// Mean utilisation over all samples and over the steady state: from the first to the last
/// sample with the GPU in use, the middle 80% of that time.
fn utilization(samples: &[Sample]) -> (f64, f64) {
    let mean = |s: &[Sample]| {
        if s.is_empty() {
            0.0
        } else {
            s.iter().map(|x| f64::from(x.utilization)).sum::<f64>() / s.len() as f64
        }
    };
    let busy = |s: &&Sample| s.utilization > 0;
    let (Some(first), Some(last)) = (samples.iter().find(busy), samples.iter().rev().find(busy))
    else {
        return (mean(samples), 0.0);
    };
    let margin = (last.at_s - first.at_s) * 0.1;
    let (from, to) = (first.at_s + margin, last.at_s - margin);
    let steady: Vec<Sample> = samples
        .iter()
        .filter(|s| s.at_s >= from && s.at_s <= to)
        .copied()
        .collect();
    (mean(samples), mean(&steady))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(utilization: &[u32]) -> Vec<Sample> {
        utilization
            .iter()
            .enumerate()
            .map(|(i, &u)| Sample {
                at_s: i as f64 * 0.1,
                utilization: u,
                memory_used: 1,
            })
            .collect()
    }

    // Idle loading and a ramp at both ends count in the mean but not in the steady state.
    #[test]
    fn steady_state_leaves_out_loading_and_draining() {
        let mut u = vec![0; 20];
        u.extend([10, 40]);
        u.extend(vec![95; 60]);
        u.extend([30, 5]);
        u.extend(vec![0; 10]);
        let (mean, steady) = utilization(&samples(&u));
        assert!(
            (mean - (50.0 + 95.0 * 60.0 + 35.0) / 94.0).abs() < 1e-9,
            "{mean}"
        );
        assert!((steady - 95.0).abs() < 1e-9, "{steady}");
        assert_eq!(utilization(&samples(&[0, 0, 0])), (0.0, 0.0));
        assert_eq!(utilization(&[]), (0.0, 0.0));
    }
}
