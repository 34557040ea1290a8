//! Placing through the scheduling hierarchy (`crate::tiers`): a programme that names tiers has its
//! orders tried in each, lowest first, each with the sites of that tier's area around the
//! programme's authority; the first tier that can serve an order serves it, and every tier below
//! is named with why it could not. A programme without tiers places on the whole network at once.

use suanli_placement::{Exclusion, Order, PoolVerdict, Problem};

use super::choose::{Market, Network, describe};
use super::{PoolRequest, View};
use crate::error::Result;
use crate::model::Program;
use crate::tiers::{Area, Tier, area};

/// One step of the hierarchy an order is tried at: the tier's area, or the whole network for a
/// programme without tiers.
#[derive(Clone, Debug)]
pub(super) struct Step {
    /// The tier (national for a programme without tiers).
    pub(super) tier: Tier,
    pub(super) area: Option<Area>,
    /// Why the step is skipped without solving (no such area, or no site beyond the step below).
    pub(super) empty: Option<String>,
}

impl Step {
    pub(super) fn label(&self) -> Option<String> {
        self.area.as_ref().map(Area::label)
    }
}

/// The steps of `program`'s orders, lowest first.
pub(super) fn steps(view: &View, program: &Program, network: &Network) -> Vec<Step> {
    let Some(terms) = program.terms.tiers else { return vec![Step { tier: Tier::National, area: None, empty: None }] };
    let home = program.terms.authority_region;
    let mut steps: Vec<Step> = Vec::new();
    let mut below: Option<(String, Vec<usize>)> = None;
    for tier in terms.tiers() {
        let Some(area) = area(tier, home) else {
            let why = format!("{}: the data names no such area around {home}", tier.as_str());
            steps.push(Step { tier, area: None, empty: Some(why) });
            continue;
        };
        let sites = view.sites_in(program, network, Some(&area));
        let empty = match &below {
            _ if sites.is_empty() => Some(format!("{}: no site in it that {} allows", area.label(), program.id)),
            Some((label, lower)) if *lower == sites => {
                Some(format!("{}: no site beyond those of {label}", area.label()))
            }
            _ => None,
        };
        below = Some((area.label(), sites));
        steps.push(Step { tier, area: Some(area), empty });
    }
    steps
}

impl View {
    /// A programme with tiers places no order above its highest tier, pinned or not: the pool's
    /// site must lie, by its verified region, in the largest area of its tiers.
    pub(super) fn within_highest_tier(&self, program: &Program, pool: &crate::model::Pool) -> Result<()> {
        let Some(terms) = program.terms.tiers else { return Ok(()) };
        let Some(widest) = terms.tiers().filter_map(|tier| area(tier, program.terms.authority_region)).last() else {
            return Ok(());
        };
        let site = &self.state.sites[&pool.site];
        if widest.tier == Tier::National || (site.verified_at_s.is_some() && widest.contains(site.spec.region)) {
            return Ok(());
        }
        Err(crate::error::ServiceError::new(
            crate::error::ErrorCode::ProviderNotAllowed,
            format!(
                "pool: {} is at {}, {}, outside {}, the highest tier {} allows",
                pool.id,
                site.id,
                site.spec.region,
                widest.label(),
                program.id
            ),
        ))
    }

    /// The sites (as the engine numbers them) of `network` that `program`'s provider rule allows,
    /// within `area` when given.
    pub(super) fn sites_in(&self, program: &Program, network: &Network, area: Option<&Area>) -> Vec<usize> {
        let state = &self.state;
        let mut sites: Vec<usize> = network
            .pool_ids
            .iter()
            .map(|id| &state.pools[id])
            .filter(|pool| self.provider_allowed(program, pool).is_ok())
            // A site counts in an area by its region as the platform verified it.
            .filter(|pool| {
                let site = &state.sites[&pool.site];
                area.is_none_or(|a| {
                    a.tier == crate::tiers::Tier::National
                        || (site.verified_at_s.is_some() && a.contains(site.spec.region))
                })
            })
            .map(|pool| network.site_index[&pool.site])
            .collect();
        sites.sort_unstable();
        sites.dedup();
        sites
    }

    /// The engine's answer for one order through `program`'s tiers: the step that served it (the
    /// last tried when none did), the problem and solution there, and why each step below could
    /// not serve it.
    pub(super) fn engine_tiered(
        &self,
        request: &PoolRequest,
        market: &Market,
        program: &Program,
    ) -> Result<(Option<String>, Problem, suanli_placement::solve::Solution, Vec<String>)> {
        let steps = steps(self, program, &market.network);
        let mut escalated = Vec::new();
        let mut last = None;
        for step in &steps {
            if let Some(why) = &step.empty {
                escalated.push(why.clone());
                continue;
            }
            let order = self.engine_order(request, &market.network, "order".to_owned(), step.area.as_ref())?;
            let problem = market.problem(vec![order], self.placement_policy);
            let solution = suanli_placement::solve(
                &problem,
                &suanli_placement::Limits { solve_ms_max: 200, ..suanli_placement::Limits::default() },
            );
            if solution.pool_of[0].is_some() {
                return Ok((step.label(), problem, solution, escalated));
            }
            if let Some(label) = step.label() {
                escalated.push(step_reason(&label, &problem, &solution, 0));
            }
            last = Some((step.label(), problem, solution));
        }
        match last {
            Some((label, problem, solution)) => Ok((label, problem, solution, escalated)),
            // Every step was empty: the whole area the programme allows has no site for it.
            None => {
                let order = self.engine_order(request, &market.network, "order".to_owned(), None)?;
                let order = Order { sites_allowed: Some(Vec::new()), ..order };
                let problem = market.problem(vec![order], self.placement_policy);
                let solution = suanli_placement::solve(&problem, &suanli_placement::Limits::default());
                Ok((None, problem, solution, escalated))
            }
        }
    }
}

/// Why a tier could not serve order `index`: the verdict of each pool inside the tier's area (the
/// pools outside it are not named).
pub(super) fn step_reason(
    label: &str,
    problem: &Problem,
    solution: &suanli_placement::solve::Solution,
    index: usize,
) -> String {
    let explanation = suanli_placement::explain(problem, solution, index);
    let reasons: Vec<String> = explanation
        .pools
        .iter()
        .filter_map(|(pool, verdict)| match verdict {
            PoolVerdict::Excluded(Exclusion::SiteNotAllowed { .. }) => None,
            PoolVerdict::Excluded(why) => Some(format!("{pool}: {}", describe(why))),
            PoolVerdict::Full { gpus_left, .. } => Some(format!("{pool}: only {gpus_left} GPUs free")),
            other => Some(format!("{pool}: {other:?}")),
        })
        .collect();
    format!("{label}: {}", reasons.join("; "))
}
