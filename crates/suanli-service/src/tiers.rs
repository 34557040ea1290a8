//! The scheduling hierarchy: city, metropolitan area, region, national (`data/tiers.csv`).
//!
//! A programme may name a home tier and the highest tier its work may go to
//! (`tiers = { home = "city", highest = "region" }`). The areas are those around the programme's
//! authority: its city (its prefecture, or the whole of a municipality or province), the
//! metropolitan area and the region the data names that contain that city, and the nation. An
//! order is placed in the lowest tier from home that can serve it; each tier it could not be
//! served in is named with the reason.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use suanli_domain::{RegionCode, RegionLevel};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    City,
    Metro,
    Region,
    National,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::City, Tier::Metro, Tier::Region, Tier::National];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::City => "city",
            Tier::Metro => "metro",
            Tier::Region => "region",
            Tier::National => "national",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|tier| tier.as_str() == text)
    }
}

/// A programme's place in the hierarchy: where its work is placed first, and how far up it may
/// go when that tier cannot serve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierTerms {
    pub home: Tier,
    pub highest: Tier,
    /// Whether work the highest tier cannot serve goes to the market between hub nodes: a
    /// request with a limit price is then matched to capacity offered outside the highest tier
    /// at the next clearing (`crate::market`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trade: bool,
}

impl TierTerms {
    /// The tiers an order of the programme may be placed in, lowest first.
    pub fn tiers(self) -> impl Iterator<Item = Tier> {
        Tier::ALL.into_iter().filter(move |tier| (self.home..=self.highest).contains(tier))
    }
}

/// One area of a tier: its name and the divisions it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Area {
    pub tier: Tier,
    pub name: String,
    regions: Vec<RegionCode>,
}

impl Area {
    pub fn contains(&self, code: RegionCode) -> bool {
        self.tier == Tier::National || self.regions.iter().any(|outer| code.within(*outer))
    }

    /// `city (Chengdu)`, `region (Chengdu–Chongqing)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.tier.as_str(), self.name)
    }
}

/// The metropolitan areas and regions of `data/tiers.csv`.
fn areas() -> &'static [Area] {
    static AREAS: LazyLock<Vec<Area>> = LazyLock::new(|| {
        include_str!("../../../data/tiers.csv")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .skip(1)
            .map(|line| {
                let mut fields = line.splitn(3, ',');
                let (tier, name, regions) =
                    (fields.next().unwrap_or(""), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
                Area {
                    tier: Tier::parse(tier).unwrap_or_else(|| panic!("data/tiers.csv: tier {tier:?}")),
                    name: name.to_owned(),
                    regions: regions
                        .split_whitespace()
                        .map(|code| RegionCode::parse(code).unwrap_or_else(|e| panic!("data/tiers.csv: {e}")))
                        .collect(),
                }
            })
            .collect()
    });
    &AREAS
}

/// The area of `tier` around `home` (an authority's region): `None` when the data names no such
/// area around it (a metropolitan area around a city without one).
pub fn area(tier: Tier, home: RegionCode) -> Option<Area> {
    let city = match home.level() {
        RegionLevel::National => return Some(national()),
        RegionLevel::Province => home,
        // A municipality's districts are one city.
        _ if matches!(home.province().code(), 110_000 | 120_000 | 310_000 | 500_000) => home.province(),
        _ => RegionCode::parse(&format!("{:06}", home.code() / 100 * 100)).unwrap_or(home),
    };
    match tier {
        Tier::City => Some(Area {
            tier,
            name: city.name().map_or_else(|| city.to_string(), |n| n.english.to_owned()),
            regions: vec![city],
        }),
        Tier::National => Some(national()),
        _ => areas().iter().find(|a| a.tier == tier && a.regions.iter().any(|outer| city.within(*outer))).cloned(),
    }
}

fn national() -> Area {
    Area { tier: Tier::National, name: "the national network".to_owned(), regions: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chengdu_sits_in_its_metropolitan_area_and_the_chengdu_chongqing_region() {
        let chengdu = RegionCode::parse("510100").unwrap();
        let chongqing = RegionCode::parse("500000").unwrap();
        let deyang = RegionCode::parse("510600").unwrap();
        let city = area(Tier::City, chengdu).unwrap();
        assert_eq!(city.label(), "city (Chengdu)");
        assert!(city.contains(RegionCode::parse("510104").unwrap()) && !city.contains(deyang));
        let metro = area(Tier::Metro, chengdu).unwrap();
        assert_eq!(metro.name, "Chengdu metropolitan area");
        assert!(metro.contains(deyang) && !metro.contains(chongqing));
        let region = area(Tier::Region, chengdu).unwrap();
        assert!(region.contains(chongqing) && !region.contains(RegionCode::parse("310000").unwrap()));
        assert!(area(Tier::National, chengdu).unwrap().contains(RegionCode::parse("640500").unwrap()));
        // A municipality is one city; a city no metropolitan area names has none.
        assert_eq!(
            area(Tier::City, RegionCode::parse("310115").unwrap()).unwrap().regions,
            [RegionCode::parse("310000").unwrap()]
        );
        assert_eq!(area(Tier::Metro, RegionCode::parse("640500").unwrap()), None);
        let terms = TierTerms { home: Tier::City, highest: Tier::Region, trade: false };
        assert_eq!(terms.tiers().collect::<Vec<_>>(), [Tier::City, Tier::Metro, Tier::Region]);
    }
}
