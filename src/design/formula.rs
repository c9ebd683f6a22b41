//! R/patsy-style model formulas, parsed by hand so errors can point at the offending character.
//!
//! Grammar (whitespace is free between tokens):
//! ```text
//! formula  := response '~' rhs
//! response := name | 'cbind' '(' name ',' name ')'
//! rhs      := [sign] item (sign item)*          sign := '+' | '-'
//! item     := '1' | '0' | '.' | name | func '(' name (',' name)* ')'
//! func     := 'C' | 'sparse' | 'log' | 'log1p' | 'offset' | 'group'
//! name     := [A-Za-z_.][A-Za-z0-9_.]* | '`' any-but-backquote '`'
//! ```
//! `- 1` or `+ 0` removes the intercept; `- term` removes a term (useful after `.`).

use crate::error::{Error, Result};

/// A transformation applied to a numeric column before it enters the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Transform {
    /// The column as is.
    Identity,
    /// Natural logarithm, `log(x)`.
    Log,
    /// `log1p(x)` = log(1 + x), accurate for small x.
    Log1p,
}

impl Transform {
    /// Apply the transform to one value.
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Transform::Identity => x,
            Transform::Log => x.ln(),
            Transform::Log1p => x.ln_1p(),
        }
    }

    /// The coefficient name of the transformed column, e.g. `log(x)`.
    pub fn name(self, column: &str) -> String {
        match self {
            Transform::Identity => column.to_string(),
            Transform::Log => format!("log({column})"),
            Transform::Log1p => format!("log1p({column})"),
        }
    }
}

/// The left-hand side of a formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A single label column.
    Column(Spanned),
    /// `cbind(successes, failures)` for binomial counts.
    Cbind(Spanned, Spanned),
}

/// A column name with the character offset where it appeared, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The column name (backquotes removed).
    pub name: String,
    /// Character offset in the formula text.
    pub pos: usize,
}

/// One right-hand-side term as written, before the schema gives it a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A bare column: its role (numeric, categorical, sparse) comes from its Arrow type.
    Column(Spanned),
    /// `log(x)` / `log1p(x)`: a transformed numeric column.
    Transformed(Transform, Spanned),
    /// `C(x)`: force categorical.
    Categorical(Spanned),
    /// `sparse(x)`: a `list<struct<idx, val>>` column as a sparse block.
    Sparse(Spanned),
    /// `offset(x)`: a known additive term of the linear predictor (coefficient fixed at 1).
    Offset(Spanned),
    /// `group(a, b, ...)`: columns penalised together by the group lasso.
    Group(Vec<Spanned>),
    /// `.`: every column not used elsewhere in the formula.
    Dot(usize),
}

impl Term {
    /// The columns this term reads.
    pub fn columns(&self) -> Vec<&Spanned> {
        match self {
            Term::Column(s) | Term::Transformed(_, s) | Term::Categorical(s) | Term::Sparse(s) | Term::Offset(s) => {
                vec![s]
            }
            Term::Group(v) => v.iter().collect(),
            Term::Dot(_) => vec![],
        }
    }

    /// A canonical key used to match `- term` against `+ term`.
    fn key(&self) -> String {
        match self {
            Term::Column(s) => s.name.clone(),
            Term::Transformed(t, s) => t.name(&s.name),
            Term::Categorical(s) => format!("C({})", s.name),
            Term::Sparse(s) => format!("sparse({})", s.name),
            Term::Offset(s) => format!("offset({})", s.name),
            Term::Group(v) => format!(
                "group({})",
                v.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(",")
            ),
            Term::Dot(_) => ".".into(),
        }
    }
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formula {
    /// The text as given.
    pub text: String,
    /// Left-hand side.
    pub response: Response,
    /// Right-hand-side terms in order, after `- term` removals.
    pub terms: Vec<Term>,
    /// Terms removed with `- term` (applied again after `.` expansion).
    pub removed: Vec<Term>,
    /// Whether the model has an intercept (default yes; `- 1` / `+ 0` remove it).
    pub intercept: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(String),
    Tilde,
    Plus,
    Minus,
    LParen,
    RParen,
    Comma,
    Dot,
}

struct Lexer<'a> {
    chars: Vec<char>,
    i: usize,
    text: &'a str,
}

