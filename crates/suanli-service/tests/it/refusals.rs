//! Every refusal path: the stable code, a message naming the field, and nothing changed.

use suanli_domain::{
    ApplicantKind, ApplicationId, EnterpriseId, Fen, PoolId, ProgramId, ProviderId, RegionCode, VoucherId,
};
use suanli_service::calendar::YearMonth;
use suanli_service::model::{OperatorKind, Purpose, UsageInput, UsageOutcome};
use suanli_service::{EnterpriseInput, ErrorCode, OrderInput};

use crate::{SHANGHAI_LIKE, World, at, op, uscc};

fn yuan(amount: i64) -> Fen {
    Fen::from_yuan(amount).unwrap()
}

/// A world with the Shanghai-like programme open, one eligible enterprise holding a ¥1M voucher,
/// and a government-run Shanghai pool.
struct Setup {
    w: World,
    program: ProgramId,
    enterprise: EnterpriseId,
    voucher: VoucherId,
    provider: ProviderId,
    pool: PoolId,
}

fn setup() -> Setup {
    let mut w = World::start();
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = submitted(&mut w, enterprise, program, 1_000_000);
    let voucher = w.service.approve_application(&op(), app, yuan(1_000_000)).unwrap();
    let (provider, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_800);
    Setup { w, program, enterprise, voucher, provider, pool }
}

