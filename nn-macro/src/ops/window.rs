//! What convolutions and poolings share: their integer arguments and the
//! output-size arithmetic (checked at lowering, reported with the numbers),
//! and the loop nest their emission and their reference values walk: for
//! each output position, each kernel tap and the input position it reads
//! (taps that fall in the padding read zeros and are skipped).

use crate::emit::ex::Ex;
use crate::emit::{flat_view, Place};
use crate::ir::*;
use crate::limits::MAX_ELEMENTS;
use crate::lower::{Cx, Reported};
use nn_grammar::{Diagnostic, Expr, KeywordArg, Span};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

/// The geometry of a convolution or a pooling window, over one or two
/// spatial dimensions (a 1-D one is a 2-D one of height 1: `input[0]`,
/// `output[0]` and `kernel[0]` 1, stride and dilation 1 and padding 0 along
/// the height).
/// Positions read outside the input are zeros (padding); `pad` is the
/// padding before each dimension, the padding after it implied by the
/// output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// Whether the values have one spatial dimension (`[c, l]`) or two (`[c, h, w]`).
    pub two_d: bool,
    /// Input channels.
    pub c_in: usize,
    /// Output channels (of a pooling: the input channels).
    pub c_out: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along each dimension.
    pub stride: [usize; 2],
    /// Padding before each dimension.
    pub pad: [usize; 2],
    /// Dilation along each dimension.
    pub dilation: [usize; 2],
}

/// A non-negative integer argument (`what` names it in messages) of at
/// least `min`, written as a number or a constant.
pub fn int_arg(
    cx: &mut Cx,
    e: &Expr,
    func: &str,
    what: &str,
    min: usize,
) -> Result<usize, Reported> {
    int_arg_named(cx, e, func, what, min, example(func))
}

/// The same, with a call of `func` for the help line.
pub fn int_arg_named(
    cx: &mut Cx,
    e: &Expr,
    func: &str,
    what: &str,
    min: usize,
    example: &str,
) -> Result<usize, Reported> {
    match cx.const_of(e) {
        Some(v) if v.fract() == 0.0 && v >= min as f64 && v <= MAX_ELEMENTS as f64 => {
            Ok(v as usize)
        }
        Some(v) if v.fract() == 0.0 && v > MAX_ELEMENTS as f64 => {
            cx.error(
                Diagnostic::new(
                    e.span(),
                    format!("the {what} of `{func}` is {v}, too large"),
                )
                .with_help("the README's \"Limits\" section lists the largest sizes"),
            );
            Err(Reported)
        }
        found => {
            let least = if min == 0 {
                "a non-negative"
            } else {
                "a positive"
            };
            let found = match found {
                Some(v) => format!(", found {v}"),
                None => String::new(),
            };
            cx.error(
                Diagnostic::new(
                    e.span(),
                    format!("the {what} of `{func}` must be {least} integer{found}"),
                )
                .with_help(format!("write a number, as in `{example}`")),
            );
            Err(Reported)
        }
    }
}

/// A call of `func` that reads well in a help line.
pub fn example(func: &str) -> &'static str {
    match func {
        "conv1d" => "conv1d(x, 16, 3, stride = 1, padding = 1)",
        "conv2d" => "conv2d(x, 8, 3, padding = 1)",
        "max_pool1d" => "max_pool1d(x, 2)",
        "max_pool2d" => "max_pool2d(x, 2)",
        "avg_pool1d" => "avg_pool1d(x, 2)",
        _ => "avg_pool2d(x, 2)",
    }
}

/// The keyword argument `name`, if given.
pub fn keyword<'k>(kwargs: &'k [KeywordArg], name: &str) -> Option<&'k KeywordArg> {
    kwargs.iter().find(|k| k.name.name == name)
}

/// The spatial sizes of `[c, l]` (`two_d` false) or `[c, h, w]`, as
/// `(channels, [h, w])` (a signal's height 1); an error at `at` otherwise.
pub fn spatial(
    cx: &mut Cx,
    x: NodeId,
    two_d: bool,
    func: &str,
    at: Span,
) -> Result<(usize, [usize; 2]), Reported> {
    let shape = cx.shape(x);
    match (two_d, shape.0.as_slice()) {
        (false, &[c, l]) => Ok((c, [1, l])),
        (true, &[c, h, w]) => Ok((c, [h, w])),
        _ => {
            let (want, help) = if two_d {
                (
                    "an image `[channels, height, width]`",
                    "declare the input as `input x[1, 28, 28];`, or `reshape` a value to three dimensions",
                )
            } else {
                (
                    "a signal `[channels, length]`",
                    "declare the input as `input x[1, 64];`, or `reshape(x, 1, n)` a vector",
                )
            };
            cx.error(
                Diagnostic::new(at, format!("`{func}` needs {want}, found shape {shape}"))
                    .with_help(help),
            );
            Err(Reported)
        }
    }
}