impl<'a> Lexer<'a> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> Error {
        Error::Formula {
            msg: msg.into(),
            formula: self.text.to_string(),
            pos,
        }
    }

    fn tokens(mut self) -> Result<Vec<(Tok, usize)>> {
        let mut out = Vec::new();
        while self.i < self.chars.len() {
            let c = self.chars[self.i];
            let start = self.i;
            if c.is_whitespace() {
                self.i += 1;
                continue;
            }
            let single = match c {
                '~' => Some(Tok::Tilde),
                '+' => Some(Tok::Plus),
                '-' => Some(Tok::Minus),
                '(' => Some(Tok::LParen),
                ')' => Some(Tok::RParen),
                ',' => Some(Tok::Comma),
                _ => None,
            };
            if let Some(t) = single {
                out.push((t, start));
                self.i += 1;
                continue;
            }
            if c == '`' {
                let mut j = self.i + 1;
                while j < self.chars.len() && self.chars[j] != '`' {
                    j += 1;
                }
                if j >= self.chars.len() {
                    return Err(self.err(start, "unterminated backquoted name"));
                }
                let name: String = self.chars[self.i + 1..j].iter().collect();
                if name.is_empty() {
                    return Err(self.err(start, "empty backquoted name"));
                }
                out.push((Tok::Name(name), start));
                self.i = j + 1;
                continue;
            }
            if c.is_ascii_digit() {
                let mut j = self.i;
                while j < self.chars.len() && (self.chars[j].is_ascii_alphanumeric() || self.chars[j] == '.') {
                    j += 1;
                }
                out.push((Tok::Num(self.chars[self.i..j].iter().collect()), start));
                self.i = j;
                continue;
            }
            if c.is_alphabetic() || c == '_' || c == '.' {
                let mut j = self.i;
                while j < self.chars.len()
                    && (self.chars[j].is_alphanumeric() || self.chars[j] == '_' || self.chars[j] == '.')
                {
                    j += 1;
                }
                let s: String = self.chars[self.i..j].iter().collect();
                out.push((if s == "." { Tok::Dot } else { Tok::Name(s) }, start));
                self.i = j;
                continue;
            }
            return Err(self.err(start, format!("unexpected character '{c}'")));
        }
        Ok(out)
    }
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    i: usize,
    text: &'a str,
    end: usize,
}

impl Parser<'_> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> Error {
        Error::Formula {
            msg: msg.into(),
            formula: self.text.to_string(),
            pos,
        }
    }
    fn peek(&self) -> Option<&(Tok, usize)> {
        self.toks.get(self.i)
    }
    fn pos(&self) -> usize {
        self.peek().map(|t| t.1).unwrap_or(self.end)
    }
    fn describe(&self) -> String {
        match self.peek() {
            None => "end of formula".into(),
            Some((t, _)) => match t {
                Tok::Name(s) => format!("'{s}'"),
                Tok::Num(s) => format!("'{s}'"),
                Tok::Tilde => "'~'".into(),
                Tok::Plus => "'+'".into(),
                Tok::Minus => "'-'".into(),
                Tok::LParen => "'('".into(),
                Tok::RParen => "')'".into(),
                Tok::Comma => "','".into(),
                Tok::Dot => "'.'".into(),
            },
        }
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<usize> {
        match self.peek() {
            Some((t, p)) if *t == want => {
                let p = *p;
                self.i += 1;
                Ok(p)
            }
            _ => Err(self.err(self.pos(), format!("expected {what}, found {}", self.describe()))),
        }
    }
    fn name(&mut self) -> Result<Spanned> {
        match self.peek().cloned() {
            Some((Tok::Name(s), p)) => {
                self.i += 1;
                Ok(Spanned { name: s, pos: p })
            }
            _ => Err(self.err(self.pos(), format!("expected a column name, found {}", self.describe()))),
        }
    }
    fn name_list(&mut self) -> Result<Vec<Spanned>> {
        let mut v = vec![self.name()?];
        while matches!(self.peek(), Some((Tok::Comma, _))) {
            self.i += 1;
            v.push(self.name()?);
        }
        Ok(v)
    }

    fn response(&mut self) -> Result<Response> {
        let n = self.name()?;
        if n.name == "cbind" && matches!(self.peek(), Some((Tok::LParen, _))) {
            self.i += 1;
            let a = self.name()?;
            self.expect(Tok::Comma, "',' between the successes and failures columns of cbind")?;
            let b = self.name()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(Response::Cbind(a, b));
        }
        if matches!(self.peek(), Some((Tok::LParen, _))) {
            return Err(self.err(
                n.pos,
                format!(
                    "'{}(...)' is not supported on the left of '~' (use cbind(successes, failures) or a column)",
                    n.name
                ),
            ));
        }
        Ok(Response::Column(n))
    }

    /// One item; returns None for the intercept markers `1`/`0` (with their value).
    fn item(&mut self) -> Result<Item> {
        let Some((tok, p)) = self.peek().cloned() else {
            return Err(self.err(self.end, "expected a term, found end of formula"));
        };
        match tok {
            Tok::Num(s) => {
                self.i += 1;
                match s.as_str() {
                    "1" => Ok(Item::One),
                    "0" => Ok(Item::Zero(p)),
                    _ => Err(self.err(
                        p,
                        format!("unexpected number '{s}' (only 1 and 0 are allowed, for the intercept)"),
                    )),
                }
            }
            Tok::Dot => {
                self.i += 1;
                Ok(Item::Term(Term::Dot(p)))
            }
            Tok::Name(s) => {
                self.i += 1;
                if !matches!(self.peek(), Some((Tok::LParen, _))) {
                    return Ok(Item::Term(Term::Column(Spanned { name: s, pos: p })));
                }
                self.i += 1; // '('
                let term = match s.as_str() {
                    "C" => Term::Categorical(self.name()?),
                    "sparse" => Term::Sparse(self.name()?),
                    "log" => Term::Transformed(Transform::Log, self.name()?),
                    "log1p" => Term::Transformed(Transform::Log1p, self.name()?),
                    "offset" => Term::Offset(self.name()?),
                    "group" => Term::Group(self.name_list()?),
                    _ => {
                        return Err(self.err(
                            p,
                            format!("unknown function '{s}' (known: C, sparse, log, log1p, offset, group; quote a column name with backquotes)"),
                        ))
                    }
                };
                self.expect(Tok::RParen, "')'")?;
                Ok(Item::Term(term))
            }
            _ => Err(self.err(p, format!("expected a term, found {}", self.describe()))),
        }
    }
}