fn submitted(w: &mut World, enterprise: EnterpriseId, program: ProgramId, amount: i64) -> ApplicationId {
    let app = w.service.create_application(&op(), enterprise, program, yuan(amount), "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    app
}

impl Setup {
    /// A maker of orders on the setup's voucher and pool, owning copies of the ids.
    fn orders(&self) -> impl Fn(u32) -> OrderInput + use<> {
        let (enterprise, voucher, pool) = (self.enterprise, self.voucher, self.pool);
        move |gpus| OrderInput {
            enterprise,
            voucher,
            pool,
            chip: None,
            gpu_count: gpus,
            hours: 10,
            purpose: Purpose::Training,
        }
    }
}

fn bad_programme_files_are_refused_with_the_field() {
    let mut w = World::start();
    let cases: &[(&str, &str, &str)] = &[
        ("subsidy_rate_bp = 8000", "subsidy_rate_bp = 12000", "subsidy_rate_bp: rate must be between 0 and 10000"),
        ("budget_fen = 5_000_000_00", "budget_fen = -5", "budget_fen: amount must be positive"),
        ("budget_fen = 5_000_000_00", "budget_fen = 99999999999999999999", "budget_fen"),
        ("region = \"310000\"", "region = \"990000\"", "authority.region"),
        ("applicant_kinds = [\"sme\", \"startup\"]", "applicant_kinds = [\"giant\"]", "applicant_kinds[0]"),
        ("purposes = [\"training\", \"inference\", \"fine_tuning\"]", "purposes = [\"mining\"]", "purposes[0]"),
        ("providers = { rule = \"any\" }", "providers = { rule = \"listed\" }", "providers.providers"),
        ("providers = { rule = \"any\" }", "providers = { rule = \"some\" }", "providers.rule"),
        ("domestic_chip_rate_bp = 9000", "domestic_chip_rate_bp = 7000", "domestic_chip_rate_bp"),
        ("applications_close = 2026-12-31", "applications_close = 2025-12-31", "applications_close"),
        ("applications_close = 2026-12-31", "applications_close = 2026-12-31T10:00:00", "applications_close"),
        ("enterprise_cap_fen = 2_000_000_00", "enterprise_cap_fen = 9_000_000_00", "enterprise_cap_fen"),
        ("voucher_validity_days = 180", "voucher_validity_days = 0", "voucher_validity_days"),
        ("key = \"shanghai-like\"", "key = \"Shanghai Like\"", "key"),
        (
            "name = \"Shanghai-like compute vouchers\"",
            "name = \"Vouchers\\u0000\"",
            "name: must not contain control characters",
        ),
        (
            "name = \"Shanghai-like compute vouchers\"",
            "name = \"Two\\nlines\"",
            "name: must not contain control characters",
        ),
        ("rule = \"headcount <= 500\"", "rule = \"headcount <= \"", "eligibility[1].rule (small-enough): at column 14"),
        (
            "voucher_validity_days = 180",
            "voucher_validity_days = 180\nvoucher_colour = \"red\"",
            "unknown field `voucher_colour`",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(SHANGHAI_LIKE.contains(from), "{from}");
        let source = SHANGHAI_LIKE.replace(from, to);
        let message = w.refused(ErrorCode::ProgramFileInvalid, |s| s.load_program(&op(), &source));
        assert!(message.contains(expected), "{to}: {message}");
    }
    let program = w.service.load_program(&op(), SHANGHAI_LIKE).unwrap();
    assert_eq!(
        w.service.load_program(&op(), SHANGHAI_LIKE).unwrap(),
        program,
        "loading the same file again is a no-op"
    );
    let changed = SHANGHAI_LIKE.replace("subsidy_rate_bp = 8000", "subsidy_rate_bp = 7000");
    w.refused(ErrorCode::ProgramExists, |s| s.load_program(&op(), &changed));
    w.service.open_program(&op(), program).unwrap();
    w.refused(ErrorCode::ProgramState, |s| s.open_program(&op(), program));
    w.refused(ErrorCode::ProgramState, |s| s.finish_program(&op(), program));
}

fn applications_outside_the_window_or_the_programme_state_are_refused() {
    let mut w = World::start();
    let draft = w.service.load_program(&op(), SHANGHAI_LIKE).unwrap();
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = w.service.create_application(&op(), enterprise, draft, yuan(100), "").unwrap();
    w.refused(ErrorCode::ProgramState, |s| s.submit_application(&op(), app));
    w.service.open_program(&op(), draft).unwrap();
    w.clock.set(at(2027, 1, 1));
    let message = w.refused(ErrorCode::ApplicationWindowClosed, |s| s.submit_application(&op(), app));
    assert!(message.starts_with("submitted_at: 2027-01-01T00:00:00+08:00 is outside"), "{message}");
    w.clock.set(at(2027, 1, 1) - 1);
    w.service.submit_application(&op(), app).unwrap();
    w.refused(ErrorCode::ApplicationState, |s| s.submit_application(&op(), app));
    w.refused(ErrorCode::AmountAboveRequest, |s| s.approve_application(&op(), app, yuan(101)));
    w.refused(ErrorCode::InvalidField, |s| s.approve_application(&op(), app, Fen::ZERO));
    w.refused(ErrorCode::InvalidField, |s| s.reject_application(&op(), app, " "));
    w.refused(ErrorCode::EnterpriseCapExceeded, |s| {
        s.create_application(&op(), enterprise, draft, yuan(3_000_000), "")
    });
    w.refused(ErrorCode::NotFound, |s| s.create_application(&op(), EnterpriseId::new(99).unwrap(), draft, yuan(1), ""));
    w.service.withdraw_application(&op(), app).unwrap();
    w.refused(ErrorCode::ApplicationState, |s| s.withdraw_application(&op(), app));
    w.refused(ErrorCode::ApplicationState, |s| s.approve_application(&op(), app, yuan(1)));
}

fn approvals_beyond_budget_follow_submission_order() {
    let mut w = World::start();
    let source = SHANGHAI_LIKE.replace("budget_fen = 5_000_000_00", "budget_fen = 3_000_000_00");
    let program = w.program(&source);
    let first = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let second = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let app_first = submitted(&mut w, first, program, 2_000_000);
    w.clock.advance(60);
    let app_second = submitted(&mut w, second, program, 2_000_000);
    // ¥3M left, ¥2M owed to the earlier application: the later one may take only ¥1M now.
    let message = w.refused(ErrorCode::BudgetReservedForEarlierApplications, |s| {
        s.approve_application(&op(), app_second, yuan(1_500_000))
    });
    assert!(message.contains(&app_first.to_string()), "{message}");
    w.service.approve_application(&op(), app_first, yuan(2_000_000)).unwrap();
    let message = w.refused(ErrorCode::BudgetExceeded, |s| s.approve_application(&op(), app_second, yuan(1_500_000)));
    assert!(message.contains("¥1,000,000.00 left"), "{message}");
    w.service.approve_application(&op(), app_second, yuan(1_000_000)).unwrap();
    assert_eq!(w.service.program(program).unwrap().budget_remaining_fen, Fen::ZERO);
    assert_eq!(w.service.check_books(), Vec::<String>::new());
}

fn the_stacking_rule_and_its_cap_hold_across_programmes() {
    let mut w = World::start();
    let open = w.program(SHANGHAI_LIKE);
    let exclusive = w.program(
        &SHANGHAI_LIKE
            .replace("key = \"shanghai-like\"", "key = \"exclusive\"")
            .replace("stacking = { allowed = true, cap_fen = 3_000_000_00 }", "stacking = { allowed = false }"),
    );
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let a = submitted(&mut w, enterprise, open, 2_000_000);
    w.service.approve_application(&op(), a, yuan(2_000_000)).unwrap();
    // Refused at submission: the stacking rule would refuse it any amount.
    let b = w.service.create_application(&op(), enterprise, exclusive, yuan(500_000), "").unwrap();
    w.refused(ErrorCode::StackingNotAllowed, |s| s.submit_application(&op(), b));

    let third = w.program(&SHANGHAI_LIKE.replace("key = \"shanghai-like\"", "key = \"third\""));
    let c = submitted(&mut w, enterprise, third, 1_500_000);
    // ¥2M held plus ¥1.5M would pass the ¥3M cap across programmes.
    let message = w.refused(ErrorCode::StackingCapExceeded, |s| s.approve_application(&op(), c, yuan(1_500_000)));
    assert!(message.contains("¥3,500,000.00"), "{message}");
    w.service.approve_application(&op(), c, yuan(1_000_000)).unwrap();
}

/// First come, first served, but an application that can no longer be approved (here: its
/// enterprise took another programme's voucher after submitting, and this programme allows no
/// stacking) holds back no later applicant; it says why.
fn an_application_that_can_never_be_approved_holds_back_no_one() {
    let mut w = World::start();
    let open = w.program(SHANGHAI_LIKE);
    let exclusive = w.program(
        &SHANGHAI_LIKE
            .replace("key = \"shanghai-like\"", "key = \"exclusive\"")
            .replace("budget_fen = 5_000_000_00", "budget_fen = 1_000_000_00")
            .replace("enterprise_cap_fen = 2_000_000_00", "enterprise_cap_fen = 1_000_000_00")
            .replace("stacking = { allowed = true, cap_fen = 3_000_000_00 }", "stacking = { allowed = false }"),
    );
    let first = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let second = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let stuck = submitted(&mut w, first, exclusive, 1_000_000);
    let elsewhere = submitted(&mut w, first, open, 1_000_000);
    w.service.approve_application(&op(), elsewhere, yuan(1_000_000)).unwrap();
    let later = submitted(&mut w, second, exclusive, 1_000_000);
    let application = w.service.application(stuck).unwrap().clone();
    let program = w.service.program(exclusive).unwrap().clone();
    let reason = w.service.blocked_reason(&application, &program).expect("blocked");
    assert!(reason.contains("stacking_not_allowed"), "{reason}");
    w.service.approve_application(&op(), later, yuan(1_000_000)).unwrap();
    w.refused(ErrorCode::StackingNotAllowed, |s| s.approve_application(&op(), stuck, yuan(1)));
}

/// Facts that decide money come from registries and verification, not declarations.
fn registries_decide_what_providers_and_enterprises_only_claim() {
    let mut w = World::start();
    let gov = w
        .program(&SHANGHAI_LIKE.replace("providers = { rule = \"any\" }", "providers = { rule = \"government_run\" }"));
    let local = w.program(
        &SHANGHAI_LIKE
            .replace("key = \"shanghai-like\"", "key = \"local\"")
            .replace("providers = { rule = \"any\" }", "providers = { rule = \"within_region\" }"),
    );
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let mut vouchers = Vec::new();
    for program in [gov, local] {
        let app = submitted(&mut w, enterprise, program, 1_000_000);
        vouchers.push(w.service.approve_application(&op(), app, yuan(1_000_000)).unwrap());
    }
    // A provider claims a government-run site in Shanghai; nobody has verified it.
    let provider = w.service.register_provider(&op(), uscc("310000", 950), "Claims", OperatorKind::Government).unwrap();
    let spec = suanli_service::SiteSpec {
        provider,
        name: "Claimed".into(),
        hub: "h".into(),
        region: RegionCode::parse("310000").unwrap(),
        latitude: 40.8,
        longitude: 111.7,
        operator: OperatorKind::Government,
        power_price_fen_per_kwh: None,
        pue: None,
    };
    let site = w.service.add_site(&op(), spec).unwrap();
    // Chips: unknown refused; the domestic flag is the registry's; any case matches.
    let pool_input = |chip: &str, domestic: bool| suanli_service::PoolInput {
        site,
        chip: chip.into(),
        gpu_count: 64,
        domestic,
        price_fen_per_gpu_hour: Fen::new(1),
    };
    w.refused(ErrorCode::ChipUnknown, |s| s.add_pool(&op(), pool_input("NotAChip-XYZ", false)));
    let message = w.refused(ErrorCode::InvalidField, |s| s.add_pool(&op(), pool_input("H100", true)));
    assert!(message.starts_with("domestic: H100 is not a domestic chip"), "{message}");
    let pool = w.service.add_pool(&op(), pool_input("h100", false)).unwrap();
    assert_eq!(w.service.state().pools[&pool].chip, "H100");
    let domestic = w.service.add_pool(&op(), pool_input("910b", true)).unwrap();
    assert!(w.service.state().pools[&domestic].domestic);
    let order = |voucher, chip: &str| OrderInput {
        enterprise,
        voucher,
        pool,
        chip: Some(chip.into()),
        gpu_count: 1,
        hours: 1,
        purpose: Purpose::Training,
    };
    // Unverified: neither government-run nor within the region.
    for voucher in &vouchers {
        let message = w.refused(ErrorCode::ProviderNotAllowed, |s| s.quote(&order(*voucher, "h100")));
        assert!(message.contains("not verified by the platform"), "{message}");
    }
    w.service.verify_site(&op(), site).unwrap();
    w.refused(ErrorCode::AlreadyExists, |s| s.verify_site(&op(), site));
    // Verified, and H100 = h100.
    for voucher in &vouchers {
        w.service.quote(&order(*voucher, "h100")).unwrap();
        w.service.quote(&order(*voucher, "H100")).unwrap();
    }
    w.refused(ErrorCode::ChipUnknown, |s| s.quote(&order(vouchers[0], "NotAChip-XYZ")));
    // An enterprise whose claimed region contradicts its USCC is refused.
    let input = EnterpriseInput {
        uscc: uscc("440300", 77),
        name: "Elsewhere".into(),
        region: RegionCode::parse("310115").unwrap(),
        kind: ApplicantKind::Sme,
        headcount: 10,
        revenue_fen: yuan(10_000_000),
        research_projects: Vec::new(),
        related_parties: Vec::new(),
    };
    let message = w.refused(ErrorCode::InvalidField, |s| s.register_enterprise(&op(), input.clone()));
    assert!(message.starts_with("region: 310115 is not where"), "{message}");
    let input = EnterpriseInput { region: RegionCode::parse("440300").unwrap(), ..input };
    w.service.register_enterprise(&op(), input).unwrap();
}

/// Related parties found from data: an enterprise and a provider that declare a common
/// shareholder, or the same legal representative, are flagged when one buys from the other.
fn related_parties_are_found_from_both_sides_declarations() {
    let mut s = setup();
    let order = s.orders();
    let holding = uscc("310000", 4242);
    let party = |id: String| id;
    s.w.service
        .declare_ownership(&op(), &party(s.enterprise.to_string()), Some("310101199001011234"), vec![holding])
        .unwrap();
    let placed = s.w.service.place_order(&op(), order(1)).unwrap();
    assert!(s.w.service.order(placed).unwrap().flags.is_empty(), "the provider declared nothing yet");
    s.w.service
        .declare_ownership(&op(), &party(s.provider.to_string()), Some("310101199001011234"), vec![holding])
        .unwrap();
    let placed = s.w.service.place_order(&op(), order(1)).unwrap();
    let flags = &s.w.service.order(placed).unwrap().flags;
    assert!(flags.iter().any(|f| f.contains("share the shareholder")), "{flags:?}");
    assert!(flags.iter().any(|f| f.contains("same legal representative")), "{flags:?}");
    let anomalies: Vec<_> =
        s.w.service
            .state()
            .anomalies
            .iter()
            .filter(|a| a.kind == "related_party" && a.object == placed.to_string())
            .collect();
    assert_eq!(anomalies.len(), 2);
    s.w.refused(ErrorCode::InvalidField, |svc| svc.declare_ownership(&op(), "ath-1", None, Vec::new()));
    s.w.refused(ErrorCode::NotFound, |svc| svc.declare_ownership(&op(), "ent-99", None, Vec::new()));
    s.w.refused(ErrorCode::InvalidField, |svc| svc.declare_ownership(&op(), "ent-1", Some("12"), Vec::new()));
}

/// With the national network imported, a site names a registered hub and is verified only near
/// one of its clusters: a site claiming Shanghai's hub at Inner Mongolia's coordinates is not.
fn sites_are_verified_against_the_imported_network() {
    let mut w = World::start();
    let provider = w.service.register_provider(&op(), uscc("310000", 960), "P", OperatorKind::Government).unwrap();
    let spec = |hub: &str, latitude: f64, longitude: f64| suanli_service::SiteSpec {
        provider,
        name: "S".into(),
        hub: hub.into(),
        region: RegionCode::parse("310000").unwrap(),
        latitude,
        longitude,
        operator: OperatorKind::Government,
        power_price_fen_per_kwh: None,
        pue: None,
    };
    let before = w.service.add_site(&op(), spec("anything", 31.2, 121.5)).unwrap();
    let count = w.service.import_network(&op(), suanli_service::model::NetworkCluster::national()).unwrap();
    assert_eq!(count, 10);
    let message = w.refused(ErrorCode::InvalidField, |s| s.add_site(&op(), spec("Atlantis", 31.2, 121.5)));
    assert!(message.starts_with("hub: \"Atlantis\" is not a hub"), "{message}");
    // A site from before the import names no registered hub: it cannot be verified.
    w.refused(ErrorCode::InvalidField, |s| s.verify_site(&op(), before));
    let far = w.service.add_site(&op(), spec("Yangtze River Delta", 40.8, 111.7)).unwrap();
    let message = w.refused(ErrorCode::InvalidField, |s| s.verify_site(&op(), far));
    assert!(message.contains("1211 km from wuhu, the nearest cluster of hub"), "{message}");
    let near = w.service.add_site(&op(), spec("yangtze river delta", 31.2, 121.5)).unwrap();
    w.service.verify_site(&op(), near).unwrap();
}

fn orders_that_break_a_rule_are_refused() {
    let mut s = setup();
    let order = s.orders();
    let other = s.w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let foreign = OrderInput { enterprise: other, ..order(8) };
    s.w.refused(ErrorCode::NotFound, |svc| svc.place_order(&op(), foreign.clone()));
    s.w.refused(ErrorCode::NotFound, |svc| svc.quote(&foreign));
    let data = OrderInput { purpose: Purpose::Data, ..order(8) };
    let message = s.w.refused(ErrorCode::PurposeNotAllowed, |svc| svc.place_order(&op(), data.clone()));
    assert!(message.starts_with("purpose: data"), "{message}");
    let chip = OrderInput { chip: Some("A100".into()), ..order(8) };
    s.w.refused(ErrorCode::ChipNotInPool, |svc| svc.place_order(&op(), chip.clone()));
    s.w.refused(ErrorCode::PoolCapacityExceeded, |svc| svc.place_order(&op(), order(257)));
    s.w.refused(ErrorCode::InvalidField, |svc| svc.place_order(&op(), order(0)));
    let long = OrderInput { hours: 100_000, ..order(8) };
    s.w.refused(ErrorCode::InvalidField, |svc| svc.place_order(&op(), long.clone()));
    let missing = OrderInput { pool: PoolId::new(99).unwrap(), ..order(8) };
    s.w.refused(ErrorCode::NotFound, |svc| svc.place_order(&op(), missing.clone()));

    // Capacity counts GPUs already promised.
    s.w.service.place_order(&op(), order(200)).unwrap();
    let message = s.w.refused(ErrorCode::PoolCapacityExceeded, |svc| svc.place_order(&op(), order(100)));
    assert!(message.contains("only 56 of 256 are free"), "{message}");

    s.w.service.suspend_voucher(&op(), s.voucher, "suspected resale").unwrap();
    s.w.refused(ErrorCode::VoucherState, |svc| svc.place_order(&op(), order(8)));
    s.w.refused(ErrorCode::VoucherState, |svc| svc.suspend_voucher(&op(), s.voucher, "again"));
    s.w.service.reinstate_voucher(&op(), s.voucher).unwrap();
    s.w.clock.set(at(2026, 9, 1));
    s.w.refused(ErrorCode::VoucherExpired, |svc| svc.place_order(&op(), order(8)));
}

fn provider_rules_restrict_where_vouchers_are_spent() {
    for (rule, allowed_pool, message) in [
        ("providers = { rule = \"government_run\" }", 0, "allows government-run sites only"),
        ("providers = { rule = \"within_region\" }", 0, "outside prg-1's region 310000"),
        ("providers = { rule = \"listed\", providers = [\"PROVIDER\"] }", 1, "is not among prg-1's listed providers"),
    ] {
        let mut w = World::start();
        let listed = uscc("640500", 902).to_string();
        let program =
            w.program(&SHANGHAI_LIKE.replace("providers = { rule = \"any\" }", &rule.replace("PROVIDER", &listed)));
        let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
        let app = submitted(&mut w, enterprise, program, 1_000_000);
        let voucher = w.service.approve_application(&op(), app, yuan(1_000_000)).unwrap();
        let (_, shanghai_government) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_800);
        let (_, western_state_owned) = w.provider(2, "640500", OperatorKind::StateOwned, "H100", false, 1_200);
        let pools = [shanghai_government, western_state_owned];
        let input = |pool| OrderInput {
            enterprise,
            voucher,
            pool,
            chip: None,
            gpu_count: 1,
            hours: 1,
            purpose: Purpose::Training,
        };
        let refused =
            w.refused(ErrorCode::ProviderNotAllowed, |svc| svc.place_order(&op(), input(pools[1 - allowed_pool])));
        assert!(refused.contains(message), "{rule}: {refused}");
        w.service.place_order(&op(), input(pools[allowed_pool])).unwrap();
    }
}

fn usage_that_breaks_physics_or_the_order_is_refused_and_the_id_stays_failed() {
    let mut s = setup();
    let order = s.orders();
    let provider = s.provider;
    let placed = s.w.service.place_order(&op(), order(8)).unwrap();
    let start = s.w.service.now_s();
    let record = |id: &str, gpu_seconds, from: i64, to: i64| UsageInput {
        id: id.to_owned(),
        order: placed,
        gpu_seconds,
        period_start_s: start + from,
        period_end_s: start + to,
    };
    let refused_with = |s: &mut Setup, provider, input: UsageInput, code: &str| {
        let outcomes = s.w.service.record_usage(&op(), provider, &[input]).unwrap();
        match &outcomes[0] {
            UsageOutcome::Refused { code: got, message, .. } => {
                assert_eq!(got, code, "{message}");
                message.clone()
            }
            other => panic!("expected {code}, got {other:?}"),
        }
    };
    // Not started yet.
    s.w.clock.advance(3600);
    refused_with(&mut s, provider, record("early", 100, 0, 60), "order_state");
    s.w.service.start_order(&op(), placed).unwrap();
    s.w.refused(ErrorCode::OrderState, |svc| svc.start_order(&op(), placed));
    let started = s.w.service.now_s();
    let record = |id: &str, gpu_seconds, from: i64, to: i64| UsageInput {
        id: id.to_owned(),
        order: placed,
        gpu_seconds,
        period_start_s: started + from,
        period_end_s: started + to,
    };
    s.w.clock.advance(600);
    // Five minutes of clock skew are tolerated; beyond, the record is refused and its id is not
    // burned: sent again once the period has ended, it is recorded.
    let message = refused_with(&mut s, provider, record("future", 100, 120, 901), "usage_in_future");
    assert!(message.starts_with("period_end:"), "{message}");
    assert!(s.w.service.state().anomalies.iter().any(|a| a.kind == "clock_skew"));
    let outcomes = s.w.service.record_usage(&op(), provider, &[record("skewed", 100, 600, 900)]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { .. }), "{outcomes:?}");
    s.w.clock.advance(1);
    let outcomes = s.w.service.record_usage(&op(), provider, &[record("future", 100, 120, 901)]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { .. }), "{outcomes:?}");
    refused_with(&mut s, provider, record("before", 100, -60, 60), "usage_outside_order_run");
    let message = refused_with(&mut s, provider, record("physics", 8 * 60 + 1, 0, 60), "usage_exceeds_physics");
    assert!(message.contains("more than 8 GPUs can run in 60 s"), "{message}");
    refused_with(&mut s, provider, record("negative", -5, 0, 60), "invalid_field");
    refused_with(&mut s, provider, record("backwards", 5, 60, 0), "invalid_field");
    // Two records for the same minute at full load are more than the order's GPUs could run.
    let outcomes = s.w.service.record_usage(&op(), provider, &[record("full", 480, 0, 60)]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { .. }));
    refused_with(&mut s, provider, record("overlap", 480, 0, 60), "usage_exceeds_order_gpus");
    let (other_provider, _) = s.w.provider(2, "310000", OperatorKind::Commercial, "H100", false, 1_800);
    refused_with(&mut s, other_provider, record("elsewhere", 10, 60, 120), "not_found");

    // A refusal that depends on the state is kept: the id stays failed even with a good body.
    let message = refused_with(&mut s, provider, record("physics", 10, 60, 120), "usage_id_already_failed");
    assert!(message.contains("usage_exceeds_physics"), "{message}");
    // Bad input is not kept: the same id with a good body is then recorded.
    let outcomes = s.w.service.record_usage(&op(), provider, &[record("negative", 10, 60, 120)]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { .. }), "{outcomes:?}");
    assert!(s.w.service.state().anomalies.iter().any(|a| a.kind == "usage_exceeds_physics"));
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
    s.w.refused(ErrorCode::InvalidField, |svc| {
        let many: Vec<UsageInput> = (0..4_001).map(|i| record(&format!("m{i}"), 1, 0, 1)).collect();
        svc.record_usage(&op(), provider, &many)
    });
}

