//! What a programme's money achieved, from what the service already holds: the budget's path,
//! what became of each voucher, the GPU-hours the subsidy bought and what each cost the budget by
//! chip, hub and kind of operator, and who was served (by kind, region and size, and how
//! concentrated the subsidy is).
//!
//! Usage is read from the statement lines (one per order and month, on a statement or still
//! open), never from the usage records, so the report costs what the programme's orders cost.
//! Money stays integer fen; a rate per GPU-hour is rounded down to the fen; shares are basis
//! points. The load of the sites served, which needs storage's telemetry, is `evaluation`'s.

use std::collections::BTreeMap;

use serde::Serialize;
use suanli_domain::{ApplicationId, EnterpriseId, Fen, ProgramId};

use crate::error::Result;
use crate::model::{LineSums, SIZE_BANDS, VoucherState};
use crate::service::View;

/// What became of the programme's vouchers (each counted once in `used`, `partly_used` or
/// `unused`; `expired` and `revoked` count states across those).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct VoucherOutcomes {
    pub issued: u64,
    /// Every fen went to compute (or is held for a running order); none went back.
    pub used: u64,
    pub partly_used: u64,
    /// Not a fen spent.
    pub unused: u64,
    pub expired: u64,
    pub revoked: u64,
}

/// Usage and money of one group (a chip, a hub, an operator kind, an enterprise kind...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Group {
    pub key: String,
    pub gpu_seconds: i64,
    pub cost_fen: Fen,
    pub voucher_fen: Fen,
    /// The budget's cost of a subsidized GPU-hour here, rounded down (none without usage).
    pub voucher_fen_per_gpu_hour: Option<i64>,
}

/// Who was served: the enterprises holding a voucher of the programme.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Served {
    pub enterprises: u64,
    pub by_kind: Vec<Group>,
    pub by_region: Vec<Group>,
    pub by_size: Vec<Group>,
    /// The share of the subsidy spent by the 10 enterprises that spent most, in basis points.
    pub top10_share_bp: Option<u32>,
    /// The Gini coefficient of the subsidy spent across the enterprises served (0 equal, 1 all
    /// to one).
    pub gini: Option<f64>,
}

/// A lottery round's evaluation: the compute bought on the platform (list cost of the orders
/// placed after the draw, under any programme) per participating enterprise, drawn against not
/// drawn. The difference is what the vouchers added (additionality), with Welch's interval.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RoundOutcome {
    pub round: u32,
    pub drawn_at_s: i64,
    pub participants: u32,
    pub drawn: u32,
    pub not_drawn: u32,
    /// The round redone from its seed agrees with the draw made, and the seed is the one
    /// committed.
    pub verified: bool,
    /// In fen per enterprise.
    pub bought: Option<crate::evaluation::Estimate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub program: ProgramId,
    pub key: String,
    pub name: String,
    pub funded_fen: Fen,
    pub issued_fen: Fen,
    pub spent_fen: Fen,
    pub settled_fen: Fen,
    pub returned_fen: Fen,
    pub vouchers: VoucherOutcomes,
    /// All usage the subsidy paid a part of.
    pub usage: Group,
    /// What enterprises paid themselves.
    pub enterprise_fen: Fen,
    /// The realized cut in the price of compute: the voucher's part of the list cost, in basis
    /// points.
    pub cost_cut_bp: Option<u32>,
    /// GPU-hours on domestic chips, in basis points of all.
    pub domestic_share_bp: Option<u32>,
    pub by_chip: Vec<Group>,
    pub by_hub: Vec<Group>,
    pub by_operator: Vec<Group>,
    pub served: Served,
    /// Each lottery round drawn: those drawn against the control group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lottery: Vec<RoundOutcome>,
    /// The load of the sites served against those not served, from utilization telemetry
    /// (`View::load_effect`, which reads storage: filled in by whoever can read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::evaluation::LoadEffect>,
}

fn share_bp(part: i128, whole: i128) -> Option<u32> {
    (whole > 0).then(|| u32::try_from(part.max(0) * 10_000 / whole).unwrap_or(u32::MAX))
}

impl Group {
    fn add(&mut self, line: &LineSums) -> Result<()> {
        self.gpu_seconds = self.gpu_seconds.saturating_add(line.gpu_seconds);
        self.cost_fen = self.cost_fen.checked_add(line.cost_fen)?;
        self.voucher_fen = self.voucher_fen.checked_add(line.voucher_part_fen)?;
        Ok(())
    }

