//! Did the programme raise the load of the sites it served? From utilization telemetry (each
//! pool's busy GPUs as its provider reports them, all work included), a difference in
//! differences: the change in load of the sites the programme served, from the weeks before it
//! began serving to the weeks after, less the change of the sites it never served over the same
//! weeks, with a 95% interval (Welch's, from the spread of the sites' own changes). Also each
//! served site's load before and after the programme's first order there, and the share of the
//! subsidized GPU-hours that ran at sites under the placement policy's load target in that month.
//!
//! The estimate is honest about its inputs: a site counts only with telemetry in both windows;
//! with fewer than two sites on a side there is an estimate but no interval; without telemetry
//! there is none. It assumes what every difference in differences assumes: without the
//! programme, served and unserved sites would have moved alike.

use std::collections::BTreeMap;

use serde::Serialize;
use suanli_domain::{ProgramId, SiteId};
use suanli_store::utilization::{DAY_S, Point, load_between as load_bp, merge};

use crate::service::View;

/// Weeks before and after the programme began serving that each side of the comparison covers.
pub const WINDOW_DAYS_DEFAULT: i64 = 28;

/// One site's load (basis points of its GPUs busy, mean of the samples) around the pivot.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SiteLoad {
    pub site: SiteId,
    pub name: String,
    pub hub: String,
    /// Whether the programme served it (had an order placed there).
    pub served: bool,
    /// When the programme's first order was placed there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub began_s: Option<i64>,
    /// Over the window before the programme began serving anywhere, and the one after.
    pub before_bp: Option<u32>,
    pub after_bp: Option<u32>,
    /// Over the window before and after the programme began serving this site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_before_bp: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_after_bp: Option<u32>,
}

/// A difference of two groups' means with its 95% interval (Welch's): for the load effect, of
/// the sites' changes in load in percentage points; for a lottery, of the compute bought per
/// enterprise in fen.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Estimate {
    /// Treated mean less control mean.
    pub estimate: f64,
    /// The interval, when both groups have at least two members.
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: Option<f64>,
    pub treated: u32,
    pub control: u32,
    pub treated_mean: f64,
    pub control_mean: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LoadEffect {
    /// When the programme's first order was placed: the line between before and after.
    pub pivot_s: Option<i64>,
    pub window_days: i64,
    /// The placement policy's load target, in basis points.
    pub target_bp: u32,
    pub sites: Vec<SiteLoad>,
    /// The difference in differences, in percentage points of load.
    pub did: Option<Estimate>,
    /// Of the subsidized GPU-hours at sites with telemetry that month, the share at sites under
    /// the load target, in basis points.
    pub under_target_share_bp: Option<u32>,
    /// Of all subsidized GPU-hours, the share at sites with telemetry that month.
    pub measured_share_bp: Option<u32>,
}

fn mean_var(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var)
}

/// Student's t at 97.5% for `df` degrees of freedom: the table for 1–30 (rounded down, so the
/// interval is never too narrow), a Cornish–Fisher expansion above.
pub fn t_975(df: f64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    if df < 1.0 {
        return TABLE[0];
    }
    if df < 31.0 {
        return TABLE[(df.floor() as usize).clamp(1, 30) - 1];
    }
    let z: f64 = 1.959_964;
    z + (z.powi(3) + z) / (4.0 * df) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df)
}

/// The mean of the treated less the mean of the controls, with Welch's 95% interval. Given each
/// site's change in load (after − before), it is the difference in differences.
pub fn welch(treated: &[f64], control: &[f64]) -> Option<Estimate> {
    if treated.is_empty() || control.is_empty() {
        return None;
    }
    let ((mt, vt), (mc, vc)) = (mean_var(treated), mean_var(control));
    let (nt, nc) = (treated.len() as f64, control.len() as f64);
    let estimate = mt - mc;
    let (mut low, mut high, mut df) = (None, None, None);
    if treated.len() >= 2 && control.len() >= 2 {
        let (at, ac) = (vt / nt, vc / nc);
        let se = (at + ac).sqrt();
        let freedom = if at + ac > 0.0 {
            (at + ac).powi(2) / (at * at / (nt - 1.0) + ac * ac / (nc - 1.0))
        } else {
            nt + nc - 2.0
        };
        let half = t_975(freedom) * se;
        (low, high, df) = (Some(estimate - half), Some(estimate + half), Some(freedom));
    }
    Some(Estimate {
        estimate,
        low,
        high,
        df,
        treated: treated.len() as u32,
        control: control.len() as u32,
        treated_mean: mt,
        control_mean: mc,
    })
}