/// A voucher with more open orders than a change has legs (once 256 made it unrevocable): every
/// hold is released, one log entry per order, and the books balance.
fn revocation_releases_any_number_of_open_orders() {
    let mut s = setup();
    let order = s.orders();
    let (_, second_pool) = s.w.provider(2, "310000", OperatorKind::Government, "H100", false, 1_800);
    let mut placed = Vec::new();
    for n in 0..300 {
        let mut input = order(1);
        input.hours = 1;
        if n >= 200 {
            input.pool = second_pool;
        }
        placed.push(s.w.service.place_order(&op(), input).unwrap());
    }
    let before = s.w.service.voucher(s.voucher).unwrap();
    assert!(before.held_fen > Fen::ZERO);
    let returned = s.w.service.revoke_voucher(&op(), s.voucher, "resold").unwrap();
    assert_eq!(returned, yuan(1_000_000));
    for id in &placed {
        assert_eq!(s.w.service.order(*id).unwrap().hold_remaining_fen, Fen::ZERO);
    }
    assert_eq!(s.w.service.voucher(s.voucher).unwrap().held_fen, Fen::ZERO);
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
    let before_restart = s.w.fingerprint();
    s.w.restart();
    assert_eq!(s.w.fingerprint(), before_restart, "the releases replay to the same state");
}

