//! Mapping filters: a small expression language over the event, parsed when the mapping is
//! saved and evaluated per event.
//!
//! ```text
//! data.total > 100 and data.plan == "pro"
//! not (data.country in ["US", "CA"]) or event.context.library.name contains "analytics"
//! data.coupon                      # true when present and not null/false/""/0
//! ```
//!
//! Operators: `==`, `!=`, `>`, `>=`, `<`, `<=`, `contains` (substring, array element or object
//! key), `in` (the reverse of contains); `and`, `or`, `not` (also `&&`, `||`, `!`), brackets.
//! Operands: paths (as in parameters: `data.*`, `event.*`, `user_id`, ...), strings in double
//! quotes (JSON escapes), numbers, `true`, `false`, `null`, arrays of literals.
//! Comparisons of numbers are numeric; `<`-style comparisons of anything but two numbers or two
//! strings are false. A missing path is `null`.

use crate::params::ROOTS;
use serde_json::{Map, Value};
use std::fmt;
use tributary_model::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Op, Operand),
    Truthy(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Path),
    Lit(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    In,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, FilterError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        if let Some(sym) = ["==", "!=", ">=", "<=", "&&", "||"].into_iter().find(|s| *s == two) {
            out.push(Tok::Sym(sym));
            i += 2;
            continue;
        }
        if let Some(sym) = [">", "<", "!", "(", ")", "[", "]", ","].into_iter().find(|s| s.as_bytes()[0] == c) {
            out.push(Tok::Sym(sym));
            i += 1;
            continue;
        }
        if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            if i >= b.len() {
                return Err(FilterError(format!("unterminated string starting at character {start}")));
            }
            i += 1;
            let s: String = serde_json::from_str(&src[start..i]).map_err(|e| FilterError(format!("bad string: {e}")))?;
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-')) {
                i += 1;
            }
            out.push(Tok::Num(src[start..i].to_string()));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'-' | b'$')) {
                i += 1;
            }
            out.push(Tok::Word(src[start..i].to_string()));
            continue;
        }
        return Err(FilterError(format!("unexpected character `{}` at {i}", c as char)));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }
    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut l = self.and()?;
        while self.is_word("or") || self.is_sym("||") {
            self.pos += 1;
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut l = self.not()?;
        while self.is_word("and") || self.is_sym("&&") {
            self.pos += 1;
            l = Expr::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.is_word("not") || self.is_sym("!") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, FilterError> {
        if self.is_sym("(") {
            self.pos += 1;
            let e = self.or()?;
            if !self.is_sym(")") {
                return Err(FilterError("missing `)`".into()));
            }
            self.pos += 1;
            return Ok(e);
        }
        let l = self.operand()?;
        let op = match self.peek() {
            Some(Tok::Sym("==")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Word(w)) if w == "contains" => Op::Contains,
            Some(Tok::Word(w)) if w == "in" => Op::In,
            _ => return Ok(Expr::Truthy(l)),
        };
        self.pos += 1;
        Ok(Expr::Cmp(l, op, self.operand()?))
    }
    fn operand(&mut self) -> Result<Operand, FilterError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Operand::Lit(Value::String(s))),
            Some(Tok::Num(n)) => serde_json::from_str::<Value>(&n)
                .ok()
                .filter(Value::is_number)
                .map(Operand::Lit)
                .ok_or_else(|| FilterError(format!("`{n}` is not a number"))),
            Some(Tok::Word(w)) => match w.as_str() {
                "true" => Ok(Operand::Lit(Value::Bool(true))),
                "false" => Ok(Operand::Lit(Value::Bool(false))),
                "null" => Ok(Operand::Lit(Value::Null)),
                "and" | "or" | "not" | "in" | "contains" => Err(FilterError(format!("expected a value, found `{w}`"))),
                _ => {
                    let p = Path::parse(&w).map_err(|e| FilterError(e.to_string()))?;
                    if !ROOTS.contains(&p.root()) {
                        return Err(FilterError(format!("`{w}` must start with one of {}", ROOTS.join(", "))));
                    }
                    Ok(Operand::Path(p))
                }
            },
            Some(Tok::Sym("[")) => {
                let mut items = Vec::new();
                while !self.is_sym("]") {
                    match self.operand()? {
                        Operand::Lit(v) => items.push(v),
                        Operand::Path(p) => return Err(FilterError(format!("a list holds literals only, found `{p}`"))),
                    }
                    if self.is_sym(",") {
                        self.pos += 1;
                    } else if !self.is_sym("]") {
                        return Err(FilterError("expected `,` or `]` in a list".into()));
                    }
                }
                self.pos += 1;
                Ok(Operand::Lit(Value::Array(items)))
            }
            Some(t) => Err(FilterError(format!("expected a value, found {t:?}"))),
            None => Err(FilterError("the expression ends too early".into())),
        }
    }
}

