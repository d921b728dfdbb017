//! The node builders of the ONNX description: values, constants, shapes
//! and broadcasting, and elementwise bodies written as ONNX operators.

use super::*;

impl B<'_> {
    /// A new value name: `base`, or `base_2`, `base_3`, ... if taken.
    pub(super) fn fresh(&mut self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| if c == '@' { '_' } else { c })
            .collect();
        let mut name = base.clone();
        // the next suffix to try for this base: linear in the number of
        // names, however many share a base
        let k = self.suffix.entry(base.clone()).or_insert(2);
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            *k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    pub(super) fn push(
        &mut self,
        op: &'static str,
        base: &str,
        inputs: Vec<String>,
        attrs: Vec<Attr>,
    ) -> String {
        let output = self.fresh(base);
        self.nodes.push(ONode {
            op,
            place: self.place,
            inputs,
            output: output.clone(),
            attrs,
        });
        output
    }

    /// A node in the region before the loop (for values every step shares).
    pub(super) fn push_before(
        &mut self,
        op: &'static str,
        base: &str,
        inputs: Vec<String>,
        attrs: Vec<Attr>,
    ) -> String {
        let saved = std::mem::replace(&mut self.place, Place::Before);
        let out = self.push(op, base, inputs, attrs);
        self.place = saved;
        out
    }

    pub(super) fn fconst(&mut self, v: f64) -> String {
        let key = v.to_bits();
        if let Some(n) = self.float_consts.get(&key) {
            return n.clone();
        }
        let name = self.fresh(&format!("const_{}", self.float_consts.len()));
        self.consts.push(OConst::Float(name.clone(), v));
        self.float_consts.insert(key, name.clone());
        name
    }

    pub(super) fn iconst(&mut self, vs: &[i64]) -> String {
        if let Some(n) = self.int_consts.get(vs) {
            return n.clone();
        }
        let name = self.fresh(&format!("ints_{}", self.int_consts.len()));
        self.consts.push(OConst::Int(name.clone(), vs.to_vec()));
        self.int_consts.insert(vs.to_vec(), name.clone());
        name
    }

    /// The batch size as a one-element int64 tensor (from the first input's shape).
    pub(super) fn batch_dim(&mut self) -> R<String> {
        if let Some(n) = &self.batch_dim {
            return Ok(n.clone());
        }
        let Some(x) = self.first_input.clone() else {
            return Err(Unsupported {
                op: "output".into(),
                binding: self.g.nodes[self.g.output].name.clone(),
                reason: "the network has no input to take the batch size from".into(),
            });
        };
        let shape = self.push_before("Shape", "input_shape", vec![x], vec![]);
        let (zero, one) = (self.iconst(&[0]), self.iconst(&[1]));
        let n = self.push_before("Slice", "batch_size", vec![shape, zero, one], vec![]);
        self.batch_dim = Some(n.clone());
        Ok(n)
    }

    /// `v` broadcast to `[N] + dims` (`batched`) or `dims`.
    pub(super) fn expand(&mut self, v: &V, batched: bool, dims: &[usize], base: &str) -> R<V> {
        if v.batched == batched && v.dims == dims {
            return Ok(v.clone());
        }
        let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let shape = if batched {
            let n = self.batch_dim()?;
            let rest = self.iconst(&d);
            self.push_before(
                "Concat",
                "expand_shape",
                vec![n, rest],
                vec![Attr::Int("axis", 0)],
            )
        } else {
            self.iconst(&d)
        };
        let name = self.push("Expand", base, vec![v.name.clone(), shape], vec![]);
        Ok(V {
            name,
            batched,
            dims: dims.to_vec(),
        })
    }

    pub(super) fn unsqueeze(&mut self, v: &V, axes: &[i64], dims: Vec<usize>) -> V {
        if axes.is_empty() {
            return v.clone();
        }
        let a = self.iconst(axes);
        let name = self.push("Unsqueeze", &v.name, vec![v.name.clone(), a], vec![]);
        V {
            name,
            batched: v.batched,
            dims,
        }
    }

    pub(super) fn squeeze(&mut self, v: &V, axes: &[i64], dims: Vec<usize>) -> V {
        let a = self.iconst(axes);
        let name = self.push("Squeeze", &v.name, vec![v.name.clone(), a], vec![]);
        V {
            name,
            batched: v.batched,
            dims,
        }
    }

    /// The ONNX axis of per-sample axis `k` of `v`.
    pub(super) fn axis(v: &V, k: usize) -> i64 {
        (k + usize::from(v.batched)) as i64
    }

    /// The per-sample axes of `v`, as ONNX axes.
    pub(super) fn sample_axes(v: &V) -> Vec<i64> {
        (0..v.dims.len()).map(|k| Self::axis(v, k)).collect()
    }

    /// Swaps the last two axes.
    pub(super) fn transpose(&mut self, v: &V) -> V {
        let r = v.rank();
        let mut perm: Vec<i64> = (0..r as i64).collect();
        perm.swap(r - 2, r - 1);
        let name = self.push(
            "Transpose",
            &format!("{}_t", v.name),
            vec![v.name.clone()],
            vec![Attr::Ints("perm", perm)],
        );
        let mut dims = v.dims.clone();
        let n = dims.len();
        dims.swap(n - 2, n - 1);
        V {
            name,
            batched: v.batched,
            dims,
        }
    }

    pub(super) fn reduce_sum(&mut self, v: &V, axes: &[i64], keep: bool, base: &str) -> String {
        let a = self.iconst(axes);
        self.push(
            "ReduceSum",
            base,
            vec![v.name.clone(), a],
            vec![Attr::Int("keepdims", i64::from(keep))],
        )
    }

    /// A binary elementwise node; the result's shape is the broadcast of both.
    pub(super) fn binary(&mut self, op: &'static str, a: &V, b: &V, base: &str) -> V {
        let name = self.push(op, base, vec![a.name.clone(), b.name.clone()], vec![]);
        V {
            name,
            batched: a.batched || b.batched,
            dims: broadcast(&a.dims, &b.dims),
        }
    }

    pub(super) fn unary(&mut self, op: &'static str, a: &V, base: &str) -> V {
        let name = self.push(op, base, vec![a.name.clone()], vec![]);
        V {
            name,
            batched: a.batched,
            dims: a.dims.clone(),
        }
    }

    pub(super) fn scalar(&mut self, v: f64) -> V {
        V {
            name: self.fconst(v),
            batched: false,
            dims: vec![],
        }
    }

    /// The product `a @ b` of two matrices (or stacks of them).
    pub(super) fn matmul(&mut self, a: &V, b: &V, base: &str, dims: Vec<usize>) -> V {
        let name = self.push("MatMul", base, vec![a.name.clone(), b.name.clone()], vec![]);
        V {
            name,
            batched: a.batched || b.batched,
            dims,
        }
    }

    /// `w · x` for `w: [m, k]`, `x: [k]` (either of them batched).
    pub(super) fn matvec(&mut self, w: &V, x: &V, base: &str) -> V {
        let m = w.dims[0];
        if !w.batched && x.batched {
            // [N, k] · wᵀ: what `nn.Linear` exports as
            let name = self.push(
                "Gemm",
                base,
                vec![x.name.clone(), w.name.clone()],
                vec![Attr::Int("transB", 1)],
            );
            return V {
                name,
                batched: true,
                dims: vec![m],
            };
        }
        // [.., m, k] @ [.., k, 1] -> [.., m, 1] -> [.., m]
        let xc = self.unsqueeze(x, &[x.rank() as i64], vec![x.dims[0], 1]);
        let p = self.matmul(w, &xc, base, vec![m, 1]);
        let r = p.rank() as i64;
        self.squeeze(&p, &[r - 1], vec![m])
    }

    /// `xᵀ · b` for `x: [k]`, `b: [k, n]`.
    pub(super) fn vecmat(&mut self, x: &V, b: &V, base: &str) -> V {
        let n = b.dims[1];
        if x.batched && !b.batched {
            return self.matmul(x, b, base, vec![n]);
        }
        // [.., 1, k] @ [.., k, n] -> [.., 1, n] -> [.., n]
        let xr = self.unsqueeze(x, &[Self::axis(x, 0)], vec![1, x.dims[0]]);
        let p = self.matmul(&xr, b, base, vec![1, n]);
        let r = p.rank() as i64;
        self.squeeze(&p, &[r - 2], vec![n])
    }

    /// An operand of an elementwise node, given the same rank as the output
    /// (`bcast` tells which axes it runs along), so that ONNX's broadcasting
    /// (aligned at the last axis) pairs the right elements.
    pub(super) fn align(&mut self, v: &V, bcast: Bcast, out: &[usize]) -> V {
        let r = out.len();
        match bcast {
            Bcast::Full => v.clone(),
            Bcast::Scalar if v.batched => {
                let axes: Vec<i64> = (1..=r as i64).collect();
                self.unsqueeze(v, &axes, vec![1; r])
            }
            Bcast::Scalar => v.clone(),
            // a vector [m] along the columns of [m, n]: [m, 1]
            Bcast::Col => {
                let ax = v.rank() as i64;
                self.unsqueeze(v, &[ax], vec![v.dims[0], 1])
            }
            // a vector [n] along the rows of [m, n]: [1, n]
            Bcast::Row if v.batched => self.unsqueeze(v, &[1], vec![1, v.dims[0]]),
            Bcast::Row => v.clone(),
        }
    }
}