/// Tokens stop working when they expire; the lifetime is bounded.
fn tokens_expire() {
    let mut w = World::start();
    let secret = "sl_expiring";
    let hash = suanli_service::access::sha256_hex(secret);
    w.service.issue_token_for(&op(), suanli_service::Role::Auditor, &hash, 3_600).unwrap();
    assert!(w.service.authenticate(secret).is_some());
    w.clock.advance(3_599);
    assert!(w.service.authenticate(secret).is_some());
    w.clock.advance(1);
    assert!(w.service.authenticate(secret).is_none(), "expired");
    let other = suanli_service::access::sha256_hex("sl_other");
    w.refused(ErrorCode::InvalidField, |s| {
        s.issue_token_for(&op(), suanli_service::Role::Auditor, &other, 400 * 86_400)
    });
    w.refused(ErrorCode::InvalidField, |s| s.issue_token_for(&op(), suanli_service::Role::Auditor, &other, 0));
}

fn revocation_releases_holds_and_returns_the_balance() {
    let mut s = setup();
    let order = s.orders();
    let provider = s.provider;
    let placed = s.w.service.place_order(&op(), order(8)).unwrap();
    s.w.service.start_order(&op(), placed).unwrap();
    let hold = s.w.service.order(placed).unwrap().hold_fen;
    assert!(hold > Fen::ZERO);
    let returned = s.w.service.revoke_voucher(&op(), s.voucher, "voucher resold on a grey market").unwrap();
    assert_eq!(returned, yuan(1_000_000));
    assert_eq!(s.w.service.order(placed).unwrap().hold_remaining_fen, Fen::ZERO);
    s.w.refused(ErrorCode::VoucherState, |svc| svc.revoke_voucher(&op(), s.voucher, "again"));
    s.w.refused(ErrorCode::VoucherState, |svc| svc.place_order(&op(), order(1)));
    // The order runs on at the enterprise's full cost.
    s.w.clock.advance(3600);
    let started = s.w.service.order(placed).unwrap().started_at_s.unwrap();
    let input = UsageInput {
        id: "after".into(),
        order: placed,
        gpu_seconds: 8 * 3600,
        period_start_s: started,
        period_end_s: started + 3600,
    };
    let outcomes = s.w.service.record_usage(&op(), provider, &[input]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { voucher_part_fen: Fen::ZERO, .. }), "{outcomes:?}");
    s.w.service.complete_order(&op(), placed).unwrap();
    s.w.refused(ErrorCode::OrderState, |svc| svc.complete_order(&op(), placed));
    s.w.refused(ErrorCode::OrderState, |svc| svc.cancel_order(&op(), placed));
    assert_eq!(s.w.service.program(s.program).unwrap().budget_remaining_fen, yuan(5_000_000));
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
}

