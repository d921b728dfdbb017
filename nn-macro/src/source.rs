//! Reading the attribute: the definition's text, from the attribute's own
//! tokens or from a file, with a map from text offsets back to token spans
//! so that errors point at the offending tokens.

use crate::ir::Dtype;
use nn_grammar::Diagnostic;
use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use std::path::PathBuf;

/// Where the definition's text came from.
pub enum Origin {
    /// The attribute's own tokens: `#[network { ... }]`.
    Inline {
        /// For each token of the text: its byte range and its span.
        tokens: Vec<(usize, usize, Span)>,
    },
    /// A file: `#[network(file = "nets/xor.nn")]`.
    File {
        /// The path as written.
        path: String,
        /// The absolute path read.
        full: PathBuf,
        /// The span of the `"..."` literal.
        span: Span,
    },
}

/// A definition's text and where it came from.
pub struct Source {
    /// The definition text.
    pub text: String,
    /// Where it came from.
    pub origin: Origin,
    /// A `dtype = f64` option of the attribute.
    pub dtype: Option<Dtype>,
    /// A `crate = path` option: where the runtime is, when the user's
    /// crate renamed or re-exported `nn_runtime`.
    pub krate: Option<syn::Path>,
}

/// Reads the attribute's arguments.
pub fn read_args(args: TokenStream) -> Result<Source, syn::Error> {
    let tokens: Vec<TokenTree> = args.clone().into_iter().collect();
    let is_options = matches!(
        tokens.as_slice(),
        [TokenTree::Ident(key), TokenTree::Punct(eq), ..] if eq.as_char() == '=' && (key == "file" || key == "dtype" || key == "crate")
    ) && !tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';'));
    // `#[network(path = "...")]`: options with a misspelt key (a definition has no strings)
    let is_options = is_options
        || (matches!(
            tokens.as_slice(),
            [TokenTree::Ident(_), TokenTree::Punct(eq), TokenTree::Literal(_), ..] if eq.as_char() == '='
        ) && !tokens
            .iter()
            .any(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';')));
    if tokens.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "`#[network]` needs a definition: `#[network { input x[2]; ... }]` or `#[network(file = \"nets/net.nn\")]`",
        ));
    }
    if !is_options {
        let mut text = String::new();
        let mut map = vec![];
        flatten(args, &mut text, &mut map);
        return Ok(Source {
            text,
            origin: Origin::Inline { tokens: map },
            dtype: None,
            krate: None,
        });
    }
    let mut file: Option<syn::LitStr> = None;
    let mut dtype = None;
    let mut krate = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            return read_crate(&meta, &mut krate);
        }
        if meta.path.is_ident("file") {
            if file.is_some() {
                return Err(meta
                    .error("`file` is given twice\n  = help: a network has one definition file"));
            }
            file = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("dtype") {
            if dtype.is_some() {
                return Err(meta.error("`dtype` is given twice\n  = help: keep one `dtype = ...`"));
            }
            let v: syn::Ident = meta.value()?.parse()?;
            dtype = Some(match v.to_string().as_str() {
                "f32" => Dtype::F32,
                "f64" => Dtype::F64,
                _ => {
                    return Err(syn::Error::new(
                        v.span(),
                        format!(
                            "unknown dtype `{v}`\n  = help: use `dtype = f32` or `dtype = f64`"
                        ),
                    ))
                }
            });
            Ok(())
        } else {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            Err(meta.error(format!(
                "unknown option `{key}`\n  = help: `#[network(...)]` takes `file = \"path\"`, `dtype = f32` or `dtype = f64`, and `crate = path`"
            )))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    let Some(file) = file else {
        let msg = if krate.is_some() {
            "`#[network(crate = ...)]` alone has no definition: put it below the attribute that holds one, \
             `#[network { ... }]` then `#[network(crate = ...)]`, or add `file = \"path\"`"
        } else {
            "`#[network(...)]` needs `file = \"path\"`, or write the definition inline: `#[network { ... }]`"
        };
        return Err(syn::Error::new(Span::call_site(), msg));
    };
    let path = file.value();
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    let full = dir.join(&path);
    // the path as written, never the absolute one: messages stay the same on every machine
    let text = std::fs::read_to_string(&full).map_err(|e| {
        let what = match e.kind() {
            std::io::ErrorKind::NotFound => format!("the definition file `{path}` does not exist"),
            _ => format!("cannot read the definition file `{path}`: {e}"),
        };
        syn::Error::new(
            file.span(),
            format!("{what}\n  = help: the path is relative to the directory of the crate's `Cargo.toml`"),
        )
    })?;
    Ok(Source {
        text,
        origin: Origin::File {
            path,
            full,
            span: file.span(),
        },
        dtype,
        krate,
    })
}

/// A `crate = path` (or `crate = "path"`) option into `krate`.
fn read_crate(meta: &syn::meta::ParseNestedMeta, krate: &mut Option<syn::Path>) -> syn::Result<()> {
    if krate.is_some() {
        return Err(meta.error("`crate` is given twice\n  = help: keep one `crate = ...`"));
    }
    let value = meta.value()?;
    *krate = Some(if value.peek(syn::LitStr) {
        value.parse::<syn::LitStr>()?.parse()?
    } else {
        value.parse()?
    });
    Ok(())
}

/// The options of a second `#[network(...)]` attribute below an inline
/// definition (only `crate = path`: the language has `dtype`).
pub fn read_item_options(attr: &syn::Attribute) -> syn::Result<Option<syn::Path>> {
    let mut krate = None;
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("crate") {
            return read_crate(&meta, &mut krate);
        }
        let key = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        Err(meta.error(format!(
            "`{key}` cannot follow a definition\n  = help: a second `#[network(...)]` takes `crate = path`; \
             the scalar type is a statement of the definition, `dtype f64;`"
        )))
    })?;
    Ok(krate)
}