enum Item {
    One,
    Zero(usize),
    Term(Term),
}

impl Formula {
    /// Parse a formula such as `y ~ age + C(region) + sparse(tokens) - 1`.
    pub fn parse(text: &str) -> Result<Formula> {
        let lex = Lexer {
            chars: text.chars().collect(),
            i: 0,
            text,
        };
        let end = lex.chars.len();
        let toks = lex.tokens()?;
        let mut p = Parser { toks, i: 0, text, end };
        if p.toks.is_empty() {
            return Err(p.err(0, "empty formula: expected 'response ~ terms'"));
        }
        if matches!(p.peek(), Some((Tok::Tilde, _))) {
            return Err(p.err(p.pos(), "missing response before '~'"));
        }
        let response = p.response()?;
        p.expect(Tok::Tilde, "'~'")?;
        let mut terms: Vec<Term> = Vec::new();
        let mut removed: Vec<Term> = Vec::new();
        let mut intercept = true;
        let mut first = true;
        loop {
            let sign = match p.peek() {
                Some((Tok::Plus, _)) => {
                    p.i += 1;
                    1
                }
                Some((Tok::Minus, _)) => {
                    p.i += 1;
                    -1
                }
                None if !first => break,
                _ if first => 1,
                _ => return Err(p.err(p.pos(), format!("expected '+' or '-', found {}", p.describe()))),
            };
            first = false;
            match p.item()? {
                Item::One => intercept = sign > 0,
                Item::Zero(pos) => {
                    if sign < 0 {
                        return Err(p.err(
                            pos,
                            "'- 0' is not meaningful; use '- 1' or '+ 0' to remove the intercept",
                        ));
                    }
                    intercept = false
                }
                Item::Term(t) => {
                    if sign > 0 {
                        let k = t.key();
                        if !terms.iter().any(|u| u.key() == k) {
                            terms.push(t);
                        }
                    } else {
                        let k = t.key();
                        terms.retain(|u| u.key() != k);
                        removed.push(t);
                    }
                }
            }
        }
        Ok(Formula {
            text: text.to_string(),
            response,
            terms,
            removed,
            intercept,
        })
    }

    /// Is `t` removed by a `- term` in the formula?
    pub fn is_removed(&self, t: &Term) -> bool {
        let k = t.key();
        self.removed.iter().any(|u| u.key() == k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: &Formula) -> Vec<String> {
        f.terms.iter().map(|t| t.key()).collect()
    }

    #[test]
    fn parses_the_documented_forms() {
        let f = Formula::parse("y ~ a + b + C(k) + sparse(tokens) + log(x) + log1p(x)").unwrap();
        assert_eq!(
            f.response,
            Response::Column(Spanned {
                name: "y".into(),
                pos: 0
            })
        );
        assert_eq!(names(&f), ["a", "b", "C(k)", "sparse(tokens)", "log(x)", "log1p(x)"]);
        assert!(f.intercept);
        let f = Formula::parse("cbind(s, f) ~ x - 1").unwrap();
        assert!(matches!(f.response, Response::Cbind(..)));
        assert!(!f.intercept);
        let f = Formula::parse("y~x+0").unwrap();
        assert!(!f.intercept);
        let f = Formula::parse("y ~ . - split").unwrap();
        assert_eq!(names(&f), ["."]);
        assert_eq!(f.removed.len(), 1);
        let f = Formula::parse("y ~ `a+b` + offset(o) + group(p, q)").unwrap();
        assert_eq!(names(&f), ["a+b", "offset(o)", "group(p,q)"]);
    }

    #[test]
    fn errors_point_at_the_offending_character() {
        let e = Formula::parse("y ~ a + + b").unwrap_err();
        match e {
            Error::Formula { pos, .. } => assert_eq!(pos, 8),
            _ => panic!("{e:?}"),
        }
        for (text, pos) in [
            ("y ~ a $ b", 6),
            ("y ~ foo(a)", 4),
            ("y a", 2),
            ("~ a", 0),
            ("y ~ log(a", 9),
            ("y ~ 2", 4),
        ] {
            match Formula::parse(text).unwrap_err() {
                Error::Formula { pos: p, .. } => assert_eq!(p, pos, "{text}"),
                e => panic!("{e:?}"),
            }
        }
        let msg = Formula::parse("y ~ a $ b").unwrap_err().to_string();
        assert!(msg.contains("y ~ a $ b\n        ^"), "{msg}");
    }
}