fn statements_need_an_ended_month_with_usage_and_are_approved_once() {
    let mut s = setup();
    let march = YearMonth { year: 2026, month: 3 };
    s.w.refused(ErrorCode::MonthNotEnded, |svc| svc.issue_statement(&op(), s.provider, s.program, march));
    s.w.clock.set(at(2026, 4, 1));
    s.w.refused(ErrorCode::StatementEmpty, |svc| svc.issue_statement(&op(), s.provider, s.program, march));
    s.w.refused(ErrorCode::NotFound, |svc| svc.issue_statement(&op(), ProviderId::new(9).unwrap(), s.program, march));
}

fn the_schedule_issues_each_ended_month_with_usage_once() {
    let mut s = setup();
    let order = s.orders();
    // An order that runs an hour, with its usage, now.
    let run_an_hour = |s: &mut Setup, id: &str| {
        let placed = s.w.service.place_order(&op(), order(8)).unwrap();
        s.w.service.start_order(&op(), placed).unwrap();
        let started = s.w.service.order(placed).unwrap().started_at_s.unwrap();
        s.w.clock.set(started + 3600);
        let input = UsageInput {
            id: id.into(),
            order: placed,
            gpu_seconds: 8 * 3600,
            period_start_s: started,
            period_end_s: started + 3600,
        };
        s.w.service.record_usage(&op(), s.provider, &[input]).unwrap();
        s.w.service.complete_order(&op(), placed).unwrap();
    };
    run_an_hour(&mut s, "march");
    // Nothing is due while March runs.
    assert_eq!(s.w.service.issue_due_statements(&op()).unwrap(), vec![]);
    s.w.clock.set(at(2026, 4, 1) + 60);
    let march = s.w.service.issue_due_statements(&op()).unwrap();
    assert_eq!(march.len(), 1);
    let statement = &s.w.service.state().statements[&march[0]];
    assert_eq!((statement.provider, statement.program, statement.month.as_str()), (s.provider, s.program, "2026-03"));
    assert!(statement.voucher_total_fen > Fen::ZERO);
    // Run again: nothing more. April's usage is due only once April has ended.
    assert_eq!(s.w.service.issue_due_statements(&op()).unwrap(), vec![]);
    run_an_hour(&mut s, "april");
    assert_eq!(s.w.service.issue_due_statements(&op()).unwrap(), vec![]);
    s.w.clock.set(at(2026, 5, 1));
    let april = s.w.service.issue_due_statements(&op()).unwrap();
    assert_eq!(april.len(), 1);
    assert_eq!(s.w.service.state().statements[&april[0]].month, "2026-04");
    s.w.refused(ErrorCode::StatementExists, |svc| {
        svc.issue_statement(&op(), s.provider, s.program, YearMonth { year: 2026, month: 4 })
    });
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
}

