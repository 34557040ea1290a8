//! The service through its public surface: a whole programme end to end, and every refusal path
//! with proof that it changed nothing.

mod archive;
mod group;
mod issue16_outside;
mod lottery;
mod outcome;
mod properties;
mod refusals;
mod schedule;
mod shanghai;
mod signing;
mod tiers;
mod trading;
mod usage_bounds;
mod work;

use std::path::PathBuf;
use std::sync::Arc;

use suanli_domain::{ApplicantKind, EnterpriseId, Fen, PoolId, ProgramId, ProviderId, RegionCode, Uscc};
use suanli_service::calendar::shanghai_midnight;
use suanli_service::model::OperatorKind;
use suanli_service::{Actor, EnterpriseInput, ErrorCode, ManualClock, PoolInput, Service, ServiceError, SiteSpec};
use suanli_store::FsyncMode;
use suanli_store::scratch::ScratchDatabase;

/// A fresh database, a clock that moves only when told, and the service over both.
pub struct World {
    pub service: Service,
    pub clock: ManualClock,
    pub path: PathBuf,
    /// The database URL when the world runs on PostgreSQL; dropped after the service.
    pub postgres: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
}

impl World {
    /// Starts at `2026-03-01 09:00` Asia/Shanghai.
    pub fn start() -> World {
        World::start_with(FsyncMode::Full)
    }