impl Filter {
    pub fn parse(src: &str) -> Result<Filter, FilterError> {
        let mut p = Parser { toks: lex(src)?, pos: 0 };
        if p.toks.is_empty() {
            return Err(FilterError("the filter is empty".into()));
        }
        let expr = p.or()?;
        if p.pos < p.toks.len() {
            return Err(FilterError(format!("unexpected {:?} after the expression", p.toks[p.pos])));
        }
        Ok(Filter { expr })
    }

    /// Evaluate against an event view (see [`crate::params::event_view`]).
    pub fn eval(&self, view: &Map<String, Value>) -> bool {
        eval(&self.expr, view)
    }
}

fn eval(e: &Expr, view: &Map<String, Value>) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, view) || eval(b, view),
        Expr::And(a, b) => eval(a, view) && eval(b, view),
        Expr::Not(a) => !eval(a, view),
        Expr::Truthy(o) => truthy(&value(o, view)),
        Expr::Cmp(l, op, r) => compare(&value(l, view), *op, &value(r, view)),
    }
}

fn value(o: &Operand, view: &Map<String, Value>) -> Value {
    match o {
        Operand::Lit(v) => v.clone(),
        Operand::Path(p) => view.get(p.root()).and_then(|root| p.resolve_rest(root)).cloned().unwrap_or(Value::Null),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.to_string().parse::<f64>().map(|f| f != 0.0).unwrap_or(true),
        _ => true,
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(l: &Value, op: Op, r: &Value) -> bool {
    use std::cmp::Ordering::*;
    let ord = match (l, r) {
        (Value::Number(_), Value::Number(_)) => num(l).zip(num(r)).and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => equal(l, r),
        Op::Ne => !equal(l, r),
        Op::Gt => ord == Some(Greater),
        Op::Ge => matches!(ord, Some(Greater | Equal)),
        Op::Lt => ord == Some(Less),
        Op::Le => matches!(ord, Some(Less | Equal)),
        Op::Contains => contains(l, r),
        Op::In => contains(r, l),
    }
}

fn contains(hay: &Value, needle: &Value) -> bool {
    match (hay, needle) {
        (Value::String(h), Value::String(n)) => h.contains(n.as_str()),
        (Value::Array(items), n) => items.iter().any(|i| equal(i, n)),
        (Value::Object(m), Value::String(k)) => m.contains_key(k),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn view() -> Map<String, Value> {
        json!({
            "data": {"total": 150, "plan": "pro", "tags": ["a", "b"], "coupon": null, "country": "DE"},
            "event": {"context": {"library": {"name": "analytics.js"}}},
            "user_id": "u1", "type": "track", "name": "Order Completed"
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn check(src: &str) -> bool {
        Filter::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&view())
    }

    #[test]
    fn evaluates() {
        assert!(check("data.total > 100"));
        assert!(!check("data.total > 150"));
        assert!(check("data.total >= 150 and data.plan == \"pro\""));
        assert!(check("data.total == 150.0"));
        assert!(check("data.plan != \"free\" && !(data.total < 10)"));
        assert!(check("data.tags contains \"b\""));
        assert!(check("data.country in [\"DE\", \"AT\"]"));
        assert!(!check("not (data.country in [\"DE\", \"AT\"])"));
        assert!(check("event.context.library.name contains \"analytics\""));
        assert!(!check("data.coupon"));
        assert!(!check("data.missing.deep == 1"));
        assert!(check("data.missing == null"));
        assert!(check("user_id and name == \"Order Completed\" or false"));
        assert!(!check("data.plan > 5"));
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in ["", "data.total >", "(data.total > 1", "data..x", "foo.bar == 1", "data.a == \"x",
                    "data.a == [data.b]", "data.a ==== 1", "and", "data.a # 1"] {
            assert!(Filter::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn never_panics(src in ".{0,40}") {
            if let Ok(f) = Filter::parse(&src) { let _ = f.eval(&view()); }
        }
    }
}