fn registrations_refuse_duplicates_and_bad_fields() {
    let mut w = World::start();
    let input = EnterpriseInput {
        uscc: uscc("310115", 1),
        name: "Enterprise".into(),
        region: RegionCode::parse("310115").unwrap(),
        kind: ApplicantKind::Sme,
        headcount: 10,
        revenue_fen: yuan(1),
        research_projects: vec![],
        related_parties: vec![],
    };
    w.service.register_enterprise(&op(), input.clone()).unwrap();
    let message = w.refused(ErrorCode::AlreadyExists, |s| s.register_enterprise(&op(), input.clone()));
    assert!(message.starts_with("uscc:"), "{message}");
    let unnamed = EnterpriseInput { uscc: uscc("310115", 2), name: "".into(), ..input.clone() };
    w.refused(ErrorCode::InvalidField, |s| s.register_enterprise(&op(), unnamed.clone()));
    let own = EnterpriseInput { uscc: uscc("310115", 3), related_parties: vec![uscc("310115", 3)], ..input.clone() };
    w.refused(ErrorCode::InvalidField, |s| s.register_enterprise(&op(), own.clone()));
    let provider = w.service.register_provider(&op(), uscc("310000", 901), "P", OperatorKind::Commercial).unwrap();
    w.refused(ErrorCode::AlreadyExists, |s| {
        s.register_provider(&op(), uscc("310000", 901), "P", OperatorKind::Commercial)
    });
    let site = |latitude: f64| suanli_service::SiteSpec {
        provider,
        name: "S".into(),
        hub: "H".into(),
        region: RegionCode::parse("310000").unwrap(),
        latitude,
        longitude: 121.0,
        operator: OperatorKind::Commercial,
        power_price_fen_per_kwh: None,
        pue: None,
    };
    w.refused(ErrorCode::InvalidField, |s| s.add_site(&op(), site(91.0)));
    w.refused(ErrorCode::InvalidField, |s| s.add_site(&op(), site(f64::NAN)));
}

fn related_parties_are_flagged_when_an_order_is_placed() {
    let mut s = setup();
    let order = s.orders();
    let provider_uscc = s.w.service.state().providers[&s.provider].uscc;
    let input = EnterpriseInput {
        uscc: uscc("310115", 7),
        name: "Sister company".into(),
        region: RegionCode::parse("310115").unwrap(),
        kind: ApplicantKind::Sme,
        headcount: 10,
        revenue_fen: yuan(9_000_000),
        research_projects: vec![],
        related_parties: vec![provider_uscc],
    };
    let enterprise = s.w.service.register_enterprise(&op(), input).unwrap();
    let app = submitted(&mut s.w, enterprise, s.program, 100_000);
    let voucher = s.w.service.approve_application(&op(), app, yuan(100_000)).unwrap();
    let placed = s.w.service.place_order(&op(), OrderInput { enterprise, voucher, ..order(1) }).unwrap();
    assert_eq!(s.w.service.order(placed).unwrap().flags.len(), 1);
    assert!(s.w.service.state().anomalies.iter().any(|a| a.kind == "related_party" && a.object == placed.to_string()));
}

fn the_shipped_programmes_load_and_mark_what_is_assumed() {
    let mut w = World::start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let id = w.service.load_program(&op(), &source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        keys.push(w.service.program(id).unwrap().terms.key.clone());
        assert!(source.contains("# assumed") || source.contains("# reported"), "{}", path.display());
    }
    keys.sort();
    assert_eq!(
        keys,
        [
            "beijing-compute",
            "chengdu-compute",
            "henan-compute",
            "ningbo-compute",
            "shandong-compute",
            "shanghai-compute",
            "shanghai-data",
            "shenzhen-compute"
        ]
    );
    let shanghai = w.service.find_program("shanghai-compute").unwrap();
    let terms = &w.service.program(shanghai).unwrap().terms;
    assert_eq!((terms.budget_fen, terms.subsidy_rate_bp.basis_points()), (Fen::from_yuan(600_000_000).unwrap(), 8000));
    // Eight programmes of seven authorities: Shanghai runs two.
    assert_eq!(w.service.state().authorities.len(), 7);
}

fn a_programme_closes_to_applications_and_finishes_once_nothing_is_open() {
    let mut s = setup();
    let other = s.w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let late = s.w.service.create_application(&op(), other, s.program, yuan(1_000), "").unwrap();
    s.w.service.close_program(&op(), s.program).unwrap();
    s.w.refused(ErrorCode::ProgramState, |svc| svc.submit_application(&op(), late));
    s.w.refused(ErrorCode::ProgramState, |svc| svc.close_program(&op(), s.program));
    let message = s.w.refused(ErrorCode::ProgramHasOpenVouchers, |svc| svc.finish_program(&op(), s.program));
    assert!(message.contains(&s.voucher.to_string()), "{message}");
    s.w.clock.set(at(2026, 12, 1));
    s.w.service.sweep(&op()).unwrap();
    let returned = s.w.service.finish_program(&op(), s.program).unwrap();
    assert_eq!(returned, yuan(5_000_000), "the whole budget goes back once the voucher expired unspent");
    assert_eq!(s.w.service.program(s.program).unwrap().budget_remaining_fen, Fen::ZERO);
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
}

fn the_placement_engine_chooses_pools_lists_alternatives_and_follows_the_rules() {
    use suanli_service::PoolRequest;
    // A programme that pays 10 points more on domestic chips, government-run sites only.
    let mut w = World::start();
    let program = w
        .program(&SHANGHAI_LIKE.replace("providers = { rule = \"any\" }", "providers = { rule = \"government_run\" }"));
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = submitted(&mut w, enterprise, program, 1_000_000);
    let voucher = w.service.approve_application(&op(), app, yuan(1_000_000)).unwrap();
    let (_, cheap_commercial) = w.provider(1, "310000", OperatorKind::Commercial, "H100", false, 1_000);
    let (_, imported) = w.provider(2, "310000", OperatorKind::Government, "H100", false, 1_800);
    let (_, domestic) = w.provider(3, "640500", OperatorKind::Government, "Ascend-910B", true, 1_850);
    let request = PoolRequest {
        enterprise,
        voucher,
        chip: None,
        gpu_count: 8,
        hours: 10,
        purpose: Purpose::Training,
        needs: Default::default(),
    };
    let choice = w.service.choose_pool(&request).unwrap();
    // The commercial pool is cheapest but the provider rule excludes it. The domestic pool costs
    // ¥0.50 more per GPU-hour, and half of the 10-point extra subsidy (5% of ¥1,480) outweighs that.
    assert_eq!(choice.chosen.pool, domestic);
    assert_eq!(choice.chosen.rate_bp.basis_points(), 9000);
    assert!(choice.domestic_credit_fen < 0);
    assert_eq!(choice.alternatives.len(), 1);
    assert_eq!(choice.alternatives[0].pool, imported);
    assert_eq!(choice.alternatives[0].list_cost_fen, Fen::new(8 * 10 * 1_800));
    assert!(
        choice
            .excluded
            .iter()
            .any(|(pool, why)| pool == &cheap_commercial.to_string() && why.contains("provider rule"))
    );
    // Only H100: the imported pool.
    let h100 = PoolRequest { chip: Some("H100".into()), ..request.clone() };
    assert_eq!(w.service.choose_pool(&h100).unwrap().chosen.pool, imported);
    // Placement through the engine, and pinning a pool, both work; capacity is respected.
    let placed = w.service.place_order_anywhere(&op(), &request).unwrap();
    assert_eq!(w.service.order(placed).unwrap().pool, domestic);
    let pinned = OrderInput {
        enterprise,
        voucher,
        pool: imported,
        chip: None,
        gpu_count: 8,
        hours: 10,
        purpose: Purpose::Training,
    };
    let pinned = w.service.place_order(&op(), pinned).unwrap();
    assert_eq!(w.service.order(pinned).unwrap().pool, imported);
    let too_big = PoolRequest { gpu_count: 255, ..request.clone() };
    let message = w.refused(ErrorCode::NoPoolAvailable, |s| s.choose_pool(&too_big));
    assert!(message.contains("GPUs free"), "{message}");
    let foreign = PoolRequest { enterprise: w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]), ..request.clone() };
    w.refused(ErrorCode::NotFound, |s| s.choose_pool(&foreign));
    // The engine's network is rebuilt when a pool changes: a price, a retirement, a new pool.
    let small = PoolRequest { gpu_count: 1, ..request.clone() };
    assert_eq!(w.service.choose_pool(&small).unwrap().chosen.pool, domestic);
    w.service.change_pool(&op(), imported, None, Some(Fen::new(1_000))).unwrap();
    assert_eq!(w.service.choose_pool(&small).unwrap().chosen.pool, imported);
    w.service.retire_pool(&op(), imported).unwrap();
    assert_eq!(w.service.choose_pool(&small).unwrap().chosen.pool, domestic);
    let (_, cheaper) = w.provider(4, "310000", OperatorKind::Government, "H100", false, 900);
    assert_eq!(w.service.choose_pool(&small).unwrap().chosen.pool, cheaper);
}