/// The broadcast of two per-sample shapes (aligned at the last axis).
pub(super) fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|k| {
            let da = (k + a.len()).checked_sub(r).map_or(1, |i| a[i]);
            let db = (k + b.len()).checked_sub(r).map_or(1, |i| b[i]);
            da.max(db)
        })
        .collect()
}

/// A scalar expression's value: a number, or the truth of a comparison
/// (ONNX booleans, turned into numbers where used as one).
pub(super) enum Sv {
    Num(V),
    Bool(V),
}

impl B<'_> {
    pub(super) fn num(&mut self, s: Sv) -> V {
        match s {
            Sv::Num(v) => v,
            Sv::Bool(b) => {
                let elem = self.elem;
                let name = self.push(
                    "Cast",
                    &format!("{}_num", b.name),
                    vec![b.name.clone()],
                    vec![Attr::Int("to", elem)],
                );
                V { name, ..b }
            }
        }
    }

    pub(super) fn cond(&mut self, s: Sv, base: &str) -> V {
        match s {
            Sv::Bool(b) => b,
            Sv::Num(v) => {
                let zero = self.scalar(0.0);
                let eq = self.binary("Equal", &v, &zero, base);
                self.unary("Not", &eq, base)
            }
        }
    }

    /// One elementwise body over its aligned operands.
    pub(super) fn body(&mut self, s: &S, args: &[V], base: &str, id: NodeId) -> R<Sv> {
        let go = |b: &mut Self, s: &S| -> R<V> {
            let v = b.body(s, args, base, id)?;
            Ok(b.num(v))
        };
        Ok(match s {
            S::Arg(k) => match args.get(*k) {
                Some(v) => Sv::Num(v.clone()),
                None => {
                    return Err(unsupported(
                        self.g,
                        id,
                        "an elementwise body reads a missing operand",
                    ))
                }
            },
            S::Out => {
                return Err(unsupported(
                    self.g,
                    id,
                    "an elementwise body reads its own output",
                ))
            }
            S::Const(c) => Sv::Num(self.scalar(*c)),
            S::Neg(a) => {
                let a = go(self, a)?;
                Sv::Num(self.unary("Neg", &a, base))
            }
            // a long left-nested chain `((a + b) + c) + ...`: one `Sum`
            S::Add(..) if matches!(s, S::Add(a, _) if matches!(**a, S::Add(..))) => {
                let mut terms = vec![];
                let mut at = s;
                while let S::Add(a, b) = at {
                    terms.push(&**b);
                    at = a;
                }
                terms.push(at);
                terms.reverse();
                let mut vs = vec![];
                for t in terms {
                    vs.push(go(self, t)?);
                }
                let name = self.push(
                    "Sum",
                    base,
                    vs.iter().map(|v| v.name.clone()).collect(),
                    vec![],
                );
                let dims = vs.iter().fold(vec![], |d, v| broadcast(&d, &v.dims));
                Sv::Num(V {
                    name,
                    batched: vs.iter().any(|v| v.batched),
                    dims,
                })
            }
            S::Add(a, b) | S::Sub(a, b) | S::Mul(a, b) | S::Div(a, b) => {
                let op = match s {
                    S::Add(..) => "Add",
                    S::Sub(..) => "Sub",
                    S::Mul(..) => "Mul",
                    _ => "Div",
                };
                let (a, b) = (go(self, a)?, go(self, b)?);
                Sv::Num(self.binary(op, &a, &b, base))
            }
            S::Pow(a, e) => {
                let a = go(self, a)?;
                Sv::Num(self.pow(&a, *e, base))
            }
            S::Call(f, a) => {
                let a = go(self, a)?;
                Sv::Num(self.call(f.name(), &a, base, id)?)
            }
            S::Cmp(op, a, b) => {
                let (a, b) = (go(self, a)?, go(self, b)?);
                Sv::Bool(self.compare(*op, &a, &b, base))
            }
            S::Select(p, a, b) => {
                let p = self.body(p, args, base, id)?;
                let p = self.cond(p, base);
                let (a, b) = (go(self, a)?, go(self, b)?);
                Sv::Num(self.select(&p, &a, &b, base))
            }
        })
    }

    pub(super) fn select(&mut self, p: &V, a: &V, b: &V, base: &str) -> V {
        let name = self.push(
            "Where",
            base,
            vec![p.name.clone(), a.name.clone(), b.name.clone()],
            vec![],
        );
        V {
            name,
            batched: p.batched || a.batched || b.batched,
            dims: broadcast(&broadcast(&p.dims, &a.dims), &b.dims),
        }
    }

    pub(super) fn compare(&mut self, op: Cmp, a: &V, b: &V, base: &str) -> V {
        match op {
            Cmp::Lt => self.binary("Less", a, b, base),
            Cmp::Gt => self.binary("Greater", a, b, base),
            Cmp::Le => self.binary("LessOrEqual", a, b, base),
            Cmp::Ge => self.binary("GreaterOrEqual", a, b, base),
            Cmp::Eq => self.binary("Equal", a, b, base),
            Cmp::Ne => {
                let eq = self.binary("Equal", a, b, base);
                self.unary("Not", &eq, base)
            }
        }
    }

    /// `a ^ e` as the generated code computes it: repeated products for an
    /// integer exponent (`powi`), `Pow` otherwise.
    pub(super) fn pow(&mut self, a: &V, e: f64, base: &str) -> V {
        if e.fract() == 0.0 && e.abs() <= 64.0 {
            let n = e.abs() as u32;
            if n == 0 {
                // 1 in a's shape, for every x (NaN included), as `powi(0)`
                let one = self.scalar(1.0);
                let t = self.binary("Equal", a, a, base);
                return self.select(&t, &one, &one, base);
            }
            // binary powering, as `powi`
            let mut result: Option<V> = None;
            let mut sq = a.clone();
            let mut k = n;
            loop {
                if k & 1 == 1 {
                    result = Some(match result {
                        None => sq.clone(),
                        Some(r) => self.binary("Mul", &r, &sq, base),
                    });
                }
                k >>= 1;
                if k == 0 {
                    break;
                }
                sq = self.binary("Mul", &sq, &sq, base);
            }
            let r = result.unwrap_or_else(|| a.clone());
            if e < 0.0 {
                let one = self.scalar(1.0);
                return self.binary("Div", &one, &r, base);
            }
            return r;
        }
        let c = self.scalar(e);
        self.binary("Pow", a, &c, base)
    }

    /// A primitive function of the elementwise table.
    pub(super) fn call(&mut self, f: &str, a: &V, base: &str, id: NodeId) -> R<V> {
        let direct = match f {
            "sigmoid" => Some("Sigmoid"),
            "tanh" => Some("Tanh"),
            "relu" => Some("Relu"),
            "exp" => Some("Exp"),
            "log" => Some("Log"),
            "sqrt" => Some("Sqrt"),
            "abs" => Some("Abs"),
            "erf" => Some("Erf"),
            "sign" => Some("Sign"),
            "sin" => Some("Sin"),
            "cos" => Some("Cos"),
            _ => None,
        };
        if let Some(op) = direct {
            return Ok(self.unary(op, a, base));
        }
        Ok(match f {
            // 1 where x > 0, else 0
            "step" => {
                let zero = self.scalar(0.0);
                let gt = self.binary("Greater", a, &zero, base);
                self.num(Sv::Bool(gt))
            }
            // max(x, 0) + log1p(e^-|x|): ONNX's `Softplus` is ln(eˣ + 1),
            // which overflows for large x and loses small results
            "softplus" => {
                let ab = self.unary("Abs", a, base);
                let neg = self.unary("Neg", &ab, base);
                let e = self.unary("Exp", &neg, base);
                let l = self.log1p_small(&e, base);
                let r = self.unary("Relu", a, base);
                self.binary("Add", &r, &l, base)
            }
            "log1p" => {
                // ln(1 + x), accurate near 0: x ln(u) / (u - 1) for u = 1 + x
                // (x itself where u rounds to 1); plain ln(u) above 1
                let small = self.log1p_small(a, base);
                let one = self.scalar(1.0);
                let u = self.binary("Add", &one, a, base);
                let ln = self.unary("Log", &u, base);
                let big = self.binary("Greater", a, &one, base);
                self.select(&big, &ln, &small, base)
            }
            "expm1" => {
                // eˣ - 1, accurate near 0: (u - 1) x / ln(u) for u = eˣ (x
                // itself where u rounds to 1); plain u - 1 beyond |x| > 1
                let one = self.scalar(1.0);
                let u = self.unary("Exp", a, base);
                let um1 = self.binary("Sub", &u, &one, base);
                let ln = self.unary("Log", &u, base);
                let num = self.binary("Mul", &um1, a, base);
                let q = self.binary("Div", &num, &ln, base);
                let is_one = self.binary("Equal", &u, &one, base);
                let small = self.select(&is_one, a, &q, base);
                let ab = self.unary("Abs", a, base);
                let big = self.binary("Greater", &ab, &one, base);
                self.select(&big, &um1, &small, base)
            }
            other => {
                return Err(unsupported(
                    self.g,
                    id,
                    &format!("the elementwise function `{other}` has no ONNX form"),
                ))
            }
        })
    }

    /// ln(1 + y) for y >= -1 where 1 + y may round: y ln(u) / (u - 1),
    /// `u = 1 + y`, and y itself where u rounds to 1.
    pub(super) fn log1p_small(&mut self, y: &V, base: &str) -> V {
        let one = self.scalar(1.0);
        let u = self.binary("Add", &one, y, base);
        let d = self.binary("Sub", &u, &one, base);
        let ln = self.unary("Log", &u, base);
        let num = self.binary("Mul", &ln, y, base);
        let q = self.binary("Div", &num, &d, base);
        let zero = self.scalar(0.0);
        let exact = self.binary("Equal", &d, &zero, base);
        self.select(&exact, y, &q, base)
    }
}
