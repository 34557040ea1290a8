//! The console's two languages. Text lives in `zh.toml` and `en.toml` (compiled in), looked up
//! by `section.key`; amounts are written `¥1,234.56` and times in Asia/Shanghai.

use std::collections::HashMap;
use std::sync::LazyLock;

use suanli_domain::Fen;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `lang` attribute of the page.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header the console speaks (by quality, then
    /// order); Chinese when none.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality =
                pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Lang::Zh,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map_or(Lang::Zh, |(_, lang)| lang)
    }
}

fn flatten(text: &str) -> HashMap<String, String> {
    let table: toml::Table = text.parse().expect("the translation files are valid TOML");
    let mut flat = HashMap::new();
    for (section, values) in table {
        let toml::Value::Table(values) = values else { panic!("{section}: translations sit in sections") };
        for (key, value) in values {
            let toml::Value::String(value) = value else { panic!("{section}.{key}: a translation is text") };
            flat.insert(format!("{section}.{key}"), value);
        }
    }
    flat
}

static ZH: LazyLock<HashMap<String, String>> = LazyLock::new(|| flatten(include_str!("zh.toml")));
static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| flatten(include_str!("en.toml")));

/// The text of one language.
#[derive(Clone, Copy)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    fn table(self) -> &'static HashMap<String, String> {
        match self.lang {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }

    /// The text for `key`; the key itself if it has none (the tests see to it that none is
    /// missing).
    pub fn t(&self, key: &'static str) -> &'static str {
        self.table().get(key).map_or(key, String::as_str)
    }

    /// The text for `key` when there is one.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.table().get(key).map(String::as_str)
    }

    /// The language verdicts' reasons are worded in.
    pub fn wording(&self) -> suanli_domain::Wording {
        match self.lang {
            Lang::Zh => suanli_domain::Wording::Chinese,
            Lang::En => suanli_domain::Wording::English,
        }
    }

    /// The text for `key` with each `{name}` replaced by its value.
    pub fn fill(&self, key: &'static str, values: &[(&str, &str)]) -> String {
        values.iter().fold(self.t(key).to_owned(), |text, (name, value)| text.replace(&format!("{{{name}}}"), value))
    }

    /// A state's name (`state.open`...), or the state as it is.
    pub fn state(&self, state: &str) -> String {
        self.get(&format!("state.{state}")).map_or_else(|| state.to_owned(), str::to_owned)
    }
}

/// `¥1,234.56` (a minus sign before the yuan sign when negative).
pub fn yuan(amount: Fen) -> String {
    let fen = i128::from(amount.fen());
    let (sign, fen) = if fen < 0 { ("-", -fen) } else { ("", fen) };
    let whole = (fen / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}¥{grouped}.{:02}", fen % 100)
}

/// `2026-03-02 08:00` in Asia/Shanghai.
pub fn when(time_s: i64) -> String {
    let text = suanli_service::calendar::format_timestamp(time_s);
    text.get(..16).map_or(text.clone(), |t| t.replacen('T', " ", 1))
}

/// Basis points as a percentage: `80%`, `62.5%`.
pub fn percent(basis_points: u16) -> String {
    if basis_points.is_multiple_of(100) {
        format!("{}%", basis_points / 100)
    } else {
        format!("{:.2}%", f64::from(basis_points) / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_key_and_no_empty_text() {
        let zh: std::collections::BTreeSet<_> = ZH.keys().collect();
        let en: std::collections::BTreeSet<_> = EN.keys().collect();
        assert_eq!(zh, en, "zh.toml and en.toml name the same keys");
        assert!(ZH.values().chain(EN.values()).all(|v| !v.trim().is_empty()));
    }

    #[test]
    fn amounts_are_grouped_yuan() {
        assert_eq!(yuan(Fen::new(123_456)), "¥1,234.56");
        assert_eq!(yuan(Fen::new(5)), "¥0.05");
        assert_eq!(yuan(Fen::new(600_000_000_00)), "¥600,000,000.00");
        assert_eq!(yuan(Fen::new(-100)), "-¥1.00");
        assert_eq!(yuan(Fen::new(i64::MIN)), "-¥92,233,720,368,547,758.08");
    }

    #[test]
    fn accept_language_picks_the_best_spoken() {
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr,en;q=0.5,zh-CN;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("de"), Lang::Zh);
        assert_eq!(Lang::from_accept_language(""), Lang::Zh);
    }

    #[test]
    fn times_are_in_shanghai() {
        assert_eq!(when(0), "1970-01-01 08:00");
    }
}