/// Running totals that would pass what an `i64` holds are refused with `amount_overflow` (the
/// writer does not panic), and the service goes on.
fn a_total_that_would_overflow_is_refused_and_the_service_goes_on() {
    let mut s = setup();
    // A price so high that one order's full run is close to the largest amount kept.
    let price_fen = i64::MAX / 80 - 1;
    let (provider, pool) = s.w.provider(3, "310000", OperatorKind::Government, "H100", false, price_fen);
    let order = OrderInput { pool, ..s.orders()(8) };
    let first = s.w.service.place_order(&op(), order.clone()).unwrap();
    let second = s.w.service.place_order(&op(), order).unwrap();
    s.w.service.start_order(&op(), first).unwrap();
    s.w.service.start_order(&op(), second).unwrap();
    let started = s.w.service.now_s();
    s.w.clock.advance(10 * 3600);
    let full_run = |id: &str, order| UsageInput {
        id: id.to_owned(),
        order,
        gpu_seconds: 8 * 10 * 3600,
        period_start_s: started,
        period_end_s: started + 10 * 3600,
    };
    let outcomes = s.w.service.record_usage(&op(), provider, &[full_run("first", first)]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { .. }), "{outcomes:?}");
    let before = s.w.fingerprint();
    let outcomes = s.w.service.record_usage(&op(), provider, &[full_run("second", second)]).unwrap();
    match &outcomes[0] {
        UsageOutcome::Refused { code, message, .. } => {
            assert_eq!(code, "amount_overflow", "{message}");
            assert!(message.contains("enterprise's payments"), "{message}");
        }
        other => panic!("expected amount_overflow, got {other:?}"),
    }
    // Only the refusal itself is kept (the id stays failed, an anomaly says why); no money moved.
    assert_ne!(s.w.fingerprint(), before);
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
    assert!(s.w.service.state().anomalies.iter().any(|a| a.kind == "amount_overflow"));
    // The service goes on.
    s.w.service.complete_order(&op(), second).unwrap();
}

/// A failed commit leaves memory exactly as the last commit left it: the state, the ledger's
/// hash and the usage ids; the next commit after storage returns goes through.
fn a_failed_commit_leaves_the_state_as_it_was() {
    let mut s = setup();
    let placed = s.w.service.place_order(&op(), s.orders()(8)).unwrap();
    s.w.service.start_order(&op(), placed).unwrap();
    let started = s.w.service.now_s();
    s.w.clock.advance(600);
    let record = UsageInput {
        id: "r1".into(),
        order: placed,
        gpu_seconds: 60,
        period_start_s: started,
        period_end_s: started + 60,
    };
    let before = s.w.fingerprint();
    let faults = s.w.service.fault_switch();
    faults.set(Some(suanli_store::Fault::Full));
    let error = s.w.service.record_usage(&op(), s.provider, std::slice::from_ref(&record)).unwrap_err();
    assert_eq!(error.code, ErrorCode::StorageFull, "{error}");
    assert_eq!(s.w.fingerprint(), before);
    assert!(!s.w.service.is_ready());
    let error = s.w.service.suspend_voucher(&op(), s.voucher, "check").unwrap_err();
    assert_eq!(error.code, ErrorCode::StorageFull, "storage is checked again first: {error}");
    assert_eq!(s.w.fingerprint(), before);
    faults.set(None);
    let outcomes = s.w.service.record_usage(&op(), s.provider, &[record]).unwrap();
    assert!(matches!(outcomes[0], UsageOutcome::Recorded { .. }), "the id was not burned: {outcomes:?}");
    assert!(s.w.service.is_ready());
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
    s.w.restart();
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
    assert_eq!(s.w.service.order(placed).unwrap().usage_records, 1);
}

/// One writer per SQLite file, as on PostgreSQL: a second writer is refused with
/// `database_locked`, a reader opens beside it and may not change anything.
#[test]
fn a_second_writer_on_a_sqlite_file_is_refused_and_a_reader_opens_beside_it() {
    let s = setup();
    let clock = std::sync::Arc::new(s.w.clock.clone());
    let database = s.w.path.display().to_string();
    let second = suanli_service::Service::open_database(&database, clock.clone()).err().expect("refused");
    assert_eq!(second.code, ErrorCode::DatabaseLocked, "{second}");
    assert!(second.message.contains("another suanli writer holds the database"), "{second}");
    let mut reader = suanli_service::Service::open_reader(&database, clock).unwrap();
    assert_eq!(reader.voucher(s.voucher).unwrap(), s.w.service.voucher(s.voucher).unwrap());
    let refused = reader.suspend_voucher(&op(), s.voucher, "no").unwrap_err();
    assert_eq!(refused.code, ErrorCode::DatabaseLocked, "{refused}");
}

/// Some usage on a running order, with ids `prefix-1` to `prefix-n`.
fn usage(s: &mut Setup, order: suanli_domain::OrderId, prefix: &str, n: i64) -> Vec<UsageOutcome> {
    let started = s.w.service.order(order).unwrap().started_at_s.unwrap();
    let records: Vec<UsageInput> = (1..=n)
        .map(|i| UsageInput {
            id: format!("{prefix}-{i}"),
            order,
            gpu_seconds: 60,
            period_start_s: started + i * 60,
            period_end_s: started + i * 60 + 60,
        })
        .collect();
    s.w.service.record_usage(&op(), s.provider, &records).unwrap()
}

