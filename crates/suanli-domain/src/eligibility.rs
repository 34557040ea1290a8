//! The eligibility rule language: small boolean expressions over an enterprise's profile.
//!
//! A programme lists named rules; an application is eligible when every rule holds. Each rule is
//! an expression such as `revenue_fen >= 5000000_00 or research_project`. Evaluation gives a
//! verdict with a reason written for people (the reviewer and the applicant read the same text),
//! naming the figures that decided it.
//!
//! ```text
//! rule       = or
//! or         = and { "or" and }
//! and        = unary { "and" unary }
//! unary      = "not" unary | "(" or ")" | comparison
//! comparison = number_field op number          revenue_fen >= 5000000_00, headcount <= 500
//!            | "kind" ("==" | "!=") kind        kind == sme
//!            | "kind" "in" "[" kind {"," kind} "]"
//!            | "region" "within" code           region within 310000
//!            | "research_project"               takes part in at least one research project
//! op         = ">=" | "<=" | ">" | "<" | "==" | "!="
//! number_field = "revenue_fen" | "headcount" | "research_projects"
//! kind       = "sme" | "startup" | "research_institute"
//! ```
//!
//! Numbers are non-negative integers and may group digits with `_`. A parse error names the
//! column where it happened.

use std::fmt;

use crate::{Fen, RegionCode};

/// Who may apply: the applicant kinds programmes name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApplicantKind {
    /// A small or medium-sized enterprise (中小企业).
    Sme,
    /// A start-up (初创企业).
    Startup,
    /// A research institute or university lab (科研机构).
    ResearchInstitute,
}

impl ApplicantKind {
    pub const ALL: [ApplicantKind; 3] = [ApplicantKind::Sme, ApplicantKind::Startup, ApplicantKind::ResearchInstitute];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplicantKind::Sme => "sme",
            ApplicantKind::Startup => "startup",
            ApplicantKind::ResearchInstitute => "research_institute",
        }
    }

    pub fn parse(text: &str) -> Result<ApplicantKind, KindError> {
        ApplicantKind::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| KindError(text.to_owned()))
    }
}

impl ApplicantKind {
    /// The kind as Chinese programme documents name it.
    pub fn chinese(self) -> &'static str {
        match self {
            ApplicantKind::Sme => "中小企业",
            ApplicantKind::Startup => "初创企业",
            ApplicantKind::ResearchInstitute => "科研机构",
        }
    }
}

/// The language a verdict's reason is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wording {
    English,
    Chinese,
}

impl fmt::Display for ApplicantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("applicant kind must be one of sme, startup, research_institute, got {0:?}")]
pub struct KindError(String);

/// The facts about an applicant that rules may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub kind: ApplicantKind,
    pub region: RegionCode,
    pub headcount: u32,
    pub revenue: Fen,
    pub research_projects: u32,
}

/// A parsed rule, keeping its source text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    source: String,
    root: Node,
}

/// A rule's answer for one profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// Why, in words: the figures that decided it.
    pub reason: String,
}

/// Why a rule did not parse, with the 1-based column where the problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct RuleError {
    pub column: usize,
    pub message: String,
}

