//! Programme files: the TOML an authority writes to define a programme.
//!
//! Amounts are integer fen (`budget_fen = 600_000_000_00` is CNY 600 million; TOML allows the
//! underscores), rates integer basis points, dates Asia/Shanghai calendar dates. Unknown keys are
//! refused, so a misspelt cap cannot silently fall back to no cap. See `programs/` for the seven
//! shipped programmes.

use serde::Deserialize;
use suanli_domain::{ApplicantKind, Fen, RateBp, RegionCode, Rule, Uscc};

use crate::calendar::shanghai_midnight;
use crate::error::{ErrorCode, Result, ServiceError};
use crate::model::{NamedRule, ProgramTerms, ProviderRule, Purpose, Stacking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramFile {
    key: String,
    name: String,
    authority: AuthorityFile,
    budget_fen: i64,
    subsidy_rate_bp: i64,
    domestic_chip_rate_bp: Option<i64>,
    enterprise_cap_fen: i64,
    annual_cap_fen: Option<i64>,
    program_annual_cap_fen: Option<i64>,
    allocation: Option<String>,
    #[serde(default)]
    placement: crate::requests::PlacementWeights,
    tiers: Option<crate::tiers::TierTerms>,
    voucher_validity_days: i64,
    applications_open: toml::value::Datetime,
    applications_close: toml::value::Datetime,
    applicant_kinds: Vec<String>,
    purposes: Vec<String>,
    providers: ProvidersFile,
    stacking: StackingFile,
    #[serde(default)]
    eligibility: Vec<NamedRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorityFile {
    region: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    rule: String,
    #[serde(default)]
    providers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StackingFile {
    allowed: bool,
    cap_fen: Option<i64>,
}

/// The largest programme file read, so a mistaken path to a huge file fails fast.
pub const PROGRAM_FILE_BYTES_MAX: usize = 64 * 1024;

fn invalid(field: &str, problem: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(ErrorCode::ProgramFileInvalid, format!("{field}: {problem}"))
}

fn positive(field: &str, fen: i64) -> Result<Fen> {
    Fen::positive(fen).map_err(|e| invalid(field, e))
}

fn rate(field: &str, bp: i64) -> Result<RateBp> {
    RateBp::new(bp).map_err(|e| invalid(field, e))
}

fn date(field: &str, value: &toml::value::Datetime) -> Result<i64> {
    match (value.date, value.time, value.offset) {
        (Some(date), None, None) => shanghai_midnight(i32::from(date.year), date.month, date.day)
            .ok_or_else(|| invalid(field, format!("{value} is not a calendar date"))),
        _ => Err(invalid(field, format!("expected a date such as 2026-01-31, got {value}"))),
    }
}

/// Parses and checks a programme file.
pub fn parse_program(source: &str) -> Result<ProgramTerms> {
    if source.len() > PROGRAM_FILE_BYTES_MAX {
        return Err(invalid("file", format!("is larger than {PROGRAM_FILE_BYTES_MAX} bytes")));
    }
    // A name shown to people: 1-200 bytes, not blank, no control characters (NUL, newline...).
    let label = |field: &str, text: &str| {
        if text.trim().is_empty() || text.len() > 200 {
            return Err(invalid(field, "must be 1-200 bytes and not blank"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid(field, "must not contain control characters (NUL, newline, tab...)"));
        }
        Ok(())
    };
    let file: ProgramFile = toml::from_str(source)
        .map_err(|e| ServiceError::new(ErrorCode::ProgramFileInvalid, e.to_string().trim_end().to_owned()))?;
    let key_ok = !file.key.is_empty()
        && file.key.len() <= 64
        && file.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !key_ok {
        return Err(invalid("key", "must be 1-64 characters of a-z, 0-9 and '-'"));
    }
    label("name", &file.name)?;
    label("authority.name", &file.authority.name)?;
    let authority_region = RegionCode::parse(&file.authority.region).map_err(|e| invalid("authority.region", e))?;
    let budget_fen = positive("budget_fen", file.budget_fen)?;
    let subsidy_rate_bp = rate("subsidy_rate_bp", file.subsidy_rate_bp)?;
    let domestic_chip_rate_bp = file.domestic_chip_rate_bp.map(|bp| rate("domestic_chip_rate_bp", bp)).transpose()?;
    if let Some(domestic) = domestic_chip_rate_bp
        && domestic < subsidy_rate_bp
    {
        return Err(invalid("domestic_chip_rate_bp", format!("{domestic} is below subsidy_rate_bp {subsidy_rate_bp}")));
    }
    let enterprise_cap_fen = positive("enterprise_cap_fen", file.enterprise_cap_fen)?;
    if enterprise_cap_fen > budget_fen {
        return Err(invalid("enterprise_cap_fen", "is larger than budget_fen"));
    }
    let annual_cap_fen = file.annual_cap_fen.map(|fen| positive("annual_cap_fen", fen)).transpose()?;
    let program_annual_cap_fen =
        file.program_annual_cap_fen.map(|fen| positive("program_annual_cap_fen", fen)).transpose()?;
    if program_annual_cap_fen.is_some_and(|cap| cap > budget_fen) {
        return Err(invalid("program_annual_cap_fen", "is larger than budget_fen"));
    }
    let voucher_validity_days = u32::try_from(file.voucher_validity_days)
        .ok()
        .filter(|days| (1..=3_650).contains(days))
        .ok_or_else(|| invalid("voucher_validity_days", "must be between 1 and 3650"))?;
    let applications_open_s = date("applications_open", &file.applications_open)?;
    let applications_close_s = date("applications_close", &file.applications_close)? + 86_400;
    if applications_close_s <= applications_open_s {
        return Err(invalid("applications_close", "is before applications_open"));
    }
    let mut applicant_kinds = Vec::new();
    for (index, kind) in file.applicant_kinds.iter().enumerate() {
        applicant_kinds.push(ApplicantKind::parse(kind).map_err(|e| invalid(&format!("applicant_kinds[{index}]"), e))?);
    }
    if applicant_kinds.is_empty() {
        return Err(invalid("applicant_kinds", "must name at least one kind"));
    }
    let mut purposes = Vec::new();
    for (index, purpose) in file.purposes.iter().enumerate() {
        purposes.push(Purpose::parse(purpose).ok_or_else(|| {
            invalid(
                &format!("purposes[{index}]"),
                format!("must be training, inference, fine_tuning or data, got {purpose:?}"),
            )
        })?);
    }
    if purposes.is_empty() {
        return Err(invalid("purposes", "must name at least one purpose"));
    }
    let providers = match (file.providers.rule.as_str(), file.providers.providers.is_empty()) {
        ("any", true) => ProviderRule::Any,
        ("government_run", true) => ProviderRule::GovernmentRun,
        ("within_region", true) => ProviderRule::WithinRegion,
        ("listed", false) => {
            let mut listed = Vec::new();
            for (index, uscc) in file.providers.providers.iter().enumerate() {
                listed.push(Uscc::parse(uscc).map_err(|e| invalid(&format!("providers.providers[{index}]"), e))?);
            }
            ProviderRule::Listed { providers: listed }
        }
        ("listed", true) => {
            return Err(invalid("providers.providers", "rule 'listed' needs at least one provider USCC"));
        }
        ("any" | "government_run" | "within_region", false) => {
            return Err(invalid("providers.providers", "is only allowed with rule 'listed'"));
        }
        (other, _) => {
            return Err(invalid(
                "providers.rule",
                format!("must be any, government_run, listed or within_region, got {other:?}"),
            ));
        }
    };
    let stacking = Stacking {
        allowed: file.stacking.allowed,
        cap_fen: file.stacking.cap_fen.map(|fen| positive("stacking.cap_fen", fen)).transpose()?,
    };
    for (index, rule) in file.eligibility.iter().enumerate() {
        label(&format!("eligibility[{index}].name"), &rule.name)?;
        Rule::parse(&rule.rule).map_err(|e| {
            invalid(&format!("eligibility[{index}].rule ({})", rule.name), format!("{e}\n{}", e.pointer(&rule.rule)))
        })?;
    }
    let allocation = match file.allocation.as_deref() {
        None | Some("first_come") => crate::model::Allocation::FirstCome,
        Some("lottery") => crate::model::Allocation::Lottery,
        Some(other) => return Err(invalid("allocation", format!("{other:?} must be first_come or lottery"))),
    };
    let placement = file.placement;
    placement.check().map_err(|(field, message)| invalid(&format!("placement.{field}"), message))?;
    if let Some(tiers) = file.tiers
        && tiers.highest < tiers.home
    {
        return Err(invalid(
            "tiers.highest",
            format!("{} is below the home tier {}", tiers.highest.as_str(), tiers.home.as_str()),
        ));
    }
    Ok(ProgramTerms {
        key: file.key,
        name: file.name,
        authority_region,
        authority_name: file.authority.name,
        budget_fen,
        subsidy_rate_bp,
        domestic_chip_rate_bp,
        enterprise_cap_fen,
        annual_cap_fen,
        program_annual_cap_fen,
        allocation,
        placement,
        tiers: file.tiers,
        voucher_validity_days,
        applications_open_s,
        applications_close_s,
        applicant_kinds,
        purposes,
        providers,
        stacking,
        eligibility: file.eligibility,
    })
}

/// A TOML string: quoted, with the escapes TOML needs.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", "))
}

/// Writes terms back as a programme file that [`parse_program`] reads to the same terms (the
/// programme editor starts from it). Comments of the original file are not kept.
pub fn to_toml(terms: &ProgramTerms) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key} = {value}\n"));
    line("key", quoted(&terms.key));
    line("name", quoted(&terms.name));
    line(
        "authority",
        format!(
            "{{ region = {}, name = {} }}",
            quoted(&terms.authority_region.to_string()),
            quoted(&terms.authority_name)
        ),
    );
    line("budget_fen", terms.budget_fen.fen().to_string());
    line("subsidy_rate_bp", terms.subsidy_rate_bp.basis_points().to_string());
    if let Some(bp) = terms.domestic_chip_rate_bp {
        line("domestic_chip_rate_bp", bp.basis_points().to_string());
    }
    line("enterprise_cap_fen", terms.enterprise_cap_fen.fen().to_string());
    if let Some(cap) = terms.annual_cap_fen {
        line("annual_cap_fen", cap.fen().to_string());
    }
    if let Some(cap) = terms.program_annual_cap_fen {
        line("program_annual_cap_fen", cap.fen().to_string());
    }
    if !terms.allocation.is_first_come() {
        line("allocation", quoted(terms.allocation.as_str()));
    }
    line("voucher_validity_days", terms.voucher_validity_days.to_string());
    line("applications_open", crate::calendar::format_date(terms.applications_open_s));
    line("applications_close", crate::calendar::format_date(terms.applications_close_s - 86_400));
    line("applicant_kinds", list(&terms.applicant_kinds, |k| quoted(k.as_str())));
    line("purposes", list(&terms.purposes, |p| quoted(p.as_str())));
    let providers = match &terms.providers {
        ProviderRule::Any => "{ rule = \"any\" }".to_owned(),
        ProviderRule::GovernmentRun => "{ rule = \"government_run\" }".to_owned(),
        ProviderRule::WithinRegion => "{ rule = \"within_region\" }".to_owned(),
        ProviderRule::Listed { providers } => {
            format!("{{ rule = \"listed\", providers = {} }}", list(providers, |u| quoted(&u.to_string())))
        }
    };
    line("providers", providers);
    let stacking = match terms.stacking.cap_fen {
        Some(cap) => format!("{{ allowed = {}, cap_fen = {} }}", terms.stacking.allowed, cap.fen()),
        None => format!("{{ allowed = {} }}", terms.stacking.allowed),
    };
    line("stacking", stacking);
    let weights = &terms.placement;
    if !weights.is_empty() {
        let mut fields = Vec::new();
        if let Some(bp) = weights.utilization_target_bp {
            fields.push(format!("utilization_target_bp = {bp}"));
        }
        if let Some(fen) = weights.underused_credit_fen_per_gpu_hour {
            fields.push(format!("underused_credit_fen_per_gpu_hour = {fen}"));
        }
        if let Some(bp) = weights.domestic_weight_bp {
            fields.push(format!("domestic_weight_bp = {bp}"));
        }
        line("placement", format!("{{ {} }}", fields.join(", ")));
    }
    if let Some(tiers) = terms.tiers {
        line(
            "tiers",
            format!(
                "{{ home = {}, highest = {}{} }}",
                quoted(tiers.home.as_str()),
                quoted(tiers.highest.as_str()),
                if tiers.trade { ", trade = true" } else { "" }
            ),
        );
    }
    for rule in &terms.eligibility {
        out.push_str(&format!("\n[[eligibility]]\nname = {}\nrule = {}\n", quoted(&rule.name), quoted(&rule.rule)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_programme_is_written_back_to_the_same_terms() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let terms = parse_program(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let written = to_toml(&terms);
                assert_eq!(parse_program(&written).unwrap(), terms, "{}:\n{written}", path.display());
                seen += 1;
            }
        }
        assert_eq!(seen, 8);
        let mut odd = parse_program(include_str!("../../../programs/shanghai-compute.toml")).unwrap();
        odd.name = "a \"quoted\" \\ name".into();
        assert_eq!(parse_program(&to_toml(&odd)).unwrap(), odd);
    }
}
