//! What a run cost: CPU and GPU seconds per stage and per item (charged batch by batch by
//! `component::threads`), energy, money at the site's prices, and what a cloud service would
//! have charged for the same work.
//!
//! Energy is measured where the machine lets lai read it: the CPU packages' RAPL counters
//! (powercap), the GPU's NVML energy counter. Otherwise it is estimated from the seconds at
//! configured wattages, and the report says which. Everything is linear in the seconds: a run's
//! rates (joules and money per CPU-second and per GPU-second) turn any item's or stage's
//! seconds into its energy and money, so items add up to their stages, stages and lai's own
//! work (start-up, reading, writing) to the run, and runs to `lai ledger --cost`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::component::Unit;
use crate::item::Usage;

/// The site's prices (`[cost]` in the file `--cost` names; `--price KEY=VALUE` overrides).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// The currency the prices are in, as shown ("EUR").
    pub currency: String,
    /// Electricity, per kWh.
    pub kwh: Option<f64>,
    /// The machine (amortised hardware, hosting, licences), per hour with every core busy:
    /// a CPU-second costs this over 3600 seconds and the machine's cores.
    pub machine_per_hour: Option<f64>,
    /// The GPU, per hour busy.
    pub gpu_per_hour: Option<f64>,
    /// Watts per busy core, for the energy estimate when RAPL cannot be read.
    pub cpu_watts: f64,
    /// Watts of the busy GPU, for the estimate when NVML gives no energy.
    pub gpu_watts: f64,
    /// A cloud service's price for the same work, by unit of work the stages count
    /// (`audio_s`, `prompt_tokens`, `tokens`, `chars`, `embedded_tokens`...).
    pub cloud: BTreeMap<String, CloudPrice>,
    /// Where the cloud prices come from, shown with the figure ("OpenAI list prices, 2026-11").
    pub cloud_source: Option<String>,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            currency: "USD".into(),
            kwh: None,
            machine_per_hour: None,
            gpu_per_hour: None,
            cpu_watts: 10.0,
            gpu_watts: 300.0,
            cloud: BTreeMap::new(),
            cloud_source: None,
        }
    }
}

/// `price` for every `per` units: `{ price = 0.006, per = 60 }` is 0.006 an audio minute.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudPrice {
    pub price: f64,
    #[serde(default = "one")]
    pub per: f64,
}

fn one() -> f64 {
    1.0
}

impl Prices {
    /// Reads `[cost]` of a TOML file; a key lai does not know is an error naming it.
    pub fn parse(text: &str) -> Result<Prices, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            cost: Prices,
        }
        let file: File = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {}", e.message())
            }
            None => e.message().to_string(),
        })?;
        file.cost.checked()
    }

    /// Sets one key as `--price KEY=VALUE` gives it (`kwh=0.3`, `currency=EUR`,
    /// `cloud.audio_s=0.0001`).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`--price {assignment}`: write KEY=VALUE, e.g. kwh=0.30"))?;
        let number = || {
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("`--price {key}`: `{value}` is not a number"))
        };
        match key.trim() {
            "currency" => self.currency = value.trim().to_string(),
            "cloud_source" => self.cloud_source = Some(value.trim().to_string()),
            "kwh" => self.kwh = Some(number()?),
            "machine_per_hour" => self.machine_per_hour = Some(number()?),
            "gpu_per_hour" => self.gpu_per_hour = Some(number()?),
            "cpu_watts" => self.cpu_watts = number()?,
            "gpu_watts" => self.gpu_watts = number()?,
            other => match other.strip_prefix("cloud.") {
                Some(unit) if !unit.is_empty() => {
                    self.cloud.insert(
                        unit.to_string(),
                        CloudPrice {
                            price: number()?,
                            per: 1.0,
                        },
                    );
                }
                _ => {
                    return Err(format!(
                        "`--price {other}`: unknown key; use currency, kwh, machine_per_hour, gpu_per_hour, cpu_watts, gpu_watts, cloud_source or cloud.UNIT"
                    ));
                }
            },
        }
        std::mem::take(self).checked().map(|p| *self = p)
    }

    fn checked(self) -> Result<Prices, String> {
        let numbers = [
            ("kwh", self.kwh),
            ("machine_per_hour", self.machine_per_hour),
            ("gpu_per_hour", self.gpu_per_hour),
            ("cpu_watts", Some(self.cpu_watts)),
            ("gpu_watts", Some(self.gpu_watts)),
        ];
        for (key, value) in numbers {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(format!("`{key}` must be a number of 0 or more"));
            }
        }
        for (unit, p) in &self.cloud {
            if !p.price.is_finite() || p.price < 0.0 || !p.per.is_finite() || p.per <= 0.0 {
                return Err(format!(
                    "`cloud.{unit}`: price must be 0 or more and per more than 0"
                ));
            }
        }
        Ok(self)
    }

    fn priced(&self) -> bool {
        self.kwh.is_some() || self.machine_per_hour.is_some() || self.gpu_per_hour.is_some()
    }
}