impl RuleError {
    /// The rule with a caret under the column, for showing under an error message.
    pub fn pointer(&self, source: &str) -> String {
        format!("{source}\n{}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Compare { field: NumberField, op: Op, value: i64 },
    KindIn { kinds: Vec<ApplicantKind>, negated: bool },
    RegionWithin(RegionCode),
    ResearchProject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumberField {
    RevenueFen,
    Headcount,
    ResearchProjects,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    AtLeast,
    AtMost,
    Above,
    Below,
    Equal,
    NotEqual,
}

impl Rule {
    /// The longest rule accepted, so a programme file cannot hold an expression that takes long to
    /// parse or evaluate.
    pub const SOURCE_BYTES_MAX: usize = 1_000;

    pub fn parse(source: &str) -> Result<Rule, RuleError> {
        if source.len() > Rule::SOURCE_BYTES_MAX {
            return Err(RuleError {
                column: Rule::SOURCE_BYTES_MAX,
                message: format!("a rule may be at most {} bytes long", Rule::SOURCE_BYTES_MAX),
            });
        }
        let tokens = tokenize(source)?;
        let mut parser = Parser { tokens, position: 0, end: source.chars().count() + 1, depth: 0 };
        let root = parser.or()?;
        if let Some(token) = parser.peek() {
            return Err(RuleError {
                column: token.column,
                message: format!("expected 'and', 'or' or the end of the rule, found {}", token.kind),
            });
        }
        Ok(Rule { source: source.to_owned(), root })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn evaluate(&self, profile: &Profile) -> Verdict {
        self.evaluate_worded(profile, Wording::English)
    }

    /// The verdict with its reason in `wording` (the same decision in either language).
    pub fn evaluate_worded(&self, profile: &Profile, wording: Wording) -> Verdict {
        let (passed, reason) = evaluate(&self.root, profile, wording);
        Verdict { passed, reason }
    }
}

fn evaluate(node: &Node, profile: &Profile, wording: Wording) -> (bool, String) {
    let chinese = wording == Wording::Chinese;
    let (and_not, both) = if chinese { ("；且", "，") } else { ("; and ", ", ") };
    match node {
        Node::Or(children) => {
            let results: Vec<(bool, String)> = children.iter().map(|child| evaluate(child, profile, wording)).collect();
            match results.iter().find(|(passed, _)| *passed) {
                Some((_, reason)) => (true, reason.clone()),
                None => (false, join(results.into_iter().map(|(_, reason)| reason), and_not)),
            }
        }
        Node::And(children) => {
            let results: Vec<(bool, String)> = children.iter().map(|child| evaluate(child, profile, wording)).collect();
            if results.iter().all(|(passed, _)| *passed) {
                (true, join(results.into_iter().map(|(_, reason)| reason), both))
            } else {
                (false, join(results.into_iter().filter(|(passed, _)| !passed).map(|(_, reason)| reason), and_not))
            }
        }
        Node::Not(child) => {
            let (passed, reason) = evaluate(child, profile, wording);
            (!passed, reason)
        }
        Node::Compare { field, op, value } => {
            let (name, actual, shown_actual, shown_value) = match field {
                NumberField::RevenueFen => {
                    ("annual revenue", profile.revenue.fen(), profile.revenue.to_string(), Fen::new(*value).to_string())
                }
                NumberField::Headcount => {
                    ("headcount", i64::from(profile.headcount), profile.headcount.to_string(), value.to_string())
                }
                NumberField::ResearchProjects => (
                    "research projects",
                    i64::from(profile.research_projects),
                    profile.research_projects.to_string(),
                    value.to_string(),
                ),
            };
            let (passed, yes, no) = match (op, chinese) {
                (Op::AtLeast, false) => (actual >= *value, "is at least", "is below"),
                (Op::AtMost, false) => (actual <= *value, "is at most", "is above"),
                (Op::Above, false) => (actual > *value, "is above", "is not above"),
                (Op::Below, false) => (actual < *value, "is below", "is not below"),
                (Op::Equal, false) => (actual == *value, "equals", "does not equal"),
                (Op::NotEqual, false) => (actual != *value, "differs from", "equals"),
                (Op::AtLeast, true) => (actual >= *value, "不低于", "低于"),
                (Op::AtMost, true) => (actual <= *value, "不高于", "高于"),
                (Op::Above, true) => (actual > *value, "高于", "不高于"),
                (Op::Below, true) => (actual < *value, "低于", "不低于"),
                (Op::Equal, true) => (actual == *value, "等于", "不等于"),
                (Op::NotEqual, true) => (actual != *value, "不等于", "等于"),
            };
            let name = match (chinese, name) {
                (false, name) => name,
                (true, "annual revenue") => "上年营业收入",
                (true, "headcount") => "从业人数",
                (true, _) => "在研科研项目数",
            };
            (passed, format!("{name} {shown_actual} {} {shown_value}", if passed { yes } else { no }))
        }
        Node::KindIn { kinds, negated } => {
            let listed = kinds.contains(&profile.kind);
            let passed = listed != *negated;
            let reason = if chinese {
                let names = join(kinds.iter().map(|k| k.chinese().to_owned()), "、");
                let verb = if listed { "属于" } else { "不属于" };
                format!("主体类型 {} {verb} {names}", profile.kind.chinese())
            } else {
                let names = join(kinds.iter().map(|k| k.as_str().to_owned()), ", ");
                let verb = if listed { "is one of" } else { "is not one of" };
                format!("kind {} {verb} {names}", profile.kind)
            };
            (passed, reason)
        }
        Node::RegionWithin(outer) => {
            let passed = profile.region.within(*outer);
            let outer_name = outer.name().map_or_else(
                || outer.to_string(),
                |n| format!("{outer} {}", if chinese { n.chinese } else { n.english }),
            );
            let reason = match (chinese, passed) {
                (false, true) => format!("region {} is within {outer_name}", profile.region),
                (false, false) => format!("region {} is outside {outer_name}", profile.region),
                (true, true) => format!("注册地 {} 位于 {outer_name} 之内", profile.region),
                (true, false) => format!("注册地 {} 不在 {outer_name} 之内", profile.region),
            };
            (passed, reason)
        }
        Node::ResearchProject => match (profile.research_projects, chinese) {
            (0, false) => (false, "takes part in no government-sponsored research project".to_owned()),
            (1, false) => (true, "takes part in 1 government-sponsored research project".to_owned()),
            (n, false) => (true, format!("takes part in {n} government-sponsored research projects")),
            (0, true) => (false, "未参与政府资助的科研项目".to_owned()),
            (n, true) => (true, format!("参与 {n} 个政府资助的科研项目")),
        },
    }
}

fn join(parts: impl Iterator<Item = String>, separator: &str) -> String {
    parts.collect::<Vec<_>>().join(separator)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenKind {
    Word(String),
    Number(i64),
    Op(Op),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Word(word) => write!(f, "'{word}'"),
            TokenKind::Number(number) => write!(f, "the number {number}"),
            TokenKind::Op(op) => write!(f, "'{}'", op_text(*op)),
            TokenKind::Open => f.write_str("'('"),
            TokenKind::Close => f.write_str("')'"),
            TokenKind::OpenBracket => f.write_str("'['"),
            TokenKind::CloseBracket => f.write_str("']'"),
            TokenKind::Comma => f.write_str("','"),
        }
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::AtLeast => ">=",
        Op::AtMost => "<=",
        Op::Above => ">",
        Op::Below => "<",
        Op::Equal => "==",
        Op::NotEqual => "!=",
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    column: usize,
}

fn tokenize(source: &str) -> Result<Vec<Token>, RuleError> {
    let characters: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let column = index + 1;
        let c = characters[index];
        let next = characters.get(index + 1).copied();
        let (kind, width) = match c {
            c if c.is_whitespace() => {
                index += 1;
                continue;
            }
            '(' => (TokenKind::Open, 1),
            ')' => (TokenKind::Close, 1),
            '[' => (TokenKind::OpenBracket, 1),
            ']' => (TokenKind::CloseBracket, 1),
            ',' => (TokenKind::Comma, 1),
            '>' if next == Some('=') => (TokenKind::Op(Op::AtLeast), 2),
            '<' if next == Some('=') => (TokenKind::Op(Op::AtMost), 2),
            '=' if next == Some('=') => (TokenKind::Op(Op::Equal), 2),
            '!' if next == Some('=') => (TokenKind::Op(Op::NotEqual), 2),
            '>' => (TokenKind::Op(Op::Above), 1),
            '<' => (TokenKind::Op(Op::Below), 1),
            c if c.is_ascii_digit() => {
                let length = characters[index..].iter().take_while(|c| c.is_ascii_digit() || **c == '_').count();
                let text: String = characters[index..index + length].iter().filter(|c| **c != '_').collect();
                if characters[index + length - 1] == '_' {
                    return Err(RuleError { column, message: "a number may not end with '_'".to_owned() });
                }
                let number = text.parse::<i64>().map_err(|_| RuleError {
                    column,
                    message: "number is too large (the largest is 9223372036854775807)".to_owned(),
                })?;
                (TokenKind::Number(number), length)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let length = characters[index..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
                (TokenKind::Word(characters[index..index + length].iter().collect()), length)
            }
            '=' => return Err(RuleError { column, message: "'=' is not an operator; use '==' to compare".to_owned() }),
            other => return Err(RuleError { column, message: format!("unexpected character {other:?}") }),
        };
        tokens.push(Token { kind, column });
        index += width;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    /// The column just past the end, for errors at the end of the rule.
    end: usize,
    depth: usize,
}

impl Parser {
    /// How deeply parentheses and `not` may nest, so a hostile rule cannot exhaust the stack.
    const DEPTH_MAX: usize = 32;

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self, expected: &str) -> Result<Token, RuleError> {
        match self.tokens.get(self.position) {
            Some(token) => {
                self.position += 1;
                Ok(token.clone())
            }
            None => {
                Err(RuleError { column: self.end, message: format!("expected {expected}, found the end of the rule") })
            }
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: TokenKind::Word(w), .. }) if w == word)
    }

    fn or(&mut self) -> Result<Node, RuleError> {
        let mut children = vec![self.and()?];
        while self.is_word("or") {
            self.position += 1;
            children.push(self.and()?);
        }
        Ok(if children.len() == 1 { children.pop().expect("one child") } else { Node::Or(children) })
    }

    fn and(&mut self) -> Result<Node, RuleError> {
        let mut children = vec![self.unary()?];
        while self.is_word("and") {
            self.position += 1;
            children.push(self.unary()?);
        }
        Ok(if children.len() == 1 { children.pop().expect("one child") } else { Node::And(children) })
    }

    fn unary(&mut self) -> Result<Node, RuleError> {
        let token = self.next("a condition")?;
        if self.depth >= Parser::DEPTH_MAX {
            return Err(RuleError {
                column: token.column,
                message: format!("the rule nests more than {} levels deep", Parser::DEPTH_MAX),
            });
        }
        match token.kind {
            TokenKind::Word(word) if word == "not" => {
                self.depth += 1;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            TokenKind::Open => {
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.next("')'")?;
                if close.kind != TokenKind::Close {
                    return Err(RuleError {
                        column: close.column,
                        message: format!("expected ')', found {}", close.kind),
                    });
                }
                Ok(inner)
            }
            TokenKind::Word(word) => self.comparison(&word, token.column),
            other => Err(RuleError { column: token.column, message: format!("expected a condition, found {other}") }),
        }
    }

    fn comparison(&mut self, field: &str, column: usize) -> Result<Node, RuleError> {
        let number_field = match field {
            "revenue_fen" => Some(NumberField::RevenueFen),
            "headcount" => Some(NumberField::Headcount),
            "research_projects" => Some(NumberField::ResearchProjects),
            _ => None,
        };
        if let Some(field) = number_field {
            let op = self.next("a comparison such as '>='")?;
            let TokenKind::Op(op) = op.kind else {
                return Err(RuleError {
                    column: op.column,
                    message: format!("expected a comparison such as '>=', found {}", op.kind),
                });
            };
            let value = self.next(&format!("a number after '{}'", op_text(op)))?;
            let TokenKind::Number(value_number) = value.kind else {
                return Err(RuleError {
                    column: value.column,
                    message: format!("expected a number after '{}', found {}", op_text(op), value.kind),
                });
            };
            return Ok(Node::Compare { field, op, value: value_number });
        }
        match field {
            "research_project" => Ok(Node::ResearchProject),
            "kind" => {
                let op = self.next("'==', '!=' or 'in' after 'kind'")?;
                match op.kind {
                    TokenKind::Op(op @ (Op::Equal | Op::NotEqual)) => {
                        let kind = self.kind()?;
                        Ok(Node::KindIn { kinds: vec![kind], negated: op == Op::NotEqual })
                    }
                    TokenKind::Word(word) if word == "in" => {
                        let open = self.next("'['")?;
                        if open.kind != TokenKind::OpenBracket {
                            return Err(RuleError {
                                column: open.column,
                                message: format!("expected '[', found {}", open.kind),
                            });
                        }
                        let mut kinds = vec![self.kind()?];
                        loop {
                            let token = self.next("',' or ']'")?;
                            match token.kind {
                                TokenKind::Comma => kinds.push(self.kind()?),
                                TokenKind::CloseBracket => break,
                                other => {
                                    return Err(RuleError {
                                        column: token.column,
                                        message: format!("expected ',' or ']', found {other}"),
                                    });
                                }
                            }
                        }
                        Ok(Node::KindIn { kinds, negated: false })
                    }
                    other => Err(RuleError {
                        column: op.column,
                        message: format!("expected '==', '!=' or 'in' after 'kind', found {other}"),
                    }),
                }
            }
            "region" => {
                let within = self.next("'within' after 'region'")?;
                if within.kind != TokenKind::Word("within".to_owned()) {
                    return Err(RuleError {
                        column: within.column,
                        message: format!("expected 'within' after 'region', found {}", within.kind),
                    });
                }
                let code = self.next("a six-digit region code")?;
                let region = match code.kind {
                    TokenKind::Number(number) => RegionCode::parse(&format!("{number:06}"))
                        .map_err(|error| RuleError { column: code.column, message: error.to_string() })?,
                    other => {
                        return Err(RuleError {
                            column: code.column,
                            message: format!("expected a six-digit region code, found {other}"),
                        });
                    }
                };
                Ok(Node::RegionWithin(region))
            }
            other => Err(RuleError {
                column,
                message: format!(
                    "unknown field '{other}'; the fields are revenue_fen, headcount, research_projects, \
                     research_project, kind and region"
                ),
            }),
        }
    }

    fn kind(&mut self) -> Result<ApplicantKind, RuleError> {
        let token = self.next("an applicant kind")?;
        match &token.kind {
            TokenKind::Word(word) => ApplicantKind::parse(word)
                .map_err(|error| RuleError { column: token.column, message: error.to_string() }),
            other => Err(RuleError {
                column: token.column,
                message: format!("expected an applicant kind (sme, startup, research_institute), found {other}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            kind: ApplicantKind::Sme,
            region: RegionCode::parse("310115").unwrap(),
            headcount: 120,
            revenue: Fen::new(3_000_000_00),
            research_projects: 0,
        }
    }

    fn check(rule: &str, passed: bool, reason: &str) {
        let verdict = Rule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}")).evaluate(&profile());
        assert_eq!((verdict.passed, verdict.reason.as_str()), (passed, reason), "{rule}");
    }

    #[test]
    fn rules_give_verdicts_with_reasons() {
        check(
            "revenue_fen >= 5000000_00 or research_project",
            false,
            "annual revenue ¥3,000,000.00 is below ¥5,000,000.00; and takes part in no government-sponsored research project",
        );
        check("revenue_fen >= 1000000_00", true, "annual revenue ¥3,000,000.00 is at least ¥1,000,000.00");
        check("headcount <= 500", true, "headcount 120 is at most 500");
        check("headcount < 100", false, "headcount 120 is not below 100");
        check("headcount > 100 and headcount != 7", true, "headcount 120 is above 100, headcount 120 differs from 7");
        check("kind in [sme, startup]", true, "kind sme is one of sme, startup");
        check("kind == research_institute", false, "kind sme is not one of research_institute");
        check("kind != research_institute", true, "kind sme is not one of research_institute");
        check("region within 310000", true, "region 310115 is within 310000 Shanghai");
        check("region within 510100", false, "region 310115 is outside 510100 Chengdu");
        check("not (headcount > 500)", true, "headcount 120 is not above 500");
        check("research_projects == 0", true, "research projects 0 equals 0");
        check(
            "(headcount <= 500 and kind == sme) or research_project",
            true,
            "headcount 120 is at most 500, kind sme is one of sme",
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // false and false or true = (false and false) or true = true
        check("headcount > 999 and headcount > 998 or headcount > 1", true, "headcount 120 is above 1");
    }

    fn error(rule: &str, column: usize, message: &str) {
        let error = Rule::parse(rule).unwrap_err();
        assert_eq!(error.column, column, "{rule}: {error}");
        assert!(error.message.contains(message), "{rule}: {error}");
    }

    #[test]
    fn parse_errors_point_at_the_column() {
        error("revenue_fen >= ", 16, "expected a number after '>='");
        error("revenue_fen >= abc", 16, "expected a number after '>=', found 'abc'");
        error("revenu_fen >= 1", 1, "unknown field 'revenu_fen'");
        error("headcount = 5", 11, "use '=='");
        error("kind in [sme, giant]", 15, "applicant kind must be one of");
        error("kind in [sme startup]", 14, "expected ',' or ']'");
        error("region within 999999", 15, "no province-level division");
        error("headcount <= 500 500", 18, "expected 'and', 'or' or the end");
        error("(headcount <= 500", 18, "expected ')'");
        error("headcount <= 5_", 14, "may not end with '_'");
        error("headcount <= 99999999999999999999", 14, "too large");
        error("headcount ≤ 5", 11, "unexpected character");
        error("", 1, "expected a condition, found the end");
        error(&format!("{}research_project", "not ".repeat(40)), 129, "nests more than 32");
        assert!(Rule::parse(&"(".repeat(2000)).unwrap_err().message.contains("at most 1000 bytes"));
    }

    #[test]
    fn the_pointer_marks_the_column() {
        let error = Rule::parse("headcount <= x").unwrap_err();
        assert_eq!(error.pointer("headcount <= x"), "headcount <= x\n             ^");
    }

    #[test]
    fn reasons_are_worded_in_chinese_with_the_same_decision() {
        let chinese = |rule: &str| Rule::parse(rule).unwrap().evaluate_worded(&profile(), Wording::Chinese);
        let verdict = chinese("revenue_fen >= 5000000_00 or research_project");
        assert!(!verdict.passed);
        assert_eq!(
            verdict.reason,
            format!(
                "上年营业收入 {} 低于 {}；且未参与政府资助的科研项目",
                Fen::new(3_000_000_00),
                Fen::new(5_000_000_00)
            )
        );
        assert_eq!(chinese("kind in [sme, startup]").reason, "主体类型 中小企业 属于 中小企业、初创企业");
        assert_eq!(chinese("region within 310000").reason, "注册地 310115 位于 310000 上海市 之内");
        assert_eq!(chinese("headcount <= 100").reason, "从业人数 120 高于 100");
        for rule in ["headcount > 5 and not kind == startup", "research_projects >= 1 or region within 110000"] {
            let english = Rule::parse(rule).unwrap().evaluate(&profile());
            assert_eq!(chinese(rule).passed, english.passed, "{rule}");
        }
    }
}
