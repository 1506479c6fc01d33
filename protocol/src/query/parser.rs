//! Turns tokens into a [`Query`]. Grammar:
//!
//! ```text
//! query  := clause*
//! clause := FIELD ( SYM value | "in" list | "notin" list | "any" )
//! list   := "[" value ( "," value )* "]"
//! value  := WORD | QUOTED
//! ```
//!
//! `FIELD = any` and `FIELD == any` clear the field like `FIELD any`.

use libp2p_identity::PeerId;

use super::error::suggest;
use super::lexer::{Sym, Tok, Token, lex};
use super::{Clause, CmpOp, Field, FieldKind, Num, Query, QueryError, Test, Value, Version};

const EXPECT_OP: &str = "an operator (<, <=, =, ==, !=, >=, >, in, notin) or `any`";

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token<'a>>,
    at: usize,
}

pub(crate) fn parse_query(src: &str) -> Result<Query, QueryError> {
    let mut p = Parser {
        src,
        toks: lex(src)?,
        at: 0,
    };
    let mut clauses = Vec::new();
    let mut cleared = Vec::new();
    while p.at < p.toks.len() {
        match p.clause()? {
            Parsed::Clause(c) => clauses.push(c),
            Parsed::Any(f) if !cleared.contains(&f) => cleared.push(f),
            Parsed::Any(_) => {}
        }
    }
    // `any` wins wherever it stands: `num_gpus>=2 num_gpus=any` has no num_gpus filter.
    clauses.retain(|c: &Clause| !cleared.contains(&c.field));
    Ok(Query::new(clauses, cleared))
}