/// The CPU packages' energy counters (RAPL through powercap), read at the start of a run.
pub struct EnergyStart {
    rapl: Vec<(PathBuf, u64, u64)>,
}

const POWERCAP: &str = "/sys/class/powercap";

impl EnergyStart {
    /// Reads every readable package counter (`intel-rapl:N`, which AMD's kernels use too).
    pub fn now() -> EnergyStart {
        let mut rapl = Vec::new();
        if let Ok(entries) = std::fs::read_dir(POWERCAP) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Packages only: their sub-domains (intel-rapl:0:0, cores) are inside them.
                let Some(n) = name.strip_prefix("intel-rapl:") else {
                    continue;
                };
                if n.contains(':') {
                    continue;
                }
                let read = |f: &str| -> Option<u64> {
                    std::fs::read_to_string(entry.path().join(f))
                        .ok()?
                        .trim()
                        .parse()
                        .ok()
                };
                if let (Some(uj), Some(max)) = (read("energy_uj"), read("max_energy_range_uj")) {
                    rapl.push((entry.path(), uj, max));
                }
            }
        }
        EnergyStart { rapl }
    }

    /// Joules the packages used since `now`, or `None` when no counter could be read.
    fn joules(&self) -> Option<f64> {
        if self.rapl.is_empty() {
            return None;
        }
        let mut uj = 0u64;
        for (path, start, max) in &self.rapl {
            let end: u64 = std::fs::read_to_string(path.join("energy_uj"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            // The counter wraps at max_energy_range_uj.
            uj += if end >= *start {
                end - start
            } else {
                max - start + end
            };
        }
        Some(uj as f64 / 1e6)
    }
}

/// A stage's seconds, and the units of work it counted.
pub struct StageWork {
    pub usage: Usage,
    pub units: Vec<(&'static Unit, f64)>,
}

/// What a run did, for its account.
pub struct Work {
    /// The process's CPU seconds, start-up included.
    pub process_cpu_s: f64,
    pub cores: usize,
    /// Items processed (not skipped).
    pub items: u64,
    /// Per stage, in pipeline order.
    pub stages: Vec<StageWork>,
    /// Joules the GPU used, from NVML, when a stage ran on it.
    pub gpu_joules: Option<f64>,
}

/// A share of the run's cost: some seconds, and their energy, money and cloud price.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Share {
    pub cpu_s: f64,
    pub gpu_s: f64,
    pub energy_j: f64,
    /// At the run's prices; absent when none is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub money: Option<f64>,
    /// What the cloud price list charges for the work; absent when no price covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<f64>,
}

/// The run's cost, as the report and the ledger hold it.
#[derive(Clone, Debug, Serialize)]
pub struct CostReport {
    /// The whole process: every stage, plus lai's own work.
    pub total: Share,
    /// Start-up (model checks and loading), reading, writing: CPU time no batch was charged.
    pub lai_own: Share,
    /// The mean over the items processed.
    pub per_item: Share,
    pub items: u64,
    /// "measured (...)" or "estimate (...)", for the CPU and for the GPU.
    pub energy_method: String,
    pub joules_per_cpu_s: f64,
    pub joules_per_gpu_s: f64,
    pub currency: String,
    pub money_per_cpu_s: Option<f64>,
    pub money_per_gpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_source: Option<String>,
    /// The prices used.
    pub prices: Prices,
    /// Per stage, in pipeline order (also in each stage's report).
    #[serde(skip)]
    pub stages: Vec<Share>,
}

/// Works out the run's account.
pub fn account(prices: &Prices, energy: &EnergyStart, work: &Work) -> CostReport {
    let stage_cpu: f64 = work.stages.iter().map(|s| s.usage.cpu_s).sum();
    let gpu_s: f64 = work.stages.iter().map(|s| s.usage.gpu_s).sum();
    // The process's CPU time is read after the batches': never less than their sum.
    let cpu_s = work.process_cpu_s.max(stage_cpu);
    let (joules_per_cpu_s, cpu_method) = match energy.joules() {
        Some(j) if cpu_s > 0.0 => (
            j / cpu_s,
            "CPU measured (RAPL package counters over the run, the whole package including other processes, shared by CPU-second)".to_string(),
        ),
        _ => (
            prices.cpu_watts,
            format!(
                "CPU estimated ({} W per busy core; RAPL counters not readable here)",
                prices.cpu_watts
            ),
        ),
    };
    let (joules_per_gpu_s, gpu_method) = match work.gpu_joules {
        Some(j) if gpu_s > 0.0 => (
            j / gpu_s,
            "GPU measured (NVML energy counter, shared by GPU-second)".to_string(),
        ),
        _ if gpu_s > 0.0 => (
            prices.gpu_watts,
            format!(
                "GPU estimated ({} W busy; NVML gave no energy)",
                prices.gpu_watts
            ),
        ),
        _ => (prices.gpu_watts, "no GPU used".to_string()),
    };
    let kwh_price = prices.kwh.unwrap_or(0.0);
    let priced = prices.priced();
    let money_per_cpu_s = priced.then(|| {
        prices.machine_per_hour.unwrap_or(0.0) / 3600.0 / work.cores.max(1) as f64
            + joules_per_cpu_s / 3.6e6 * kwh_price
    });
    let money_per_gpu_s = priced.then(|| {
        prices.gpu_per_hour.unwrap_or(0.0) / 3600.0 + joules_per_gpu_s / 3.6e6 * kwh_price
    });
    let share = |u: Usage, cloud: Option<f64>| Share {
        cpu_s: u.cpu_s,
        gpu_s: u.gpu_s,
        energy_j: u.cpu_s * joules_per_cpu_s + u.gpu_s * joules_per_gpu_s,
        money: money_per_cpu_s
            .zip(money_per_gpu_s)
            .map(|(c, g)| u.cpu_s * c + u.gpu_s * g),
        cloud,
    };
    let stages: Vec<Share> = work
        .stages
        .iter()
        .map(|s| share(s.usage, cloud_price(prices, &s.units)))
        .collect();
    let cloud = stages.iter().filter_map(|s| s.cloud).reduce(|a, b| a + b);
    let total = share(Usage { cpu_s, gpu_s }, cloud);
    let lai_own = share(
        Usage {
            cpu_s: cpu_s - stage_cpu,
            gpu_s: 0.0,
        },
        None,
    );
    let n = work.items.max(1) as f64;
    let per_item = Share {
        cpu_s: stage_cpu / n,
        gpu_s: gpu_s / n,
        energy_j: (total.energy_j - lai_own.energy_j) / n,
        money: total.money.zip(lai_own.money).map(|(t, o)| (t - o) / n),
        cloud: cloud.map(|c| c / n),
    };
    CostReport {
        total,
        lai_own,
        per_item,
        items: work.items,
        energy_method: format!("{cpu_method}; {gpu_method}"),
        joules_per_cpu_s,
        joules_per_gpu_s,
        currency: prices.currency.clone(),
        money_per_cpu_s,
        money_per_gpu_s,
        cloud_source: prices.cloud_source.clone(),
        prices: prices.clone(),
        stages,
    }
}

/// What the price list charges for a stage's units of work; `None` when none is priced.
fn cloud_price(prices: &Prices, units: &[(&'static Unit, f64)]) -> Option<f64> {
    units
        .iter()
        .filter_map(|(unit, total)| {
            let p = prices.cloud.get(unit.total)?;
            Some(total / p.per * p.price)
        })
        .reduce(|a, b| a + b)
}

impl CostReport {
    /// Lines for the summary: the run's total, per item, the cloud's price, how energy was had.
    pub fn summary(&self) -> String {
        let money = |m: Option<f64>| {
            m.map_or_else(String::new, |m| {
                format!(", {} {}", money_text(m), self.currency)
            })
        };
        let mut out = format!(
            "cost: {:.1} CPU-s ({:.1} of them lai's own: start-up, reading, writing), {:.1} GPU-s, {:.3} Wh{}\n      per item {:.4} CPU-s, {:.4} GPU-s{}",
            self.total.cpu_s,
            self.lai_own.cpu_s,
            self.total.gpu_s,
            self.total.energy_j / 3600.0,
            money(self.total.money),
            self.per_item.cpu_s,
            self.per_item.gpu_s,
            money(self.per_item.money),
        );
        if let Some(cloud) = self.total.cloud {
            out.push_str(&format!(
                "; the cloud's price for the same work {} {} ({})",
                money_text(cloud),
                self.currency,
                self.cloud_source.as_deref().unwrap_or("configured prices")
            ));
        }
        out.push_str(&format!("\nenergy: {}", self.energy_method));
        out
    }
}

/// Money with enough digits to see a fraction of a cent.
fn money_text(m: f64) -> String {
    if m >= 1.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::Per;

    static AUDIO: Unit = Unit {
        total: "audio_s",
        rate: "audio_x_realtime",
        per: Per::WallSecond,
        whole: false,
        describe: |_, _| String::new(),
    };

    fn work() -> Work {
        Work {
            process_cpu_s: 10.0,
            cores: 2,
            items: 4,
            stages: vec![
                StageWork {
                    usage: Usage {
                        cpu_s: 6.0,
                        gpu_s: 2.0,
                    },
                    units: vec![(&AUDIO, 600.0)],
                },
                StageWork {
                    usage: Usage {
                        cpu_s: 1.0,
                        gpu_s: 0.0,
                    },
                    units: vec![],
                },
            ],
            gpu_joules: None,
        }
    }

    // Stages and lai's own work add up to the run, in seconds, energy and money; the cloud
    // price is the list's for the units counted.
    #[test]
    fn figures_add_up() {
        let prices = Prices::parse(
            "[cost]\ncurrency = \"EUR\"\nkwh = 0.36\nmachine_per_hour = 7.2\ngpu_per_hour = 3.6\n[cost.cloud]\naudio_s = { price = 0.006, per = 60 }\n",
        )
        .unwrap();
        let r = account(&prices, &EnergyStart { rapl: Vec::new() }, &work());
        assert_eq!(r.total.cpu_s, 10.0);
        assert_eq!(r.lai_own.cpu_s, 3.0);
        let sum = |f: fn(&Share) -> f64| r.stages.iter().map(f).sum::<f64>();
        assert!((sum(|s| s.energy_j) + r.lai_own.energy_j - r.total.energy_j).abs() < 1e-9);
        // 10 W a core: 100 J for the run's CPU, 300 W for 2 GPU-seconds.
        assert!((r.total.energy_j - 700.0).abs() < 1e-9);
        // 7.2 an hour over 2 cores is 0.001 a CPU-second; 0.36 a kWh is 1e-7 a joule.
        let cpu_money = 0.001 + 10.0 * 1e-7;
        let gpu_money = 0.001 + 300.0 * 1e-7;
        let want = 10.0 * cpu_money + 2.0 * gpu_money;
        assert!((r.total.money.unwrap() - want).abs() < 1e-12);
        let stage_money: f64 = r.stages.iter().map(|s| s.money.unwrap()).sum();
        assert!((stage_money + r.lai_own.money.unwrap() - want).abs() < 1e-12);
        assert!((r.per_item.money.unwrap() * 4.0 - stage_money).abs() < 1e-12);
        assert!((r.total.cloud.unwrap() - 0.06).abs() < 1e-12);
        assert_eq!(r.stages[1].cloud, None);
        assert!(r.energy_method.contains("estimated"), "{}", r.energy_method);
    }

    // Without prices there is no money, only seconds and energy.
    #[test]
    fn no_prices_no_money() {
        let r = account(
            &Prices::default(),
            &EnergyStart { rapl: Vec::new() },
            &work(),
        );
        assert_eq!(r.total.money, None);
        assert_eq!(r.per_item.money, None);
        assert!(r.summary().contains("10.0 CPU-s"), "{}", r.summary());
    }

    // A misspelt key, a negative price and a bad --price are refused, naming the key.
    #[test]
    fn prices_are_checked() {
        let e = Prices::parse("[cost]\nkwh_price = 0.3\n").unwrap_err();
        assert!(e.contains("kwh_price"), "{e}");
        let e = Prices::parse("[cost]\nkwh = -1\n").unwrap_err();
        assert!(e.contains("kwh"), "{e}");
        let mut p = Prices::default();
        p.set("kwh=0.3").unwrap();
        p.set("cloud.tokens=0.0000006").unwrap();
        assert_eq!(p.kwh, Some(0.3));
        assert!(p.set("watts=3").unwrap_err().contains("watts"));
        assert!(p.set("kwh=cheap").unwrap_err().contains("cheap"));
    }
}