/// One spatial dimension's settings, for the output-size arithmetic.
pub struct Dim {
    /// Input size.
    pub input: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding before.
    pub before: usize,
    /// Padding after.
    pub after: usize,
    /// Dilation.
    pub dilation: usize,
}

/// The output size `(in + before + after - dilation·(kernel-1) - 1)/stride + 1`,
/// or an error at `at` showing the arithmetic (`what`: "conv1d output length").
pub fn out_size(
    cx: &mut Cx,
    d: &Dim,
    what: &str,
    causal: bool,
    at: Span,
) -> Result<usize, Reported> {
    let (i, k, s, d_, b, a) = (
        d.input as i128,
        d.kernel as i128,
        d.stride as i128,
        d.dilation as i128,
        d.before as i128,
        d.after as i128,
    );
    let num = i + b + a - d_ * (k - 1) - 1;
    let out = num.div_euclid(s) + 1;
    if num >= 0 && out >= 1 {
        return Ok(out as usize);
    }
    let size = if what.contains("length") { "L" } else { "size" };
    let (formula, numbers) = if what.contains("pool") {
        (
            format!("({size} + 2·padding - kernel)/stride + 1"),
            format!("({i} + 2·{b} - {k})/{s} + 1"),
        )
    } else if causal {
        (
            format!("({size} + dilation·(kernel-1) - dilation·(kernel-1) - 1)/stride + 1"),
            format!("({i} + {b} - {d_}·({k}-1) - 1)/{s} + 1"),
        )
    } else {
        (
            format!("({size} + 2·padding - dilation·(kernel-1) - 1)/stride + 1"),
            format!("({i} + 2·{b} - {d_}·({k}-1) - 1)/{s} + 1"),
        )
    };
    let help = if what.contains("pool") {
        format!(
            "the window of {k} is wider than the {} positions of the padded input; use a smaller window",
            i + b + a
        )
    } else {
        format!(
            "the kernel spans {} input positions (dilation·(kernel-1) + 1), more than the {} of the padded input; use a smaller kernel or dilation, or more padding",
            d_ * (k - 1) + 1,
            i + b + a
        )
    };
    cx.error(
        Diagnostic::new(
            at,
            format!("{what} {formula} = {numbers} = {out} is not positive"),
        )
        .with_help(help),
    );
    Err(Reported)
}

/// A loop variable over `0..bound` (no loop, and the constant 0, when the
/// bound is 1).
pub struct Axis {
    var: Ident,
    bound: usize,
}

impl Axis {
    pub fn new(name: &str, bound: usize) -> Self {
        Axis {
            var: format_ident!("{}", name),
            bound,
        }
    }

    /// The variable as an index term.
    pub fn lin(&self) -> Lin {
        if self.bound == 1 {
            Lin::default()
        } else {
            Lin(vec![(self.var.clone(), 1)], 0)
        }
    }

    /// `body` in a loop over the axis (none for a bound of 1).
    pub fn wrap(&self, body: TokenStream) -> TokenStream {
        if self.bound == 1 {
            return body;
        }
        let (v, n) = (&self.var, Literal::usize_unsuffixed(self.bound));
        quote!(for #v in 0..#n { #body })
    }
}

/// An index expression `Σ var·coefficient + constant` (terms of unit
/// axes left out, so no `0 * 3` or `i * 1` reaches the generated code).
#[derive(Clone, Default)]
pub struct Lin(Vec<(Ident, usize)>, usize);

impl Lin {
    /// A variable of the generated code (a `let`), coefficient 1.
    pub fn var(name: &str) -> Lin {
        Lin(vec![(format_ident!("{}", name), 1)], 0)
    }

    /// `self · k`.
    pub fn scale(mut self, k: usize) -> Lin {
        for t in &mut self.0 {
            t.1 *= k;
        }
        self.1 *= k;
        self
    }

    /// `self + other`.
    pub fn plus(mut self, other: Lin) -> Lin {
        self.0.extend(other.0);
        self.1 += other.1;
        self
    }