enum Parsed {
    Clause(Clause),
    Any(Field),
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.toks.get(self.at)
    }

    fn bump(&mut self) -> Option<Token<'a>> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn unexpected(&self, expected: &'static str) -> QueryError {
        match self.peek() {
            Some(t) => QueryError::Unexpected {
                expected,
                found: t.describe(self.src),
                pos: t.pos,
            },
            None => QueryError::Unexpected {
                expected,
                found: "end of query".into(),
                pos: self.src.len(),
            },
        }
    }

    /// The clause text from `start` to the end of the last token read (or one more token).
    fn clause_text(&self, start: usize) -> String {
        let end = self
            .toks
            .get(self.at.min(self.toks.len()).saturating_sub(1))
            .map_or(self.src.len(), |t| t.end)
            .max(start);
        self.src[start..end].to_owned()
    }

    /// The clause text through the value that follows the last token read, if one does (a
    /// word, a quoted string or a whole list), for errors found before the value is parsed.
    fn clause_text_with_value(&self, start: usize) -> String {
        let mut end = self.at;
        match self.toks.get(end).map(|t| &t.tok) {
            Some(Tok::Word(_) | Tok::Quoted(_)) => end += 1,
            Some(Tok::LBracket) => {
                while end < self.toks.len() && self.toks[end].tok != Tok::RBracket {
                    end += 1;
                }
                end = (end + 1).min(self.toks.len());
            }
            _ => {}
        }
        let stop = end
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map_or(self.src.len(), |t| t.end)
            .max(start);
        self.src[start..stop].to_owned()
    }

    fn clause(&mut self) -> Result<Parsed, QueryError> {
        let Some(Token {
            tok: Tok::Word(name),
            pos: start,
            ..
        }) = self.peek().cloned()
        else {
            return Err(self.unexpected("a field name"));
        };
        // Something like `3` or `0.5` after a complete clause is stray text, not a field name.
        let name_like = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_like {
            return Err(self.unexpected("a field name"));
        }
        let field = Field::from_name(name).ok_or_else(|| QueryError::UnknownField {
            field: name.to_owned(),
            pos: start,
            suggestion: suggest(name, &[]),
        })?;
        self.at += 1;
        let op_tok = self
            .peek()
            .cloned()
            .ok_or_else(|| self.unexpected(EXPECT_OP))?;
        let kind = field.kind();
        let (op, op_text) = match op_tok.tok {
            Tok::Op(sym) => (Op::Cmp(sym), &self.src[op_tok.pos..op_tok.end]),
            Tok::Word(w) if w.eq_ignore_ascii_case("any") => {
                self.at += 1;
                return Ok(Parsed::Any(field));
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => (Op::In, w),
            Tok::Word(w) if w.eq_ignore_ascii_case("notin") => (Op::NotIn, w),
            _ => return Err(self.unexpected(EXPECT_OP)),
        };
        self.at += 1;
        let allowed = match op {
            Op::Cmp(Sym::Eq | Sym::EqEq | Sym::Ne) => true,
            Op::Cmp(_) | Op::In | Op::NotIn => {
                matches!(kind, FieldKind::Number | FieldKind::Version)
                    || (kind == FieldKind::Text && !matches!(op, Op::Cmp(_)))
            }
        };
        if !allowed {
            return Err(QueryError::BadOperator {
                field: field.name(),
                op: op_text.to_owned(),
                kind,
                clause: self.clause_text_with_value(start),
                pos: start,
            });
        }
        let test = match op {
            Op::Cmp(sym) => {
                let tok = self.value_token(field, start)?;
                if let Tok::Word(w) = tok.tok
                    && w.eq_ignore_ascii_case("any")
                {
                    if matches!(sym, Sym::Eq | Sym::EqEq) {
                        return Ok(Parsed::Any(field));
                    }
                    return Err(QueryError::BadValue {
                        field: field.name(),
                        value: w.to_owned(),
                        expected: "`any` only after `=`, as in `num_gpus=any`",
                        clause: self.clause_text(start),
                        pos: tok.pos,
                    });
                }
                Test::Cmp(cmp_op(sym), self.value(field, &tok, start)?)
            }
            Op::In => Test::In(self.list(field, start)?),
            Op::NotIn => Test::NotIn(self.list(field, start)?),
        };
        Ok(Parsed::Clause(Clause { field, test }))
    }

    fn value_token(&mut self, field: Field, start: usize) -> Result<Token<'a>, QueryError> {
        match self.peek() {
            Some(
                t @ Token {
                    tok: Tok::Word(_) | Tok::Quoted(_),
                    ..
                },
            ) => {
                let t = t.clone();
                self.at += 1;
                Ok(t)
            }
            Some(Token {
                tok: Tok::LBracket, ..
            }) => Err(QueryError::MalformedList {
                why: "a list goes only after `in` or `notin`".into(),
                clause: self.clause_text(start),
                pos: self.peek().map_or(start, |t| t.pos),
            }),
            _ => Err(self.unexpected(field.kind().expected())),
        }
    }

    fn value(&self, field: Field, tok: &Token<'_>, start: usize) -> Result<Value, QueryError> {
        let text = match tok.tok {
            Tok::Word(w) | Tok::Quoted(w) => w,
            _ => "",
        };
        let bad = |expected: &'static str| QueryError::BadValue {
            field: field.name(),
            value: text.to_owned(),
            expected,
            clause: self.clause_text(start),
            pos: tok.pos,
        };
        let kind = field.kind();
        match kind {
            FieldKind::Number => Num::parse_decimal(text)
                .map(Value::Num)
                .ok_or_else(|| bad(kind.expected())),
            FieldKind::Version => Version::parse(text)
                .map(Value::Version)
                .ok_or_else(|| bad(kind.expected())),
            FieldKind::Bool => match text.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(bad(kind.expected())),
            },
            FieldKind::Text => {
                // Check what can be checked, so a typo is an error rather than zero results.
                let ok = match field {
                    Field::Geolocation => {
                        text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic())
                    }
                    Field::Host => text.parse::<PeerId>().is_ok(),
                    _ => !text.is_empty(),
                };
                if !ok {
                    return Err(bad(match field {
                        Field::Geolocation => "a two-letter country code such as DE",
                        Field::Host => "a libp2p peer id such as 12D3KooW…",
                        _ => "a non-empty word or quoted string",
                    }));
                }
                Ok(Value::Text(text.to_owned()))
            }
        }
    }

    fn list(&mut self, field: Field, start: usize) -> Result<Vec<Value>, QueryError> {
        let malformed = |p: &Self, why: &str| QueryError::MalformedList {
            why: why.to_owned(),
            clause: p.clause_text(start),
            pos: p.peek().map_or(p.src.len(), |t| t.pos),
        };
        if !matches!(self.peek().map(|t| &t.tok), Some(Tok::LBracket)) {
            return Err(malformed(self, "expected `[` after `in`/`notin`"));
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek().map(|t| t.tok.clone()) {
                Some(Tok::RBracket) if out.is_empty() => {
                    return Err(malformed(self, "the list is empty"));
                }
                Some(Tok::Word(_) | Tok::Quoted(_)) => {
                    let tok = self
                        .bump()
                        .ok_or_else(|| malformed(self, "missing value"))?;
                    out.push(self.value(field, &tok, start)?);
                }
                None => return Err(malformed(self, "the list is not closed with `]`")),
                Some(_) => return Err(malformed(self, "expected a value")),
            }
            match self.peek().map(|t| t.tok.clone()) {
                Some(Tok::Comma) => self.at += 1,
                Some(Tok::RBracket) => {
                    self.at += 1;
                    return Ok(out);
                }
                None => return Err(malformed(self, "the list is not closed with `]`")),
                Some(_) => return Err(malformed(self, "expected `,` or `]` after a value")),
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Cmp(Sym),
    In,
    NotIn,
}

fn cmp_op(sym: Sym) -> CmpOp {
    match sym {
        Sym::Lt => CmpOp::Lt,
        Sym::Le => CmpOp::Le,
        Sym::Eq | Sym::EqEq => CmpOp::Eq,
        Sym::Ne => CmpOp::Ne,
        Sym::Ge => CmpOp::Ge,
        Sym::Gt => CmpOp::Gt,
    }
}