    fn finish(mut self) -> Group {
        self.voucher_fen_per_gpu_hour = (self.gpu_seconds > 0).then(|| {
            let per = i128::from(self.voucher_fen.fen()) * 3_600 / i128::from(self.gpu_seconds);
            i64::try_from(per).unwrap_or(i64::MAX)
        });
        self
    }
}

fn groups(map: BTreeMap<String, Group>) -> Vec<Group> {
    map.into_iter().map(|(key, group)| Group { key, ..group }.finish()).collect()
}

/// The Gini coefficient of non-negative amounts (none for no amounts or a zero total).
pub fn gini(amounts: &[i64]) -> Option<f64> {
    let mut sorted: Vec<i128> = amounts.iter().map(|a| i128::from((*a).max(0))).collect();
    sorted.sort_unstable();
    let n = sorted.len() as i128;
    let total: i128 = sorted.iter().sum();
    if n == 0 || total == 0 {
        return None;
    }
    let weighted: i128 = sorted.iter().enumerate().map(|(i, x)| (i as i128 + 1) * x).sum();
    Some((2 * weighted) as f64 / (n * total) as f64 - (n + 1) as f64 / n as f64)
}

impl View {
    /// The outcome report of one programme.
    pub fn outcome(&self, program: ProgramId) -> Result<Outcome> {
        let p = self.program(program)?;
        let s = self.state();
        let funded = p.budget_remaining_fen.checked_add(p.issued_fen)?.checked_sub(p.returned_fen)?;

        let mut vouchers = VoucherOutcomes::default();
        let mut spent_by: BTreeMap<EnterpriseId, i64> = BTreeMap::new();
        for v in s.vouchers.values().filter(|v| v.program == program) {
            vouchers.issued += 1;
            if v.spent_fen == Fen::ZERO {
                vouchers.unused += 1;
            } else if v.available_fen == Fen::ZERO && v.returned_fen == Fen::ZERO {
                vouchers.used += 1;
            } else {
                vouchers.partly_used += 1;
            }
            match v.state {
                VoucherState::Expired => vouchers.expired += 1,
                VoucherState::Revoked => vouchers.revoked += 1,
                VoucherState::Active | VoucherState::Suspended => {}
            }
            let entry = spent_by.entry(v.enterprise).or_default();
            *entry = entry.saturating_add(v.spent_fen.fen());
        }

        let parts = self.usage_parts(|p| p == program);
        let mut usage = Group::default();
        let mut enterprise_fen = Fen::ZERO;
        let mut domestic_seconds = 0i64;
        let (mut by_chip, mut by_hub, mut by_operator) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let (mut by_kind, mut by_region, mut by_size) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for part in &parts {
            let line = &part.sums;
            usage.add(line)?;
            enterprise_fen = enterprise_fen.checked_add(line.enterprise_part_fen)?;
            let pool = s.pools.get(&part.pool);
            let site = pool.and_then(|pool| s.sites.get(&pool.site));
            if pool.is_some_and(|pool| pool.domestic) {
                domestic_seconds = domestic_seconds.saturating_add(line.gpu_seconds);
            }
            let chip = pool.map_or_else(|| "?".to_owned(), |pool| pool.chip.clone());
            let hub = site.map_or_else(|| "?".to_owned(), |site| site.spec.hub.clone());
            let operator = site.map_or("?", |site| site.spec.operator.as_str()).to_owned();
            for (map, key) in [(&mut by_chip, chip), (&mut by_hub, hub), (&mut by_operator, operator)] {
                map.entry(key).or_insert_with(Group::default).add(line)?;
            }
            if let Some((kind, province, band)) = part.group {
                let region = province.name().map_or_else(|| province.to_string(), |n| n.english.to_owned());
                let keys = [
                    (&mut by_kind, kind.as_str().to_owned()),
                    (&mut by_region, region),
                    (&mut by_size, SIZE_BANDS[usize::from(band)].to_owned()),
                ];
                for (map, key) in keys {
                    map.entry(key).or_insert_with(Group::default).add(line)?;
                }
            }
        }
        let mut spent: Vec<i64> = spent_by.values().copied().collect();
        spent.sort_unstable_by(|a, b| b.cmp(a));
        let total: i128 = spent.iter().map(|x| i128::from(*x)).sum();
        let top10: i128 = spent.iter().take(10).map(|x| i128::from(*x)).sum();
        let usage = usage.finish();
        let mut by_size = groups(by_size);
        by_size.sort_by_key(|g| SIZE_BANDS.iter().position(|band| *band == g.key));
        Ok(Outcome {
            program,
            key: p.terms.key.clone(),
            name: p.terms.name.clone(),
            funded_fen: funded,
            issued_fen: p.issued_fen,
            spent_fen: p.spent_fen,
            settled_fen: p.settled_fen,
            returned_fen: p.returned_fen,
            vouchers,
            cost_cut_bp: share_bp(i128::from(usage.voucher_fen.fen()), i128::from(usage.cost_fen.fen())),
            domestic_share_bp: share_bp(i128::from(domestic_seconds), i128::from(usage.gpu_seconds)),
            enterprise_fen,
            usage,
            by_chip: groups(by_chip),
            by_hub: groups(by_hub),
            by_operator: groups(by_operator),
            served: Served {
                enterprises: spent_by.len() as u64,
                by_kind: groups(by_kind),
                by_region: groups(by_region),
                by_size,
                top10_share_bp: share_bp(top10, total),
                gini: gini(&spent),
            },
            lottery: self.lottery_outcomes(program, |_, _| Ok(Vec::new()))?,
            load: None,
        })
    }
}