    /// On SQLite with `fsync`, or on PostgreSQL in a conformance test's PostgreSQL run.
    pub fn start_with(fsync: FsyncMode) -> World {
        if suanli_store::scratch::postgres_requested() {
            return World::start_postgres().expect("the PostgreSQL run has SUANLI_TEST_POSTGRES");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suanli.db");
        let clock = ManualClock::new(at(2026, 3, 1) + 9 * 3600);
        let service = Service::open_with(&path, fsync, Arc::new(clock.clone())).unwrap();
        World { service, clock, path, postgres: None, _dir: dir }
    }

    /// The same world on a fresh PostgreSQL database, or `None` when `SUANLI_TEST_POSTGRES` is
    /// unset (the conformance tests then run on SQLite only).
    pub fn start_postgres() -> Option<World> {
        let database = ScratchDatabase::from_test_env()?;
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(at(2026, 3, 1) + 9 * 3600);
        let service = Service::open_database(&database.url, Arc::new(clock.clone())).unwrap();
        Some(World { service, clock, path: dir.path().join("unused"), postgres: Some(database), _dir: dir })
    }

    /// Closes and reopens the database, as a restart would.
    pub fn restart(&mut self) {
        let clock = Arc::new(self.clock.clone());
        // One writer per database: the old service lets go of the lock before the new one
        // opens (a placeholder on a scratch file takes its place meanwhile).
        let placeholder =
            Service::open_with(&self.path.with_extension("placeholder.db"), FsyncMode::Normal, clock.clone()).unwrap();
        drop(std::mem::replace(&mut self.service, placeholder));
        let reopened = match &self.postgres {
            Some(database) => Service::open_database(&database.url, clock).unwrap(),
            None => Service::open(&self.path, clock).unwrap(),
        };
        self.service = reopened;
    }

    pub fn enterprise(&mut self, n: u32, revenue_yuan: i64, kind: ApplicantKind, research: &[&str]) -> EnterpriseId {
        let input = EnterpriseInput {
            uscc: uscc("310115", n),
            name: format!("Enterprise {n}"),
            region: RegionCode::parse("310115").unwrap(),
            kind,
            headcount: 80,
            revenue_fen: Fen::from_yuan(revenue_yuan).unwrap(),
            research_projects: research.iter().map(|s| s.to_string()).collect(),
            related_parties: Vec::new(),
        };
        self.service.register_enterprise(&op(), input).unwrap()
    }

    /// A provider with one site and one pool.
    pub fn provider(
        &mut self,
        n: u32,
        region: &str,
        operator: OperatorKind,
        chip: &str,
        domestic: bool,
        price_fen: i64,
    ) -> (ProviderId, PoolId) {
        self.provider_at(n, region, operator, chip, domestic, price_fen, ("test hub", 31.2, 121.5))
    }

    /// A provider with one verified site at `(hub, latitude, longitude)` and one pool of 256 GPUs.
    #[allow(clippy::too_many_arguments)]
    pub fn provider_at(
        &mut self,
        n: u32,
        region: &str,
        operator: OperatorKind,
        chip: &str,
        domestic: bool,
        price_fen: i64,
        (hub, latitude, longitude): (&str, f64, f64),
    ) -> (ProviderId, PoolId) {
        let provider =
            self.service.register_provider(&op(), uscc(region, 900 + n), &format!("Provider {n}"), operator).unwrap();
        let site = self
            .service
            .add_site(
                &op(),
                SiteSpec {
                    provider,
                    name: format!("Site {n}"),
                    hub: hub.to_owned(),
                    region: RegionCode::parse(region).unwrap(),
                    latitude,
                    longitude,
                    operator,
                    power_price_fen_per_kwh: Some(Fen::new(60)),
                    pue: Some(1.25),
                },
            )
            .unwrap();
        // The platform verifies the site's claims (tests of unverified sites add their own).
        self.service.verify_site(&op(), site).unwrap();
        let pool = self
            .service
            .add_pool(
                &op(),
                PoolInput {
                    site,
                    chip: chip.to_owned(),
                    gpu_count: 256,
                    domestic,
                    price_fen_per_gpu_hour: Fen::new(price_fen),
                },
            )
            .unwrap();
        (provider, pool)
    }

    pub fn program(&mut self, source: &str) -> ProgramId {
        let id = self.service.load_program(&op(), source).unwrap();
        self.service.open_program(&op(), id).unwrap();
        id
    }

    /// Everything a refused command must leave as it was: the log, the ledger and the state.
    pub fn fingerprint(&self) -> String {
        let state = self.service.state();
        let ledger = self.service.durable().ledger();
        format!(
            "{} {} {} {}",
            self.service.durable().log_count(),
            suanli_ledger::to_hex(&suanli_ledger::state_hash(ledger)),
            serde_json::to_string(&(&state.programs, &state.applications, &state.vouchers, &state.orders)).unwrap(),
            serde_json::to_string(&(
                &state.pools,
                &state.statements,
                &state.anomalies,
                self.service.state().usage_recorded + self.service.state().usage_refused
            ))
            .unwrap(),
        )
    }

    /// Runs `command`, expects it refused with `code`, and checks nothing changed.
    pub fn refused<T: std::fmt::Debug>(
        &mut self,
        code: ErrorCode,
        command: impl FnOnce(&mut Service) -> Result<T, ServiceError>,
    ) -> String {
        let before = self.fingerprint();
        let error = command(&mut self.service).expect_err("the command must be refused");
        assert_eq!(error.code, code, "{error}");
        assert_eq!(self.fingerprint(), before, "a refused command changed something: {error}");
        error.message
    }
}

pub fn op() -> Actor {
    Actor::operator()
}

pub fn at(year: i32, month: u8, day: u8) -> i64 {
    shanghai_midnight(year, month, day).unwrap()
}

/// A valid USCC of an enterprise registered in `region`, numbered `n`.
pub fn uscc(region: &str, n: u32) -> Uscc {
    Uscc::with_check_characters(&format!("91{region}{n:08}")).unwrap()
}

/// A Shanghai-like programme: 80% of rental fees, 90% on domestic chips, ¥2M per enterprise.
pub const SHANGHAI_LIKE: &str = r#"
key = "shanghai-like"
name = "Shanghai-like compute vouchers"
authority = { region = "310000", name = "Shanghai Municipal Commission of Economy and Informatization" }
budget_fen = 5_000_000_00
subsidy_rate_bp = 8000
domestic_chip_rate_bp = 9000
enterprise_cap_fen = 2_000_000_00
annual_cap_fen = 1_500_000_00
voucher_validity_days = 180
applications_open = 2026-01-01
applications_close = 2026-12-31
applicant_kinds = ["sme", "startup"]
purposes = ["training", "inference", "fine_tuning"]
providers = { rule = "any" }
stacking = { allowed = true, cap_fen = 3_000_000_00 }

[[eligibility]]
name = "revenue-or-research"
rule = "revenue_fen >= 5000000_00 or research_project"

[[eligibility]]
name = "small-enough"
rule = "headcount <= 500"
"#;
