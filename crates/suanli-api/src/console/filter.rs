//! A list's filter: by programme and by state, from the query (`?program=prg-1&state=submitted`),
//! applied by the same functions as the API's list filters. A value the list does not know is not
//! applied, and the page says so in its own words (a link cannot put text on the page).

use axum::http::Uri;
use suanli_domain::ProgramId;
use suanli_service::View;

use super::i18n::Tr;

pub struct Filter {
    pub program: Option<ProgramId>,
    pub state: Option<String>,
    /// What the selects offer: every programme, and the states of this list.
    pub programs: Vec<(String, String)>,
    pub states: Vec<(&'static str, String)>,
    /// The chosen values as they stand in the query (for the selects).
    pub chosen_program: String,
    pub chosen_state: String,
    /// What was not understood, worded for the page.
    pub error: Option<String>,
}

/// One query parameter's value (`+` and `%XX` decoded; a malformed escape is kept as it is).
pub fn query_value(uri: &Uri, name: &str) -> Option<String> {
    let raw = uri.query()?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Filter {
    /// The filter the query asks for, over a list whose rows can be in `states`.
    pub fn read(view: &View, tr: Tr, uri: &Uri, states: &[&'static str]) -> Filter {
        let chosen_program = query_value(uri, "program").unwrap_or_default();
        let chosen_state = query_value(uri, "state").unwrap_or_default();
        let mut error = None;
        let program = match chosen_program.as_str() {
            "" => None,
            text => match view.find_program(text) {
                Ok(id) => Some(id),
                Err(_) => {
                    error = Some(tr.t("filter.bad_program").to_owned());
                    None
                }
            },
        };
        let state = match chosen_state.as_str() {
            "" => None,
            text if states.contains(&text) => Some(text.to_owned()),
            _ => {
                error = Some(tr.t("filter.bad_state").to_owned());
                None
            }
        };
        Filter {
            program,
            state,
            programs: view.state().programs.values().map(|p| (p.id.to_string(), p.terms.name.clone())).collect(),
            states: states.iter().map(|s| (*s, tr.state(s))).collect(),
            chosen_program,
            chosen_state,
            error,
        }
    }
}