/// `tokens` with every `::nn_runtime` the emitted code names replaced by
/// `krate` (for a renamed or re-exported runtime crate). Nested groups are
/// walked with an explicit stack.
pub fn rebase(tokens: TokenStream, krate: &syn::Path) -> TokenStream {
    let krate = quote::quote!(#krate);
    // each level: the tokens rebuilt so far and the rest of the group
    let mut stack: Vec<(Vec<TokenTree>, Vec<TokenTree>, Option<proc_macro2::Group>)> =
        vec![(Vec::new(), reversed(tokens), None)];
    loop {
        let (out, rest, _) = stack.last_mut().expect("the outermost level stays");
        match rest.pop() {
            Some(TokenTree::Group(g)) => {
                let inner = reversed(g.stream());
                stack.push((Vec::new(), inner, Some(g)));
            }
            Some(TokenTree::Punct(p)) if p.as_char() == ':' && is_runtime_path(rest, &p) => {
                rest.pop(); // the second `:`
                rest.pop(); // `nn_runtime`
                out.extend(krate.clone());
            }
            Some(tt) => out.push(tt),
            None => {
                let (out, _, group) = stack.pop().expect("a level");
                let Some(g) = group else {
                    return out.into_iter().collect();
                };
                let mut rebuilt = proc_macro2::Group::new(g.delimiter(), out.into_iter().collect());
                rebuilt.set_span(g.span());
                stack
                    .last_mut()
                    .expect("a group has an enclosing level")
                    .0
                    .push(TokenTree::Group(rebuilt));
            }
        }
    }
}

/// A group's tokens, last first (so that `pop` takes them in order).
fn reversed(tokens: TokenStream) -> Vec<TokenTree> {
    let mut v: Vec<TokenTree> = tokens.into_iter().collect();
    v.reverse();
    v
}

/// Whether the `:` just taken starts `::nn_runtime` (the emitted code
/// always names the runtime by that absolute path).
fn is_runtime_path(rest: &[TokenTree], first: &proc_macro2::Punct) -> bool {
    first.spacing() == proc_macro2::Spacing::Joint
        && matches!(rest.last(), Some(TokenTree::Punct(p)) if p.as_char() == ':')
        && matches!(rest.iter().rev().nth(1), Some(TokenTree::Ident(i)) if i == "nn_runtime")
}

/// Writes each token's text, separated by spaces, recording its byte range.
/// Walks nested groups with an explicit stack: a deeply nested attribute
/// never recurses (the parser reports nesting beyond its limit).
fn flatten(ts: TokenStream, text: &mut String, map: &mut Vec<(usize, usize, Span)>) {
    let mut push = |s: &str, span: Span| {
        if !text.is_empty() {
            text.push(' ');
        }
        let start = text.len();
        text.push_str(s);
        map.push((start, text.len(), span));
    };
    // each level: the rest of a group's tokens, and its closing delimiter
    let mut stack: Vec<(proc_macro2::token_stream::IntoIter, Option<(&str, Span)>)> =
        vec![(ts.into_iter(), None)];
    while let Some((tokens, _)) = stack.last_mut() {
        let Some(tt) = tokens.next() else {
            if let Some((_, Some((close, span)))) = stack.pop() {
                push(close, span);
            }
            continue;
        };
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                if !open.is_empty() {
                    push(open, g.span_open());
                }
                let close = (!close.is_empty()).then(|| (close, g.span_close()));
                stack.push((g.stream().into_iter(), close));
            }
            TokenTree::Ident(i) => push(&i.to_string(), i.span()),
            TokenTree::Punct(p) => push(&p.as_char().to_string(), p.span()),
            TokenTree::Literal(l) => push(&l.to_string(), l.span()),
        }
    }
}

impl Source {
    /// Turns a diagnostic into a compile error at the offending tokens (inline)
    /// or at the file literal with the file, line, column and caret (file).
    pub fn error(&self, d: &Diagnostic) -> syn::Error {
        match &self.origin {
            Origin::Inline { tokens } => {
                let msg = d.message_with_help();
                if d.span.start == 0 && d.span.end == 0 {
                    return syn::Error::new(Span::call_site(), msg);
                }
                let first = tokens.iter().find(|t| t.1 > d.span.start).or(tokens.last());
                let last = tokens
                    .iter()
                    .rev()
                    .find(|t| t.0 < d.span.end.max(d.span.start + 1))
                    .or(first);
                match (first, last) {
                    (Some(f), Some(l)) => {
                        let l = if l.0 < f.0 { f } else { l };
                        // two tokens carrying the first and last spans: syn
                        // makes the error cover everything between them
                        let mut range = TokenStream::new();
                        range.extend([
                            TokenTree::Ident(proc_macro2::Ident::new("a", f.2)),
                            TokenTree::Ident(proc_macro2::Ident::new("b", l.2)),
                        ]);
                        syn::Error::new_spanned(range, msg)
                    }
                    _ => syn::Error::new(Span::call_site(), msg),
                }
            }
            Origin::File { path, span, .. } => syn::Error::new(*span, d.render(&self.text, path)),
        }
    }
}
