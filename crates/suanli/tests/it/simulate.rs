//! `suanli simulate`: the same seed gives the same state, every simulated database passes the
//! audit, a variant without the programme shows no lift, a lottery variant draws and measures
//! its control group, and the shipped scenarios run from the command line.

use suanli::simulate::scenario::Scenario;
use suanli::simulate::simulate;

use crate::{stdout, suanli};

const SMALL: &str = r#"
name = "small"
question = "Does the simulator hold together?"
seed = 7
months = 3
program = "shanghai-compute"
enterprises = 40

[demand]
gpu_hours_min = 100
gpu_hours_max = 800

[[variant]]
name = "none"
subsidy = false

[[variant]]
name = "filed"

[[variant]]
name = "lottery"
allocation = "lottery"
enterprise_cap_fen = 2_000_000
"#;

fn program() -> &'static str {
    include_str!("../../../../programs/shanghai-compute.toml")
}

#[test]
fn the_same_seed_gives_the_same_state_and_every_database_passes_the_audit() {
    let scenario = Scenario::parse(SMALL).unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = simulate(&scenario, program(), one.path()).unwrap();
    let second = simulate(&scenario, program(), two.path()).unwrap();
    for (a, b) in first.variants.iter().zip(&second.variants) {
        assert_eq!(a.state_hash, b.state_hash, "variant {}", a.name);
        assert_eq!(a.orders, b.orders);
    }
    let mut other = scenario.clone();
    other.seed = 8;
    let third = simulate(&other, program(), tempfile::tempdir().unwrap().path()).unwrap();
    assert_ne!(first.variants[1].state_hash, third.variants[1].state_hash, "another seed, another year");

    for variant in &first.variants {
        let path = one.path().join(format!("{}.db", variant.name));
        let mut store = suanli_store::SqliteStore::open_reader(&path).map(suanli_store::AnyStore::sqlite).unwrap();
        let report = suanli_store::audit(&mut store).unwrap();
        assert!(report.passed(), "{}: {:?}", variant.name, report.violations);
    }

    // Without the programme nothing is bought on the platform and no site's load moves.
    let none = &first.variants[0];
    assert_eq!((none.orders, none.gpu_hours, none.approved), (0, 0.0, 0));
    assert_eq!(none.west_load_before_bp, none.west_load_after_bp);
    assert_eq!(none.east_load_before_bp, none.east_load_after_bp);
    assert!(none.outcome.is_none());
    // With it, work is bought and the load where it runs rises.
    let filed = &first.variants[1];
    assert!(filed.orders > 0 && filed.gpu_hours > 0.0, "{filed:?}");
    assert!(
        filed.west_load_after_bp + filed.east_load_after_bp > filed.west_load_before_bp + filed.east_load_before_bp,
        "{filed:?}"
    );
    let outcome = filed.outcome.as_ref().unwrap();
    assert!(outcome.load.as_ref().unwrap().pivot_s.is_some());
    // A lottery variant draws each month from a committed seed; every round redoes from its seed.
    let lottery = first.variants[2].outcome.as_ref().unwrap();
    assert!(!lottery.lottery.is_empty());
    assert!(lottery.lottery.iter().all(|r| r.verified), "{:?}", lottery.lottery);
}