    /// The expression's tokens (`0` for an empty one).
    pub fn tokens(&self) -> TokenStream {
        let mut parts: Vec<TokenStream> = self
            .0
            .iter()
            .map(|(v, k)| {
                if *k == 1 {
                    quote!(#v)
                } else {
                    let k = Literal::usize_unsuffixed(*k);
                    quote!(#v * #k)
                }
            })
            .collect();
        if self.1 != 0 || parts.is_empty() {
            let c = Literal::usize_unsuffixed(self.1);
            parts.push(quote!(#c));
        }
        quote!(#(#parts)+*)
    }
}

/// Row-major flat index of `(index, size)` parts, outermost first.
pub fn row_major(parts: Vec<(Lin, usize)>) -> Lin {
    parts
        .into_iter()
        .fold(Lin::default(), |acc, (l, n)| acc.scale(n).plus(l))
}

/// How one emission reads and writes flat views of its operands: per
/// sample `v[e]`, batched (one column per sample) `v[e][j]`.
pub struct Views {
    /// `let` statements binding the views.
    pub lets: Vec<TokenStream>,
    /// Whether the code runs once per sample of a batch (`j`).
    pub batched: bool,
}

impl Views {
    pub fn new() -> Self {
        Views {
            lets: vec![],
            batched: false,
        }
    }

    /// Binds a read-only flat view of operand `a` as `name`.
    pub fn read(&mut self, ex: &Ex, a: NodeId, name: &str) -> View {
        let v = format_ident!("{}", name);
        let b = ex.batched(a);
        let p = ex.place(a).borrow();
        let view = if b {
            quote!(&(#p)[..])
        } else {
            flat_view(p, &ex.g().nodes[a].shape)
        };
        self.lets.push(quote!(let #v = #view;));
        self.batched |= b;
        View {
            ident: v,
            batched: b,
        }
    }

    /// Binds a writable flat view of the destination `dest` of node `id`
    /// (one column per sample when `batched`).
    pub fn write(&mut self, ex: &Ex, dest: &Place, id: NodeId, batched: bool, name: &str) -> View {
        let v = format_ident!("{}", name);
        let p = dest.borrow_mut();
        let view = match (batched, ex.g().nodes[id].shape.stored_rank()) {
            (true, _) | (false, 1) => quote!(&mut (#p)[..]),
            (false, 0) => quote!(::core::slice::from_mut(#p)),
            (false, _) => quote!((#p).as_flattened_mut()),
        };
        self.lets.push(quote!(let #v = #view;));
        self.batched |= batched;
        View { ident: v, batched }
    }

    /// The whole emission: the views, then `body`, once per sample when
    /// any view is batched.
    pub fn finish(self, body: TokenStream) -> TokenStream {
        let lets = self.lets;
        let body = if self.batched {
            quote!(for j in 0..B { #body })
        } else {
            body
        };
        quote!({ #(#lets)* #body })
    }
}

/// A flat view bound by [`Views`].
pub struct View {
    ident: Ident,
    batched: bool,
}

impl View {
    /// The element at flat index `e` (of this sample's column when batched).
    pub fn at(&self, e: &Lin) -> TokenStream {
        let (v, e) = (&self.ident, e.tokens());
        if self.batched {
            quote!(#v[#e][j])
        } else {
            quote!(#v[#e])
        }
    }
}

/// The axes and index expressions of a window's loop nest: `oy`, `ox`
/// over the output positions, `ky`, `kx` over a kernel's positions, and
/// the input row and column each output position and tap read (with
/// padding, only where they fall inside the input).
pub struct Nest {
    pub oy: Axis,
    pub ox: Axis,
    pub ky: Axis,
    pub kx: Axis,
    /// The input row and column.
    pub iy: Lin,
    pub ix: Lin,
    w: Window,
}

impl Nest {
    pub fn new(w: &Window) -> Self {
        let (oy, ox) = (Axis::new("oy", w.output[0]), Axis::new("ox", w.output[1]));
        let (ky, kx) = (Axis::new("ky", w.kernel[0]), Axis::new("kx", w.kernel[1]));
        let iy = Self::padded(w, 0, &oy, &ky, "iy");
        let ix = Self::padded(w, 1, &ox, &kx, "ix");
        Nest {
            oy,
            ox,
            ky,
            kx,
            iy,
            ix,
            w: *w,
        }
    }

    /// The input position along dimension `k`: `o·stride + t·dilation`
    /// in the padded input; with padding, a variable bound by [`Nest::guard`].
    fn padded(w: &Window, k: usize, o: &Axis, t: &Axis, name: &str) -> Lin {
        let padded = o
            .lin()
            .scale(w.stride[k])
            .plus(t.lin().scale(w.dilation[k]));
        if w.pad[k] == 0 {
            // no padding: the output size keeps every tap inside the input
            padded
        } else {
            Lin::var(name)
        }
    }

    /// `body` where the input position along dimension `k` is inside the
    /// input (binding it, with padding).
    fn guard(&self, k: usize, body: TokenStream) -> TokenStream {
        let w = &self.w;
        if w.pad[k] == 0 {
            return body;
        }
        let (o, t, name) = if k == 0 {
            (&self.oy, &self.ky, "iy")
        } else {
            (&self.ox, &self.kx, "ix")
        };
        let v = format_ident!("{}", name);
        let e = o
            .lin()
            .scale(w.stride[k])
            .plus(t.lin().scale(w.dilation[k]))
            .tokens();
        let p = Literal::usize_unsuffixed(w.pad[k]);
        let end = Literal::usize_unsuffixed(w.input[k] + w.pad[k]);
        quote!(let #v = #e; if #v >= #p && #v < #end { let #v = #v - #p; #body })
    }

    /// `inner` for every kernel tap inside the input, at the current output position.
    pub fn taps(&self, inner: TokenStream) -> TokenStream {
        let cols = self.kx.wrap(self.guard(1, inner));
        self.ky.wrap(self.guard(0, cols))
    }

    /// `body` at every output position.
    pub fn outputs(&self, body: TokenStream) -> TokenStream {
        self.oy.wrap(self.ox.wrap(body))
    }

    /// Flat index of `[channel, row, col]` of a value `[channels, h, w]`.
    pub fn at(channel: Lin, channels: usize, row: Lin, col: Lin, hw: [usize; 2]) -> Lin {
        row_major(vec![(channel, channels), (row, hw[0]), (col, hw[1])])
    }

    /// Flat index of the current output position in channel `channel`.
    pub fn out_at(&self, channel: Lin) -> Lin {
        Self::at(
            channel,
            self.w.c_out,
            self.oy.lin(),
            self.ox.lin(),
            self.w.output,
        )
    }

    /// Flat index of the current input position in channel `channel`.
    pub fn in_at(&self, channel: Lin) -> Lin {
        Self::at(
            channel,
            self.w.c_in,
            self.iy.clone(),
            self.ix.clone(),
            self.w.input,
        )
    }

    /// Flat index of the current tap of a kernel `[c_out, c_in, kh, kw]`.
    pub fn kernel_at(&self, out: Lin, input: Lin) -> Lin {
        row_major(vec![
            (out, self.w.c_out),
            (input, self.w.c_in),
            (self.ky.lin(), self.w.kernel[0]),
            (self.kx.lin(), self.w.kernel[1]),
        ])
    }
}

/// Each output position, kernel tap and input position of a window, for
/// the reference values: `(out, tap, input)` spatial flat indices.
#[cfg(test)]
pub fn taps(w: &Window) -> Vec<(usize, usize, usize)> {
    let mut out = vec![];
    for oy in 0..w.output[0] {
        for ox in 0..w.output[1] {
            for ky in 0..w.kernel[0] {
                for kx in 0..w.kernel[1] {
                    let iy = oy * w.stride[0] + ky * w.dilation[0];
                    let ix = ox * w.stride[1] + kx * w.dilation[1];
                    if iy < w.pad[0] || ix < w.pad[1] {
                        continue;
                    }
                    let (iy, ix) = (iy - w.pad[0], ix - w.pad[1]);
                    if iy >= w.input[0] || ix >= w.input[1] {
                        continue;
                    }
                    out.push((
                        oy * w.output[1] + ox,
                        ky * w.kernel[1] + kx,
                        iy * w.input[1] + ix,
                    ));
                }
            }
        }
    }
    out
}

/// The window's settings for the docs: `kernel 3, stride 2, padding 1`.
pub fn describe(w: &Window) -> String {
    let one = |a: [usize; 2]| {
        if !w.two_d || a[0] == a[1] {
            a[1].to_string()
        } else {
            format!("({}, {})", a[0], a[1])
        }
    };
    let mut s = format!("kernel {}, stride {}", one(w.kernel), one(w.stride));
    if w.pad != [0, 0] {
        s += &format!(", padding before {}", one(w.pad));
    }
    if w.dilation != [1, 1] {
        s += &format!(", dilation {}", one(w.dilation));
    }
    s
}

/// The spatial positions of one channel: input and output.
pub fn areas(w: &Window) -> (usize, usize) {
    (w.input[0] * w.input[1], w.output[0] * w.output[1])
}
