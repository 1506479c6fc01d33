//! Splits a query into tokens. Operators end a word, so `num_gpus>=2` and `num_gpus >= 2` give
//! the same three tokens.

use super::QueryError;

/// A comparison operator as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sym {
    Lt,
    Le,
    Eq,
    EqEq,
    Ne,
    Ge,
    Gt,
}

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    /// A run of characters that are not space, operator, bracket, comma or quote.
    Word(&'a str),
    /// The inside of a `"…"` or `'…'` string.
    Quoted(&'a str),
    Op(Sym),
    LBracket,
    RBracket,
    Comma,
}

/// A token and where it stands in the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok<'a>,
    /// Byte offset of its first character.
    pub(crate) pos: usize,
    /// Byte offset just past it.
    pub(crate) end: usize,
}

impl Token<'_> {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self, src: &str) -> String {
        format!("`{}`", &src[self.pos..self.end])
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '<' | '>' | '=' | '!' | '[' | ']' | ',' | '"' | '\'')
}

/// Tokenizes `src`.
pub(crate) fn lex(src: &str) -> Result<Vec<Token<'_>>, QueryError> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        let next_is_eq = chars.peek().is_some_and(|(_, n)| *n == '=');
        let (tok, len) = match c {
            c if c.is_whitespace() => continue,
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            ',' => (Tok::Comma, 1),
            '<' if next_is_eq => (Tok::Op(Sym::Le), 2),
            '<' => (Tok::Op(Sym::Lt), 1),
            '>' if next_is_eq => (Tok::Op(Sym::Ge), 2),
            '>' => (Tok::Op(Sym::Gt), 1),
            '=' if next_is_eq => (Tok::Op(Sym::EqEq), 2),
            '=' => (Tok::Op(Sym::Eq), 1),
            '!' if next_is_eq => (Tok::Op(Sym::Ne), 2),
            '!' => {
                return Err(QueryError::Unexpected {
                    expected: "`!=`",
                    found: "`!`".into(),
                    pos,
                });
            }
            '"' | '\'' => {
                let start = pos + 1;
                let close = src[start..]
                    .find(c)
                    .ok_or(QueryError::UnclosedQuote { quote: c, pos })?;
                let end = start + close + 1;
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
                out.push(Token {
                    tok: Tok::Quoted(&src[start..start + close]),
                    pos,
                    end,
                });
                continue;
            }
            _ => {
                let mut end = pos + c.len_utf8();
                while let Some((i, n)) = chars.peek().copied() {
                    if n.is_whitespace() || is_special(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                out.push(Token {
                    tok: Tok::Word(&src[pos..end]),
                    pos,
                    end,
                });
                continue;
            }
        };
        if len == 2 {
            chars.next();
        }
        out.push(Token {
            tok,
            pos,
            end: pos + len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok<'_>> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_split_words_with_or_without_spaces() {
        let want = vec![Tok::Word("num_gpus"), Tok::Op(Sym::Ge), Tok::Word("2")];
        assert_eq!(toks("num_gpus>=2"), want);
        assert_eq!(toks("  num_gpus >= 2 "), want);
        assert_eq!(
            toks("a<1 b<=2 c=3 d==4 e!=5 f>6"),
            vec![
                Tok::Word("a"),
                Tok::Op(Sym::Lt),
                Tok::Word("1"),
                Tok::Word("b"),
                Tok::Op(Sym::Le),
                Tok::Word("2"),
                Tok::Word("c"),
                Tok::Op(Sym::Eq),
                Tok::Word("3"),
                Tok::Word("d"),
                Tok::Op(Sym::EqEq),
                Tok::Word("4"),
                Tok::Word("e"),
                Tok::Op(Sym::Ne),
                Tok::Word("5"),
                Tok::Word("f"),
                Tok::Op(Sym::Gt),
                Tok::Word("6"),
            ]
        );
    }

    #[test]
    fn lists_quotes_and_positions() {
        assert_eq!(
            toks("g in [DE, 'N L']"),
            vec![
                Tok::Word("g"),
                Tok::Word("in"),
                Tok::LBracket,
                Tok::Word("DE"),
                Tok::Comma,
                Tok::Quoted("N L"),
                Tok::RBracket,
            ]
        );
        let t = lex("gpu_name=\"RTX 4090\" x").unwrap();
        assert_eq!((t[2].pos, t[2].end), (9, 19));
        assert_eq!(t[3].tok, Tok::Word("x"));
    }

    #[test]
    fn unclosed_quote_and_lone_bang_are_errors() {
        assert_eq!(
            lex("gpu_name=\"RTX"),
            Err(QueryError::UnclosedQuote { quote: '"', pos: 9 })
        );
        assert!(matches!(
            lex("a!b"),
            Err(QueryError::Unexpected { pos: 1, .. })
        ));
    }
}