impl View {
    /// The programme's effect on the load of the sites it served. `series(pools, from, to)`
    /// answers the pools' utilization summed per hour over `[from, to)` (storage's reader).
    pub fn load_effect<E>(
        &self,
        program: ProgramId,
        window_days: i64,
        mut series: impl FnMut(&[u64], i64, i64) -> Result<Vec<Point>, E>,
    ) -> Result<LoadEffect, E> {
        let s = self.state();
        let now = self.now_s();
        let window = window_days.clamp(1, 366) * DAY_S;
        let target_bp = (self.placement_policy().utilization_target * 10_000.0).round() as u32;
        let began: BTreeMap<SiteId, i64> =
            s.orders_began.iter().filter(|((p, _), _)| *p == program).map(|(&(_, site), &at)| (site, at)).collect();
        let pivot = began.values().min().copied();
        let mut effect = LoadEffect {
            pivot_s: pivot,
            window_days: window / DAY_S,
            target_bp,
            sites: Vec::new(),
            did: None,
            under_target_share_bp: None,
            measured_share_bp: None,
        };
        // Every site's hourly series from a window before the first order to now.
        let from = pivot.unwrap_or(now) - window;
        let mut points: BTreeMap<SiteId, Vec<Point>> = BTreeMap::new();
        for site in s.sites.values() {
            let pools: Vec<u64> = s.pools.values().filter(|p| p.site == site.id).map(|p| p.id.get()).collect();
            if pools.is_empty() {
                continue;
            }
            points.insert(site.id, series(&pools, from, now.saturating_add(1))?);
        }
        let (mut treated, mut control) = (Vec::new(), Vec::new());
        for site in s.sites.values() {
            let site_points = points.get(&site.id).map_or(&[][..], Vec::as_slice);
            let own = began.get(&site.id).copied();
            let around = |at: i64| (load_bp(site_points, at - window, at), load_bp(site_points, at, at + window));
            let (before, after) = pivot.map_or((None, None), around);
            let (own_before, own_after) = own.map_or((None, None), around);
            if let (Some(b), Some(a)) = (before, after) {
                let change = (f64::from(a) - f64::from(b)) / 100.0;
                match own.is_some() {
                    true => treated.push(change),
                    false => control.push(change),
                }
            }
            effect.sites.push(SiteLoad {
                site: site.id,
                name: site.spec.name.clone(),
                hub: site.spec.hub.clone(),
                served: own.is_some(),
                began_s: own,
                before_bp: before,
                after_bp: after,
                own_before_bp: own_before,
                own_after_bp: own_after,
            });
        }
        effect.did = welch(&treated, &control);

        // Subsidized GPU-hours by site and month, against that site's load that month.
        let (mut all, mut measured, mut under) = (0i128, 0i128, 0i128);
        for part in self.usage_parts(|p| p == program) {
            let month = part.month;
            let seconds = i128::from(part.sums.gpu_seconds.max(0));
            all += seconds;
            let Some(site) = s.pools.get(&part.pool).map(|p| p.site) else { continue };
            let (start, end) = month.bounds_s();
            if let Some(load) = points.get(&site).and_then(|p| load_bp(p, start, end)) {
                measured += seconds;
                if load < target_bp {
                    under += seconds;
                }
            }
        }
        let share = |part: i128, whole: i128| (whole > 0).then(|| (part * 10_000 / whole) as u32);
        effect.measured_share_bp = share(measured, all);
        effect.under_target_share_bp = share(under, measured);
        Ok(effect)
    }
}

impl View {
    /// The outcome report with the load of the sites served, read from `reader` (storage's
    /// connection beside the writer).
    pub fn outcome_with_load(
        &self,
        program: ProgramId,
        window_days: i64,
        reader: &mut suanli_store::LogReader,
    ) -> crate::error::Result<crate::outcome::Outcome> {
        let mut outcome = self.outcome(program)?;
        outcome.lottery = self.lottery_outcomes(program, |enterprises, since| {
            reader.archived_bought(enterprises, since).map_err(|e| {
                crate::error::ServiceError::new(crate::error::ErrorCode::StorageUnavailable, e.to_string())
            })
        })?;
        let load = self.load_effect(program, window_days, |pools, from, to| {
            reader.utilization(pools, from, to, suanli_store::utilization::HOUR_S).map(|series| merge(&series))
        });
        outcome.load = Some(load.map_err(|e| {
            crate::error::ServiceError::new(crate::error::ErrorCode::StorageUnavailable, e.to_string())
        })?);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_in_diff_by_hand() {
        // Treated sites rose 10, 14 and 12 points (mean 12, variance 4); controls 1 and 3 (mean 2,
        // variance 2): the estimate is 10 points, its standard error √(4/3 + 2/2) = 1.5275, and
        // Welch's df = (7/3)² / ((4/3)²/2 + 1²/1) = 5.444/1.8889 = 2.882, so t = 4.303 (df 2).
        let e = welch(&[10.0, 14.0, 12.0], &[1.0, 3.0]).unwrap();
        assert!((e.estimate - 10.0).abs() < 1e-9);
        assert!((e.df.unwrap() - 2.882_352_9).abs() < 1e-6, "{e:?}");
        let half = 4.303 * (7.0f64 / 3.0).sqrt();
        assert!((e.low.unwrap() - (10.0 - half)).abs() < 1e-9);
        assert!((e.high.unwrap() - (10.0 + half)).abs() < 1e-9);
        // One site on a side: an estimate, no interval.
        let single = welch(&[5.0], &[1.0, 2.0]).unwrap();
        assert_eq!((single.estimate, single.low), (3.5, None));
        assert!(welch(&[], &[1.0]).is_none());
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t_975(1.0), 12.706);
        assert_eq!(t_975(2.9), 4.303);
        assert!((t_975(60.0) - 2.000).abs() < 2e-3);
        assert!((t_975(1e9) - 1.96).abs() < 1e-3);
    }

    #[test]
    fn load_over_a_window_is_the_mean_of_its_samples() {
        let p = |at_s, busy_sum, gpus_sum| Point { at_s, busy_sum, gpus_sum, samples: 1 };
        let points = [p(0, 2, 8), p(3_600, 6, 8), p(7_200, 8, 8)];
        assert_eq!(load_bp(&points, 0, 7_200), Some(5_000));
        assert_eq!(load_bp(&points, 0, 10_800), Some(6_666));
        assert_eq!(load_bp(&points, 20_000, 30_000), None);
    }
}
