//! Identifiers in generated code: every node gets a unique one after its
//! name in the definition; Rust keywords and the names the generated code
//! uses itself are escaped with a trailing `_`.

use crate::ir::*;
use proc_macro2::Ident;
use quote::format_ident;
use std::collections::HashSet;

/// Rust keywords and names the generated code uses itself.
pub const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "crate",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "async",
    "await",
    "dyn",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "i",
    "j",
    "acc",
    "tape",
    "grads",
    "input",
    "target",
    "params",
    "kernels",
    "rng",
    "seed",
    "output",
    "union",
    "t",
    "state",
    "norms",
    "output_seq",
    "inputs",
    "targets",
    "B",
    "at",
    "_",
];

/// A unique Rust identifier for every node: parameters keep their field
/// names (they come first), the others their definition's names; only live
/// nodes claim names, so dead ones do not push suffixes onto them.
pub fn assign_idents(g: &Graph, live: &[bool]) -> Vec<Ident> {
    let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    let mut ident = vec![format_ident!("unused"); g.nodes.len()];
    let mut order: Vec<NodeId> = (0..g.nodes.len())
        .filter(|&id| {
            live[id] || matches!(g.nodes[id].op, Op::Param(_) | Op::Input(_) | Op::Target(_))
        })
        .collect();
    order.sort_by_key(|&id| !matches!(g.nodes[id].op, Op::Param(_)));
    for id in order {
        let base = match g.nodes[id].op {
            Op::Param(k) => g.params[k].field.clone(),
            _ => g.nodes[id].name.clone(),
        };
        let mut name = sanitize(&base);
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{}_{n}", sanitize(&base));
        }
        taken.insert(name.clone());
        ident[id] = format_ident!("{}", name);
    }
    ident
}

/// A valid, non-reserved Rust identifier for a definition name.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if RESERVED.contains(&s.as_str()) {
        format!("{s}_")
    } else {
        s
    }
}