impl View {
    /// Each drawn round's additionality: what the drawn and the not drawn bought on the platform
    /// since the draw. `archived(enterprises, since)` answers their spending on archived orders
    /// placed since (storage's reader); [`View::outcome`] counts the orders in memory only.
    pub(crate) fn lottery_outcomes(
        &self,
        program: ProgramId,
        mut archived: impl FnMut(&[u64], i64) -> Result<Vec<(u64, i64)>>,
    ) -> Result<Vec<RoundOutcome>> {
        let s = self.state();
        let Some(p) = s.programs.get(&program) else { return Ok(Vec::new()) };
        let mut rounds = Vec::new();
        for round in &p.lotteries {
            let Some(drawn_at) = round.drawn_at_s else { continue };
            let enterprise_of = |application: &ApplicationId| s.applications.get(application).map(|a| a.enterprise);
            let enterprises: Vec<u64> =
                round.participants.iter().filter_map(|(a, _)| enterprise_of(a)).map(|e| e.get()).collect();
            let mut spent: BTreeMap<EnterpriseId, i64> = BTreeMap::new();
            for (enterprise, fen) in archived(&enterprises, drawn_at)? {
                *spent.entry(EnterpriseId::new(enterprise).expect("stored ids are positive")).or_default() += fen;
            }
            for o in s.orders.values().filter(|o| o.placed_at_s >= drawn_at) {
                if let Some(sum) = spent.get_mut(&o.enterprise) {
                    *sum += o.cost_fen.fen();
                } else if enterprises.contains(&o.enterprise.get()) {
                    spent.insert(o.enterprise, o.cost_fen.fen());
                }
            }
            let bought = |application: &ApplicationId| -> f64 {
                enterprise_of(application).and_then(|e| spent.get(&e)).map_or(0.0, |&fen| fen as f64)
            };
            let drawn: Vec<f64> = round.drawn.iter().map(bought).collect();
            let control: Vec<f64> = round
                .participants
                .iter()
                .filter(|(id, _)| !round.drawn.contains(id))
                .map(|(id, _)| bought(id))
                .collect();
            rounds.push(RoundOutcome {
                round: round.round,
                drawn_at_s: drawn_at,
                participants: round.participants.len() as u32,
                drawn: drawn.len() as u32,
                not_drawn: control.len() as u32,
                verified: crate::lottery::check_round(round).is_ok(),
                bought: crate::evaluation::welch(&drawn, &control),
            });
        }
        Ok(rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_of_hand_computed_shares() {
        assert_eq!(gini(&[]), None);
        assert_eq!(gini(&[0, 0]), None);
        assert_eq!(gini(&[5, 5, 5, 5]), Some(0.0));
        // One of four holds everything: (2·4·x)/(4·x) − 5/4 = 0.75.
        assert_eq!(gini(&[0, 0, 0, 100]), Some(0.75));
        // 1, 2, 3: (2·(1+4+9))/(3·6) − 4/3 = 28/18 − 24/18 = 2/9.
        assert!((gini(&[3, 1, 2]).unwrap() - 2.0 / 9.0).abs() < 1e-12);
    }
}
