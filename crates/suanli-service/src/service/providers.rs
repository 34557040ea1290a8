//! Providers, their sites and GPU pools.

use super::*;
use crate::model::{NetworkCluster, Ownership, SITE_DISTANCE_FROM_HUB_KM_MAX};

impl Service {
    pub fn register_provider(
        &mut self,
        actor: &Actor,
        uscc: Uscc,
        name: &str,
        operator: OperatorKind,
    ) -> Result<ProviderId> {
        check_text("name", name)?;
        if let Some(existing) = self.state.provider_by_uscc.get(&uscc) {
            return Err(ServiceError::new(
                ErrorCode::AlreadyExists,
                format!("uscc: {uscc} is already registered as {existing}"),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_provider();
        self.ensure_account(&mut change, AccountKind::ProviderDirect, id.get(), 0);
        let provider = NewProvider { id, uscc, name: name.to_owned(), operator };
        self.record(&mut change, Event::ProviderRegistered { provider }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    pub fn add_site(&mut self, actor: &Actor, input: SiteSpec) -> Result<SiteId> {
        if !self.state.providers.contains_key(&input.provider) {
            return Err(ServiceError::not_found(input.provider));
        }
        check_text("name", &input.name)?;
        check_text("hub", &input.hub)?;
        if !self.state.network.is_empty() && !self.state.network.iter().any(|c| c.hub.eq_ignore_ascii_case(&input.hub))
        {
            let mut hubs: Vec<&str> = self.state.network.iter().map(|c| c.hub.as_str()).collect();
            hubs.sort_unstable();
            hubs.dedup();
            return Err(ServiceError::field(
                "hub",
                format!("{:?} is not a hub of the imported network; its hubs: {}", input.hub, hubs.join(", ")),
            ));
        }
        if !(-90.0..=90.0).contains(&input.latitude) {
            return Err(ServiceError::field("latitude", "must be between -90 and 90"));
        }
        if !(-180.0..=180.0).contains(&input.longitude) {
            return Err(ServiceError::field("longitude", "must be between -180 and 180"));
        }
        if input.pue.is_some_and(|pue| !(1.0..=3.0).contains(&pue)) {
            return Err(ServiceError::field("pue", "must be between 1.0 and 3.0"));
        }
        if input.power_price_fen_per_kwh.is_some_and(|p| p <= Fen::ZERO) {
            return Err(ServiceError::field("power_price", "must be positive"));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_site();
        let site = NewSite { id, spec: input };
        self.record(&mut change, Event::SiteAdded { site: Box::new(site) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// The platform admin confirms a site's claims (its operator kind and region, as checked
    /// against the provider's papers): only then does the site count as government-run or as
    /// within a region for a programme's provider rule.
    pub fn verify_site(&mut self, actor: &Actor, id: SiteId) -> Result<()> {
        let site = self.state.sites.get(&id).ok_or_else(|| ServiceError::not_found(id))?;
        if site.verified_at_s.is_some() {
            return Err(ServiceError::new(ErrorCode::AlreadyExists, format!("site: {id} is verified already")));
        }
        // With the network imported, a site is verified only near a cluster of the hub it names
        // (a site claiming Shanghai's hub at Inner Mongolia's coordinates is not).
        if !self.state.network.is_empty() {
            let nearest = self
                .state
                .network
                .iter()
                .filter(|c| c.hub.eq_ignore_ascii_case(&site.spec.hub))
                .map(|c| (c.distance_km(site.spec.latitude, site.spec.longitude), c.id.clone()))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match nearest {
                None => {
                    return Err(ServiceError::field("hub", format!("{:?} is not a hub of the network", site.spec.hub)));
                }
                Some((km, cluster)) if km > SITE_DISTANCE_FROM_HUB_KM_MAX => {
                    return Err(ServiceError::field(
                        "latitude",
                        format!(
                            "{id} lies {km:.0} km from {cluster}, the nearest cluster of hub {}; a verified site is within \
                             {SITE_DISTANCE_FROM_HUB_KM_MAX:.0} km of one",
                            site.spec.hub
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::SiteVerified { site: id }, now);
        self.commit(actor, now, change)
    }

    /// Records the registry of hubs and clusters a site's hub is checked against (the national
    /// network of `data/network.csv` by default), replacing any imported before.
    pub fn import_network(&mut self, actor: &Actor, clusters: Vec<NetworkCluster>) -> Result<usize> {
        if clusters.is_empty() || clusters.len() > 10_000 {
            return Err(ServiceError::field("clusters", "must hold 1 to 10000 clusters"));
        }
        for (i, cluster) in clusters.iter().enumerate() {
            check_text(&format!("clusters[{i}].id"), &cluster.id)?;
            check_text(&format!("clusters[{i}].hub"), &cluster.hub)?;
            if !(-90.0..=90.0).contains(&cluster.latitude) || !(-180.0..=180.0).contains(&cluster.longitude) {
                return Err(ServiceError::field(&format!("clusters[{i}]"), "coordinates out of range"));
            }
        }
        let count = clusters.len();
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::NetworkImported { clusters }, now);
        self.commit(actor, now, change)?;
        Ok(count)
    }

    pub fn add_pool(&mut self, actor: &Actor, input: PoolInput) -> Result<PoolId> {
        if !self.state.sites.contains_key(&input.site) {
            return Err(ServiceError::not_found(input.site));
        }
        check_text("chip", &input.chip)?;
        let chip = crate::chips::require("chip", &input.chip)?;
        if input.domestic != chip.domestic {
            return Err(ServiceError::field(
                "domestic",
                format!(
                    "{} is {}a domestic chip in the chip registry ({}); a pool takes its domestic flag from the registry",
                    chip.name,
                    if chip.domestic { "" } else { "not " },
                    chip.vendor
                ),
            ));
        }
        if input.gpu_count == 0 || input.gpu_count > 1_000_000 {
            return Err(ServiceError::field("gpus", "must be between 1 and 1000000"));
        }
        if input.price_fen_per_gpu_hour <= Fen::ZERO {
            return Err(ServiceError::field("price", "must be positive"));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_pool();
        let pool = NewPool {
            id,
            site: input.site,
            chip: chip.name.clone(),
            gpu_count: input.gpu_count,
            domestic: chip.domestic,
            price_fen_per_gpu_hour: input.price_fen_per_gpu_hour,
        };
        self.record(&mut change, Event::PoolAdded { pool }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// Changes a pool's size or list price for orders placed from now on (an order keeps the
    /// price it was quoted). A pool never shrinks below the GPUs its orders hold.
    pub fn change_pool(&mut self, actor: &Actor, id: PoolId, gpus: Option<u32>, price: Option<Fen>) -> Result<()> {
        let pool = self.state.pools.get(&id).ok_or_else(|| ServiceError::not_found(id))?;
        if pool.retired_at_s.is_some() {
            return Err(ServiceError::new(ErrorCode::PoolRetired, format!("pool: {id} is retired")));
        }
        if gpus.is_none() && price.is_none() {
            return Err(ServiceError::field("gpus", "give the new GPU count, the new price, or both"));
        }
        let gpu_count = gpus.unwrap_or(pool.gpu_count);
        if gpu_count == 0 || gpu_count > 1_000_000 {
            return Err(ServiceError::field("gpus", "must be between 1 and 1000000"));
        }
        if gpu_count < pool.gpus_reserved {
            return Err(ServiceError::new(
                ErrorCode::PoolCapacityExceeded,
                format!(
                    "gpus: {id} has {} GPUs held by its orders; it cannot shrink to {gpu_count}",
                    pool.gpus_reserved
                ),
            ));
        }
        let price_fen_per_gpu_hour = price.unwrap_or(pool.price_fen_per_gpu_hour);
        if price_fen_per_gpu_hour <= Fen::ZERO {
            return Err(ServiceError::field("price", "must be positive"));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::PoolChanged { pool: id, gpu_count, price_fen_per_gpu_hour }, now);
        self.commit(actor, now, change)
    }

    /// Retires a pool: no new order is placed on it; the orders on it run to their end.
    pub fn retire_pool(&mut self, actor: &Actor, id: PoolId) -> Result<()> {
        let pool = self.state.pools.get(&id).ok_or_else(|| ServiceError::not_found(id))?;
        if pool.retired_at_s.is_some() {
            return Err(ServiceError::new(ErrorCode::PoolRetired, format!("pool: {id} is already retired")));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::PoolRetired { pool: id }, now);
        self.commit(actor, now, change)
    }
}

impl Service {
    /// Records who controls an enterprise or a provider (`party`: `ent-N` or `prv-N`): its legal
    /// representative's identity number (only its SHA-256 is kept) and its organisational
    /// shareholders' USCCs. A later declaration replaces an earlier one.
    pub fn declare_ownership(
        &mut self,
        actor: &Actor,
        party: &str,
        legal_representative_id: Option<&str>,
        shareholders: Vec<Uscc>,
    ) -> Result<()> {
        let known = match party.split_once('-') {
            Some(("ent", _)) => EnterpriseId::parse(party).is_ok_and(|id| self.state.enterprises.contains_key(&id)),
            Some(("prv", _)) => ProviderId::parse(party).is_ok_and(|id| self.state.providers.contains_key(&id)),
            _ => return Err(ServiceError::field("party", "must be an enterprise (ent-N) or a provider (prv-N)")),
        };
        if !known {
            return Err(ServiceError::not_found(party));
        }
        if shareholders.len() > 100 {
            return Err(ServiceError::field("shareholders", "at most 100"));
        }
        let legal_representative_sha256 = match legal_representative_id {
            Some(id) => {
                let id = id.trim().to_ascii_uppercase();
                if id.len() < 6 || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(ServiceError::field(
                        "legal_representative_id",
                        "must be 6-64 letters and digits (an identity or passport number)",
                    ));
                }
                Some(crate::access::sha256_hex(&id))
            }
            None => None,
        };
        let mut shareholders = shareholders;
        shareholders.sort_by_key(ToString::to_string);
        shareholders.dedup();
        let ownership = Ownership { legal_representative_sha256, shareholders };
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::OwnershipDeclared { party: party.to_owned(), ownership }, now);
        self.commit(actor, now, change)
    }
}

impl View {
    /// Why an enterprise and a provider are related parties, found from what both declared (or
    /// what the enterprise named itself), or `None`.
    pub fn related(&self, enterprise: &Enterprise, provider: &Provider) -> Vec<String> {
        let mut found = Vec::new();
        if enterprise.related_parties.contains(&provider.uscc) {
            found.push(format!(
                "{} lists provider {} ({}) as a related party",
                enterprise.id, provider.id, provider.uscc
            ));
        }
        let none = Ownership::default();
        let ours = self.state.ownership.get(&enterprise.id.to_string()).unwrap_or(&none);
        let theirs = self.state.ownership.get(&provider.id.to_string()).unwrap_or(&none);
        if let (Some(a), Some(b)) = (&ours.legal_representative_sha256, &theirs.legal_representative_sha256)
            && a == b
        {
            found.push(format!("{} and {} declare the same legal representative", enterprise.id, provider.id));
        }
        for shared in ours.shareholders.iter().filter(|u| theirs.shareholders.contains(u)) {
            found.push(format!("{} and {} share the shareholder {shared}", enterprise.id, provider.id));
        }
        if theirs.shareholders.contains(&enterprise.uscc) {
            found.push(format!("{} is a shareholder of provider {}", enterprise.id, provider.id));
        }
        if ours.shareholders.contains(&provider.uscc) {
            found.push(format!("provider {} is a shareholder of {}", provider.id, enterprise.id));
        }
        found
    }
}

impl View {
    pub(super) fn provider_of_pool(&self, pool: &Pool) -> (&Site, &Provider) {
        let site = &self.state.sites[&pool.site];
        (site, &self.state.providers[&site.spec.provider])
    }
}

impl View {
    /// Whether `program`'s provider rule allows `pool`, and if not, why.
    pub(crate) fn provider_allowed(&self, program: &Program, pool: &Pool) -> Result<()> {
        let (site, provider) = self.provider_of_pool(pool);
        let refusal = match &program.terms.providers {
            ProviderRule::Any => None,
            ProviderRule::GovernmentRun if site.verified_at_s.is_none() => Some(format!(
                "{} claims a {} operator, not verified by the platform; {} allows verified government-run sites only",
                site.id,
                site.spec.operator.as_str(),
                program.id
            )),
            ProviderRule::GovernmentRun => (site.spec.operator != OperatorKind::Government).then(|| {
                format!(
                    "{} is run by a {} operator; {} allows government-run sites only",
                    site.id,
                    site.spec.operator.as_str(),
                    program.id
                )
            }),
            ProviderRule::Listed { providers } => (!providers.contains(&provider.uscc))
                .then(|| format!("{} ({}) is not among {}'s listed providers", provider.id, provider.uscc, program.id)),
            ProviderRule::WithinRegion if site.verified_at_s.is_none() => Some(format!(
                "{} claims region {}, not verified by the platform; {} allows verified sites within {} only",
                site.id, site.spec.region, program.id, program.terms.authority_region
            )),
            ProviderRule::WithinRegion => (!site.spec.region.within(program.terms.authority_region)).then(|| {
                format!(
                    "{} is in region {}, outside {}'s region {}",
                    site.id, site.spec.region, program.id, program.terms.authority_region
                )
            }),
        };
        match refusal {
            None => Ok(()),
            Some(message) => Err(ServiceError::new(ErrorCode::ProviderNotAllowed, format!("pool: {message}"))),
        }
    }
}
