//! A model summary, as torchinfo and Keras print one: every parameter
//! tensor with its shape and size, the totals, the work of one sample's
//! passes and the memory of its tape. Every generated network implements
//! `Display` with it (`println!("{net}")`).

use crate::network::{Network, ParamInfo};
use alloc::{format, string::String, string::ToString, vec::Vec};
use core::fmt;

/// What [`Summary::of`] reads from a network's constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The network's type name, without its module path.
    pub name: &'static str,
    /// `"f32"` or `"f64"`.
    pub dtype: &'static str,
    /// Every parameter tensor, in declaration order.
    pub params: &'static [ParamInfo],
    /// Number of scalar parameters.
    pub total: usize,
    /// Floating-point operations of one forward pass.
    pub forward_flops: u64,
    /// Floating-point operations of one backward pass.
    pub backward_flops: u64,
    /// Bytes of one sample's tape.
    pub tape_bytes: usize,
    /// The widths the batched passes are compiled for (empty for none).
    pub batch_widths: &'static [usize],
}

impl Summary {
    /// The summary of network type `N`.
    pub fn of<N: Network>() -> Summary {
        let full = core::any::type_name::<N>();
        let name = full.rsplit("::").next().unwrap_or(full);
        Summary {
            name,
            dtype: if core::mem::size_of::<N::Scalar>() == 4 {
                "f32"
            } else {
                "f64"
            },
            params: N::PARAM_INFO,
            total: N::PARAMS,
            forward_flops: N::FORWARD_FLOPS,
            backward_flops: N::BACKWARD_FLOPS,
            tape_bytes: N::TAPE_BYTES,
            batch_widths: N::BATCH_WIDTHS,
        }
    }
}

/// `12345` as `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in B, KiB or MiB.
fn bytes(n: usize) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

impl fmt::Display for Summary {
    /// ```text
    /// Digits (f32)
    /// parameter   shape     count
    /// h.weight    [32, 64]  2,048
    /// ...
    /// total                 2,410 (9.4 KiB)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{:?}", p.shape))
            .collect();
        let counts: Vec<String> = self
            .params
            .iter()
            .map(|p| grouped(p.len() as u64))
            .collect();
        let total = grouped(self.total as u64);
        let w_name = self
            .params
            .iter()
            .map(|p| p.name.chars().count())
            .chain(["parameter".len(), "total".len()])
            .max()
            .unwrap_or(0);
        let w_shape = shapes
            .iter()
            .map(String::len)
            .chain(["shape".len()])
            .max()
            .unwrap_or(0);
        let w_count = counts
            .iter()
            .map(String::len)
            .chain(["count".len(), total.len()])
            .max()
            .unwrap_or(0);
        writeln!(f, "{} ({})", self.name, self.dtype)?;
        writeln!(
            f,
            "{:<w_name$}  {:<w_shape$}  {:>w_count$}",
            "parameter", "shape", "count"
        )?;
        for ((p, s), c) in self.params.iter().zip(&shapes).zip(&counts) {
            writeln!(f, "{:<w_name$}  {s:<w_shape$}  {c:>w_count$}", p.name)?;
        }
        let size = bytes(self.total * if self.dtype == "f32" { 4 } else { 8 });
        writeln!(
            f,
            "{:<w_name$}  {:<w_shape$}  {total:>w_count$} ({size})",
            "total", ""
        )?;
        writeln!(
            f,
            "per sample: forward {} FLOPs, backward {} FLOPs, tape {}",
            grouped(self.forward_flops),
            grouped(self.backward_flops),
            bytes(self.tape_bytes)
        )?;
        match self.batch_widths {
            [] => write!(f, "batched passes: none (trained one sample at a time)"),
            widths => write!(f, "batched passes: {widths:?} samples"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_sizes_scaled() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(9640), "9.4 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn the_table_lines_up() {
        static PARAMS: [ParamInfo; 2] = [
            ParamInfo {
                name: "h.weight",
                shape: &[32, 64],
                offset: 0,
            },
            ParamInfo {
                name: "h.bias",
                shape: &[32],
                offset: 2048,
            },
        ];
        let s = Summary {
            name: "Net",
            dtype: "f32",
            params: &PARAMS,
            total: 2080,
            forward_flops: 4160,
            backward_flops: 6240,
            tape_bytes: 640,
            batch_widths: &[32, 4],
        };
        let expected = "\
Net (f32)
parameter  shape     count
h.weight   [32, 64]  2,048
h.bias     [32]         32
total                2,080 (8.1 KiB)
per sample: forward 4,160 FLOPs, backward 6,240 FLOPs, tape 640 B
batched passes: [32, 4] samples";
        assert_eq!(s.to_string(), expected);
    }
}