/// A restart from a checkpoint reaches the state a replay from the first entry reaches; ids
/// decided before the checkpoint still answer their first result; the audit replays the log and
/// finds every checkpoint equal to it.
fn a_restart_from_a_checkpoint_equals_a_replay_from_the_start() {
    let mut s = setup();
    let placed = s.w.service.place_order(&op(), s.orders()(8)).unwrap();
    s.w.service.start_order(&op(), placed).unwrap();
    s.w.clock.advance(3 * 3600);
    usage(&mut s, placed, "before", 40);
    let at = s.w.service.checkpoint().unwrap();
    assert_eq!(at, s.w.service.durable().log_count());
    usage(&mut s, placed, "after", 30);
    s.w.service.suspend_voucher(&op(), s.voucher, "a check").unwrap();
    let expected = s.w.fingerprint();
    s.w.restart();
    assert_eq!(s.w.fingerprint(), expected, "from the checkpoint, the same state");
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
    // An id decided before the checkpoint answers its first result.
    let again = usage(&mut s, placed, "before", 1);
    assert!(matches!(again[0], UsageOutcome::Duplicate { .. }), "{again:?}");
    // A second checkpoint, and the audit compares both with the replayed log.
    s.w.service.reinstate_voucher(&op(), s.voucher).unwrap();
    s.w.service.checkpoint().unwrap();
    let (count, problems) = s.w.service.verify_checkpoints().unwrap();
    assert_eq!((count, problems), (2, Vec::<String>::new()));
    s.w.restart();
    assert_eq!(s.w.service.check_books(), Vec::<String>::new());
}

/// A damaged checkpoint is never served: a changed byte breaks its hash; a change re-hashed to
/// match that moves money disagrees with the ledger; one that moves no money is found by the
/// audit's replay.
#[test]
fn a_damaged_checkpoint_is_refused_or_found() {
    use sha2::Digest;
    let mut s = setup();
    s.w.service.checkpoint().unwrap();
    let clock = std::sync::Arc::new(s.w.clock.clone());
    let path = s.w.path.clone();
    // The writer lets go of the file (a placeholder takes its place), keeping the directory.
    s.w.service = suanli_service::Service::open(&path.with_extension("other.db"), clock.clone()).unwrap();
    let tamper = |from: &str, to: &str, rehash: bool| {
        let connection = rusqlite::Connection::open(&path).unwrap();
        let state: String = connection.query_row("SELECT state FROM checkpoints", [], |r| r.get(0)).unwrap();
        assert!(state.contains(from), "{from} is in the checkpoint");
        let changed = state.replacen(from, to, 1);
        let digest: [u8; 32] = sha2::Sha256::digest(changed.as_bytes()).into();
        connection.execute("UPDATE checkpoints SET state = ?1", [&changed]).unwrap();
        if rehash {
            connection.execute("UPDATE checkpoints SET state_sha256 = ?1", [&digest[..]]).unwrap();
        }
        move || {
            connection.execute("UPDATE checkpoints SET state = ?1", [&state]).unwrap();
            let digest: [u8; 32] = sha2::Sha256::digest(state.as_bytes()).into();
            connection.execute("UPDATE checkpoints SET state_sha256 = ?1", [&digest[..]]).unwrap();
        }
    };
    let open = || suanli_service::Service::open(&path, clock.clone());
    let undo = tamper("\"available_fen\":100000000", "\"available_fen\":100000001", false);
    let refused = open().err().expect("a checkpoint that does not match its hash is refused");
    assert!(refused.message.contains("does not match its hash"), "{refused}");
    undo();
    let undo = tamper("\"available_fen\":100000000", "\"available_fen\":100000001", true);
    let refused = open().err().expect("a re-hashed checkpoint that moves money is refused");
    assert!(refused.message.contains("disagrees with the ledger"), "{refused}");
    undo();
    let _undo = tamper("Enterprise 1", "Enterprise X", true);
    let mut service = open().unwrap();
    let (_, problems) = service.verify_checkpoints().unwrap();
    assert!(problems.iter().any(|p| p.contains("differs from the log replayed up to it")), "{problems:?}");
}

suanli_store::conformance!(
    a_restart_from_a_checkpoint_equals_a_replay_from_the_start,
    a_total_that_would_overflow_is_refused_and_the_service_goes_on,
    a_failed_commit_leaves_the_state_as_it_was,
    bad_programme_files_are_refused_with_the_field,
    applications_outside_the_window_or_the_programme_state_are_refused,
    approvals_beyond_budget_follow_submission_order,
    the_stacking_rule_and_its_cap_hold_across_programmes,
    an_application_that_can_never_be_approved_holds_back_no_one,
    registries_decide_what_providers_and_enterprises_only_claim,
    related_parties_are_found_from_both_sides_declarations,
    sites_are_verified_against_the_imported_network,
    orders_that_break_a_rule_are_refused,
    provider_rules_restrict_where_vouchers_are_spent,
    usage_that_breaks_physics_or_the_order_is_refused_and_the_id_stays_failed,
    revocation_releases_holds_and_returns_the_balance,
    revocation_releases_any_number_of_open_orders,
    tokens_expire,
    statements_need_an_ended_month_with_usage_and_are_approved_once,
    the_schedule_issues_each_ended_month_with_usage_once,
    registrations_refuse_duplicates_and_bad_fields,
    related_parties_are_flagged_when_an_order_is_placed,
    the_shipped_programmes_load_and_mark_what_is_assumed,
    a_programme_closes_to_applications_and_finishes_once_nothing_is_open,
    the_placement_engine_chooses_pools_lists_alternatives_and_follows_the_rules,
);

#[test]
fn applying_and_registering_with_a_login_are_all_or_nothing() {
    let mut w = World::start();
    let program = w.program(crate::SHANGHAI_LIKE);
    let e = w.enterprise(1, 9_000_000, ApplicantKind::Sme, &[]);
    // After the window: the draft would be valid, the submission is not; nothing is kept.
    w.clock.set(crate::at(2027, 1, 2));
    w.refused(ErrorCode::ApplicationWindowClosed, |s| s.apply(&op(), e, program, Fen::from_yuan(1_000).unwrap(), ""));
    w.clock.set(crate::at(2026, 6, 1));
    let id = w.service.apply(&op(), e, program, Fen::from_yuan(1_000).unwrap(), "").unwrap();
    assert_eq!(w.service.application(id).unwrap().state, suanli_service::model::ApplicationState::Submitted);
    // A login name taken: the enterprise is not registered either.
    let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let input = |n: u32| suanli_service::EnterpriseInput {
        uscc: crate::uscc("310115", n),
        name: format!("E{n}"),
        region: suanli_domain::RegionCode::parse("310115").unwrap(),
        kind: ApplicantKind::Sme,
        headcount: 10,
        revenue_fen: Fen::ZERO,
        research_projects: vec![],
        related_parties: vec![],
    };
    w.service.register_with_login(&op(), input(7), "seven", phc).unwrap();
    w.refused(ErrorCode::AlreadyExists, |s| s.register_with_login(&op(), input(8), "seven", phc));
    assert!(w.service.state().enterprise_by_uscc.get(&crate::uscc("310115", 8)).is_none());
}