/// A year of daily clearings between hub nodes, small: what the Chengdu–Chongqing region cannot
/// serve is refused without the market and bought in other regions with it, every trade within
/// its bid, the regions' balances adding up to zero, the database passing the audit, and the
/// same seed giving the same year.
#[test]
fn the_market_serves_what_the_region_cannot_and_its_regions_balance() {
    let text = include_str!("../../../../scenarios/market.toml")
        .replace("months = 12", "months = 3")
        .replace("enterprises = 1200", "enterprises = 800");
    let scenario = Scenario::parse(&text).unwrap();
    let program = include_str!("../../../../scenarios/chengdu-market-program.toml");
    let dir = tempfile::tempdir().unwrap();
    let run = simulate(&scenario, program, dir.path()).unwrap();
    let (region, market) = (&run.variants[0], &run.variants[1]);
    assert!(region.orders_refused > 0, "the region alone cannot serve it all: {region:?}");
    let traded = market.market.as_ref().unwrap();
    assert_eq!(region.market.as_ref().unwrap().trades, 0, "a programme that does not trade buys nothing");
    assert!(traded.trades > 0 && traded.clearings > 0, "{traded:?}");
    assert!(
        market.orders_refused < region.orders_refused,
        "{} against {}",
        market.orders_refused,
        region.orders_refused
    );
    assert!(traded.welfare_fen <= traded.lp_welfare_fen && traded.gap_bp_max <= 100, "{traded:?}");
    assert_eq!(traded.regions.iter().map(|(_, fen)| i128::from(*fen)).sum::<i128>(), 0, "{:?}", traded.regions);
    // Sichuan owes what its traded orders used: at most what they were bought for.
    let (_, owed) = traded.regions.iter().find(|(r, _)| r == "510000").unwrap();
    assert!(*owed < 0 && -*owed <= traded.paid_fen, "{owed} against {}", traded.paid_fen);
    for variant in &run.variants {
        let path = dir.path().join(format!("{}.db", variant.name));
        let mut store = suanli_store::SqliteStore::open_reader(&path).map(suanli_store::AnyStore::sqlite).unwrap();
        let report = suanli_store::audit(&mut store).unwrap();
        assert!(report.passed(), "{}: {:?}", variant.name, report.violations);
    }
    let again = simulate(&scenario, program, tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(again.variants[1].state_hash, market.state_hash);
}

#[test]
fn the_shipped_scenarios_parse_and_a_bad_one_is_refused_by_field() {
    for text in [include_str!("../../../../scenarios/west.toml"), include_str!("../../../../scenarios/domestic.toml")] {
        let scenario = Scenario::parse(text).unwrap();
        assert!(scenario.variants.len() >= 3);
    }
    assert_eq!(Scenario::parse(include_str!("../../../../scenarios/market.toml")).unwrap().variants.len(), 2);
    for (bad, field) in [
        (SMALL.replace("months = 3", "months = 99"), "months"),
        (SMALL.replace("enterprises = 40", "enterprises = 0"), "enterprises"),
        (SMALL.replace("name = \"filed\"", "name = \"none\""), "variant.name"),
        (SMALL.replace("allocation = \"lottery\"", "allocation = \"raffle\""), "allocation"),
        (SMALL.replace("seed = 7", "seed = 7\ncolour = 1"), "colour"),
        (
            format!("{SMALL}\n[market]\noffer_share = 2.0\nreserve_bp = 7000\nlimit_fen_per_gpu_hour = 2500\n"),
            "market.offer_share",
        ),
        (
            format!("{SMALL}\n[market]\noffer_share = 0.5\nreserve_bp = 7000\nlimit_fen_per_gpu_hour = 0\n"),
            "market.limit_fen_per_gpu_hour",
        ),
    ] {
        let error = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(error.contains(field), "{field}: {error}");
    }
}

#[test]
fn simulate_runs_from_the_command_line_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.toml"), SMALL).unwrap();
    let output = suanli(&["simulate", "small.toml", "--out", "out"], dir.path());
    assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    assert!(stdout(&output).contains("subsidy per GPU-hour"), "{}", stdout(&output));
    for file in ["small.csv", "small-months.csv", "small.svg", "small.json", "filed.db"] {
        assert!(dir.path().join("out").join(file).exists(), "{file}");
    }
    let svg = std::fs::read_to_string(dir.path().join("out/small.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    let audit = suanli(&["audit", "verify", "--database", "out/lottery.db"], dir.path());
    assert!(audit.status.success(), "{}", stdout(&audit));
    let missing = suanli(&["simulate", "nowhere.toml"], dir.path());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("scenario: cannot read"));
}
