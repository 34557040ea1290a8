//! The chip registry (`data/chip-registry.csv`, built into the binary): a pool names a
//! registered chip, matched by its name or an alias without regard to case, and takes the
//! chip's domestic flag from the registry, so no provider can declare an imported chip domestic
//! to earn a programme's higher rate, nor invent a chip.

use std::sync::LazyLock;

use crate::error::{ErrorCode, Result, ServiceError};

const REGISTRY_CSV: &str = include_str!("../../../data/chip-registry.csv");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chip {
    pub name: String,
    pub vendor: String,
    pub domestic: bool,
    pub aliases: Vec<String>,
}

static REGISTRY: LazyLock<Vec<Chip>> =
    LazyLock::new(|| parse(REGISTRY_CSV).expect("the built-in chip registry parses"));

fn parse(text: &str) -> std::result::Result<Vec<Chip>, String> {
    let mut chips = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("chip,") {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, vendor, domestic, aliases] = fields[..] else {
            return Err(format!("line {}: expected chip,vendor,domestic,aliases", number + 1));
        };
        let domestic = match domestic {
            "true" => true,
            "false" => false,
            other => return Err(format!("line {}: domestic is {other:?}", number + 1)),
        };
        chips.push(Chip {
            name: name.to_owned(),
            vendor: vendor.to_owned(),
            domestic,
            aliases: aliases.split_whitespace().map(str::to_owned).collect(),
        });
    }
    Ok(chips)
}

/// Every registered chip.
pub fn registry() -> &'static [Chip] {
    &REGISTRY
}

/// The registered chip `name` names (its canonical name or an alias, any case).
pub fn find(name: &str) -> Option<&'static Chip> {
    let name = name.trim();
    REGISTRY
        .iter()
        .find(|chip| chip.name.eq_ignore_ascii_case(name) || chip.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// The registered chip, or `chip_unknown` naming the field.
pub fn require(field: &str, name: &str) -> Result<&'static Chip> {
    find(name).ok_or_else(|| {
        let known: Vec<&str> = REGISTRY.iter().map(|c| c.name.as_str()).collect();
        ServiceError::new(
            ErrorCode::ChipUnknown,
            format!("{field}: {name:?} is not a registered chip; registered: {}", known.join(", ")),
        )
    })
}

/// The canonical name of a chip (a name kept before the registry existed stays as it was).
pub fn canonical(name: &str) -> String {
    find(name).map_or_else(|| name.to_owned(), |chip| chip.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_match_without_case() {
        assert_eq!(find("h100").unwrap().name, "H100");
        assert_eq!(find("H100").unwrap().name, "H100");
        assert_eq!(find("910B").unwrap().name, "Ascend-910B");
        assert!(find("ascend-910b").unwrap().domestic);
        assert!(!find("H100").unwrap().domestic);
        assert!(find("NotAChip-XYZ").is_none());
        assert_eq!(require("chip", "NotAChip-XYZ").unwrap_err().code, ErrorCode::ChipUnknown);
    }

    #[test]
    fn every_chip_of_the_shipped_network_is_registered() {
        let chips = include_str!("../../../data/chips.csv");
        for line in chips.lines().filter(|l| !l.starts_with('#') && !l.starts_with("chip,")) {
            let (name, rest) = line.split_once(',').unwrap();
            let domestic = rest.starts_with("true");
            let chip = find(name).unwrap_or_else(|| panic!("{name} is not registered"));
            assert_eq!(chip.domestic, domestic, "{name}");
        }
    }
}
