//! x86-64 `f32` kernels for AVX2 + FMA (8 lanes) and AVX-512F (16 lanes).
//!
//! Each kernel is written once, generic over a [`Simd`] vector type whose
//! methods are `#[inline(always)]`, and instantiated inside one
//! `#[target_feature]` function per instruction set, so the whole kernel is
//! compiled for that instruction set and the intrinsics inline into it.
//!
//! # Safety contract
//! Every `pub(super)` function here is `unsafe`: the caller (the checked
//! wrappers in `f32_kernels`) guarantees that
//! - the CPU supports the target features of the `Isa` passed in, and
//! - every pointer is valid for the extent its dimensions describe (an
//!   `m × k` row-major matrix with row stride `ld` covers
//!   `(m - 1) · ld + k` elements), and the output does not overlap an input.
//!
//! Inside, all memory accesses stay within those extents: vector loops run
//! while a whole vector fits, and the rest of a row is done one element at a
//! time.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use super::Isa;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;

/// A vector of `f32` lanes. Every method requires the CPU features of the
/// implementing type and is only called from functions compiled with them.
trait Simd: Copy {
    const LANES: usize;
    /// The most rows a two-vector-wide register tile of `c` may have: it
    /// must leave registers for the two vectors of `b` and the broadcast.
    const MAX_ROWS: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// Unaligned load of `LANES` values from `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// Unaligned store of `LANES` values to `p`.
    unsafe fn store(self, p: *mut f32);
    /// The first `n < LANES` values at `p` (the other lanes zero), touching
    /// no memory past them.
    unsafe fn load_first(p: *const f32, n: usize) -> Self;
    /// Stores the first `n < LANES` lanes to `p`, touching no memory past them.
    unsafe fn store_first(self, p: *mut f32, n: usize);
    /// `a · b + c`, fused.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// Sum of the lanes.
    unsafe fn hsum(self) -> f32;
}

/// AVX2 + FMA: 8 lanes.
#[derive(Clone, Copy)]
struct Y(__m256);

impl Simd for Y {
    const LANES: usize = 8;
    const MAX_ROWS: usize = 6;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn zero() -> Self {
        Y(_mm256_setzero_ps())
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn splat(x: f32) -> Self {
        Y(_mm256_set1_ps(x))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        Y(_mm256_loadu_ps(p))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        Y(_mm256_maskload_ps(p, y_mask(n)))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        _mm256_maskstore_ps(p, y_mask(n), self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Y(_mm256_fmadd_ps(a.0, b.0, c.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn add(a: Self, b: Self) -> Self {
        Y(_mm256_add_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn hsum(self) -> f32 {
        let s = _mm_add_ps(
            _mm256_castps256_ps128(self.0),
            _mm256_extractf128_ps::<1>(self.0),
        );
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }
}

/// The AVX2 lane mask of the first `n` of 8 lanes (masked loads and stores
/// fault on no lane left out).
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn y_mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The AVX-512 mask of the first `n` of 16 lanes.
#[cfg_attr(not(debug_assertions), inline(always))]
fn z_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// AVX-512F: 16 lanes.
#[derive(Clone, Copy)]
struct Z(__m512);

// The AVX-512 intrinsics are stable since Rust 1.89 (the workspace's
// declared `rust-version` is older; see the kernels' notes).
#[allow(clippy::incompatible_msrv)]
impl Simd for Z {
    const LANES: usize = 16;
    const MAX_ROWS: usize = 12;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn zero() -> Self {
        Z(_mm512_setzero_ps())
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn splat(x: f32) -> Self {
        Z(_mm512_set1_ps(x))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        Z(_mm512_loadu_ps(p))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        Z(_mm512_maskz_loadu_ps(z_mask(n), p))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        _mm512_mask_storeu_ps(p, z_mask(n), self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Z(_mm512_fmadd_ps(a.0, b.0, c.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn add(a: Self, b: Self) -> Self {
        Z(_mm512_add_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn hsum(self) -> f32 {
        _mm512_reduce_add_ps(self.0)
    }
}

/// Defines `pub(super) unsafe fn $name(isa, args)` that runs `$imp::<V>` compiled
/// for `isa`'s target features; `[a, b]` passes the micro-kernel's usual row
/// count (`MR`): `a` for AVX2 (6 × 2 vectors: 12 of the 16 registers hold
/// `c`), `b` for AVX-512 (8 × 2 vectors: 16 of 32). Leftover rows may make
/// one block taller, up to `Simd::MAX_ROWS` (6 and 12: 24 of the 32 AVX-512
/// registers), see `row_blocks`.
macro_rules! entry {
    ($(#[$doc:meta])* $name:ident = $imp:ident $([$mr2:literal, $mr5:literal])? ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        pub(super) unsafe fn $name(isa: Isa, $($arg: $ty),*) {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $imp::<Y $(, $mr2)?>($($arg),*)
            }
            #[allow(clippy::incompatible_msrv)]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                $imp::<Z $(, $mr5)?>($($arg),*)
            }
            match isa {
                Isa::Avx2Fma => avx2($($arg),*),
                Isa::Avx512 => avx512($($arg),*),
                Isa::Portable => unreachable!("portable kernels do not come here"),
            }
        }
    };
}

entry!(
    /// `out (+)= w · x` for `w: [m, k]`.
    matvec = matvec_impl(w: *const f32, x: *const f32, out: *mut f32, m: usize, k: usize, acc: bool)
);
entry!(
    /// `out += wᵀ · d` for `w: [m, k]`, `d: [m]`, `out: [k]`.
    matvec_t_acc = matvec_t_impl(w: *const f32, d: *const f32, out: *mut f32, m: usize, k: usize)
);
entry!(
    /// `out += u ⊗ v` for `u: [m]`, `v: [n]`, `out: [m, n]`.
    outer_acc = outer_impl(u: *const f32, v: *const f32, out: *mut f32, m: usize, n: usize)
);
entry!(
    /// `c (+)= A · b`: `A` is `[m, kk]` (see [`Operand`]), `b` is `[kk, n]` with
    /// row stride `ldb`, `c` is `[m, n]` with row stride `ldc`.
    gemm = gemm_impl[6, 8](
        m: usize,
        n: usize,
        kk: usize,
        a: Operand,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        acc: bool
    )
);
entry!(
    /// `out += d · bᵀ` for `d: [m, n]`, `b: [k, n]`, `out: [m, k]`.
    gemm_nt_acc = gemm_nt_impl[6, 8](
        m: usize,
        k: usize,
        n: usize,
        d: *const f32,
        b: *const f32,
        out: *mut f32
    )
);

entry!(
    /// `dst = srcᵀ` for `src: [rows, cols]` (row-major), `dst: [cols, rows]`.
    transpose = transpose_impl(src: *const f32, rows: usize, cols: usize, dst: *mut f32)
);

/// A matrix operand read by element: `(r, p)` is at `ptr + r·row + p·col`,
/// so a transposed matrix is the same memory with the steps swapped.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub ptr: *const f32,
    pub row: usize,
    pub col: usize,
}

/// Four rows at a time, two vectors of `x` per step (eight independent sums
/// cover the FMA latency), then the leftover elements one by one.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn matvec_impl<V: Simd>(
    w: *const f32,
    x: *const f32,
    out: *mut f32,
    m: usize,
    k: usize,
    acc: bool,
) {
    let l = V::LANES;
    let mut i = 0;
    while i + 4 <= m {
        let rows = [
            w.add(i * k),
            w.add((i + 1) * k),
            w.add((i + 2) * k),
            w.add((i + 3) * k),
        ];
        let mut s = [[V::zero(); 2]; 4];
        let mut j = 0;
        while j + 2 * l <= k {
            let (x0, x1) = (V::load(x.add(j)), V::load(x.add(j + l)));
            for r in 0..4 {
                s[r][0] = V::fma(V::load(rows[r].add(j)), x0, s[r][0]);
                s[r][1] = V::fma(V::load(rows[r].add(j + l)), x1, s[r][1]);
            }
            j += 2 * l;
        }
        if j + l <= k {
            let x0 = V::load(x.add(j));
            for r in 0..4 {
                s[r][0] = V::fma(V::load(rows[r].add(j)), x0, s[r][0]);
            }
            j += l;
        }
        if j < k {
            // the last elements of each row, one masked vector
            let w = k - j;
            let x0 = V::load_first(x.add(j), w);
            for r in 0..4 {
                s[r][1] = V::fma(V::load_first(rows[r].add(j), w), x0, s[r][1]);
            }
        }
        for r in 0..4 {
            let t = V::add(s[r][0], s[r][1]).hsum();
            let o = out.add(i + r);
            *o = if acc { *o + t } else { t };
        }
        i += 4;
    }
    while i < m {
        let row = w.add(i * k);
        let mut s = [V::zero(); 2];
        let mut j = 0;
        while j + 2 * l <= k {
            s[0] = V::fma(V::load(row.add(j)), V::load(x.add(j)), s[0]);
            s[1] = V::fma(V::load(row.add(j + l)), V::load(x.add(j + l)), s[1]);
            j += 2 * l;
        }
        if j + l <= k {
            s[0] = V::fma(V::load(row.add(j)), V::load(x.add(j)), s[0]);
            j += l;
        }
        if j < k {
            let w = k - j;
            s[1] = V::fma(
                V::load_first(row.add(j), w),
                V::load_first(x.add(j), w),
                s[1],
            );
        }
        let t = V::add(s[0], s[1]).hsum();
        let o = out.add(i);
        *o = if acc { *o + t } else { t };
        i += 1;
    }
}

/// Column blocks of `out` (four vectors, then one) stay in registers while
/// every row of `w` adds `d[i] · w[i][block]` to them.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn matvec_t_impl<V: Simd>(w: *const f32, d: *const f32, out: *mut f32, m: usize, k: usize) {
    let l = V::LANES;
    let mut j = 0;
    while j + 4 * l <= k {
        let mut s = [V::zero(); 4];
        for q in 0..4 {
            s[q] = V::load(out.add(j + q * l));
        }
        for i in 0..m {
            let di = V::splat(*d.add(i));
            let p = w.add(i * k + j);
            for q in 0..4 {
                s[q] = V::fma(di, V::load(p.add(q * l)), s[q]);
            }
        }
        for q in 0..4 {
            s[q].store(out.add(j + q * l));
        }
        j += 4 * l;
    }
    while j + l <= k {
        let mut s = V::load(out.add(j));
        for i in 0..m {
            s = V::fma(V::splat(*d.add(i)), V::load(w.add(i * k + j)), s);
        }
        s.store(out.add(j));
        j += l;
    }
    if j < k {
        // the last columns, one masked vector
        let r = k - j;
        let mut s = V::load_first(out.add(j), r);
        for i in 0..m {
            s = V::fma(V::splat(*d.add(i)), V::load_first(w.add(i * k + j), r), s);
        }
        s.store_first(out.add(j), r);
    }
}

/// Row by row: `out[i][..] += u[i] · v`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn outer_impl<V: Simd>(u: *const f32, v: *const f32, out: *mut f32, m: usize, n: usize) {
    let l = V::LANES;
    for i in 0..m {
        let ui = V::splat(*u.add(i));
        let row = out.add(i * n);
        let mut j = 0;
        while j + 2 * l <= n {
            V::fma(ui, V::load(v.add(j)), V::load(row.add(j))).store(row.add(j));
            V::fma(ui, V::load(v.add(j + l)), V::load(row.add(j + l))).store(row.add(j + l));
            j += 2 * l;
        }
        if j + l <= n {
            V::fma(ui, V::load(v.add(j)), V::load(row.add(j))).store(row.add(j));
            j += l;
        }
        if j < n {
            let w = n - j;
            let (vj, rj) = (V::load_first(v.add(j), w), V::load_first(row.add(j), w));
            V::fma(ui, vj, rj).store_first(row.add(j), w);
        }
    }
}

/// Depth of one pass over the shared dimension: a `KC × 2·LANES` block of `b`
/// (16 KiB for AVX2, 32 KiB for AVX-512 at most) stays in L1 while every row
/// block of `A` streams past it.
const KC: usize = 256;

/// Cache-blocked matrix product: for each `KC`-deep slice of the shared
/// dimension and each two-vector-wide column panel of `b`, `MR`-row
/// micro-kernels keep an `MR × 2` block of `c` in registers.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn gemm_impl<V: Simd, const MR: usize>(
    m: usize,
    n: usize,
    kk: usize,
    a: Operand,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    let l = V::LANES;
    if kk == 0 {
        if !acc {
            for i in 0..m {
                core::ptr::write_bytes(c.add(i * ldc), 0, n);
            }
        }
        return;
    }
    // Equal passes of at most KC: no short last pass that reloads and stores
    // all of `c` for a few steps of depth.
    let step = if kk <= KC {
        kk
    } else {
        kk.div_ceil(kk.div_ceil(KC))
    };
    let mut pc = 0;
    while pc < kk {
        let kc = step.min(kk - pc);
        let load_c = acc || pc > 0;
        let ap = Operand {
            ptr: a.ptr.add(pc * a.col),
            ..a
        };
        let bp = b.add(pc * ldb);
        let mut j = 0;
        while j + 2 * l <= n {
            row_blocks::<V, MR, 2, false>(m, kc, ap, bp.add(j), ldb, c.add(j), ldc, load_c, l);
            j += 2 * l;
        }
        if j + l <= n {
            row_blocks::<V, MR, 1, false>(m, kc, ap, bp.add(j), ldb, c.add(j), ldc, load_c, l);
            j += l;
        }
        if j < n {
            // the last `n - j < LANES` columns: one masked vector
            row_blocks::<V, MR, 1, true>(m, kc, ap, bp.add(j), ldb, c.add(j), ldc, load_c, n - j);
        }
        pc += kc;
    }
}

/// All rows of one column panel: blocks of `MR` rows, the `r = m % MR`
/// rows left over merged into the last block when that stays within
/// `V::MAX_ROWS` (so an output of 10 rows is one block on AVX-512), else
/// one block of `r` when `r ≥ MR / 2`, else the last full block and the rest
/// as two blocks of about `(MR + r) / 2`: no block is so short that its few
/// accumulators cannot hide the FMA latency.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn row_blocks<V: Simd, const MR: usize, const NV: usize, const PARTIAL: bool>(
    m: usize,
    kc: usize,
    a: Operand,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    w: usize,
) {
    let (mut full, rest) = (m / MR, m % MR);
    let tail = if rest == 0 || full == 0 {
        [rest, 0]
    } else if MR + rest <= V::MAX_ROWS {
        full -= 1;
        [MR + rest, 0]
    } else if rest >= MR / 2 {
        [rest, 0]
    } else {
        full -= 1;
        [(MR + rest) / 2, (MR + rest).div_ceil(2)]
    };
    // Plain loops and `#[inline(always)]` calls, no closures: everything must
    // inline into the caller's `#[target_feature]` function.
    let mut i = 0;
    for _ in 0..full {
        let at = Operand {
            ptr: a.ptr.add(i * a.row),
            ..a
        };
        micro::<V, MR, NV, PARTIAL>(kc, at, b, ldb, c.add(i * ldc), ldc, load_c, w);
        i += MR;
    }
    for r in tail {
        if r > 0 {
            let at = Operand {
                ptr: a.ptr.add(i * a.row),
                ..a
            };
            micro_rows::<V, NV, PARTIAL>(r, kc, at, b, ldb, c.add(i * ldc), ldc, load_c, w);
            i += r;
        }
    }
}

/// [`micro`] for a run-time row count `r ≤ V::MAX_ROWS`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn micro_rows<V: Simd, const NV: usize, const PARTIAL: bool>(
    r: usize,
    kc: usize,
    a: Operand,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    w: usize,
) {
    macro_rules! heights {
        ($($h:literal)*) => {
            match r {
                $($h if $h <= V::MAX_ROWS => micro::<V, $h, NV, PARTIAL>(kc, a, b, ldb, c, ldc, load_c, w),)*
                _ => unreachable!("row block of {r} rows"),
            }
        };
    }
    heights!(1 2 3 4 5 6 7 8 9 10 11 12);
}

/// The register tile: `c[R][NV vectors] (+)= Σ_p A(r, p) · b[p][..]`, with one
/// broadcast of `A` and `NV` loads of `b` per `R · NV` FMAs. `PARTIAL`: the
/// tile is one vector of which only the first `w < LANES` columns exist
/// (masked loads and stores; the other lanes compute zeros).
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn micro<V: Simd, const R: usize, const NV: usize, const PARTIAL: bool>(
    kc: usize,
    a: Operand,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    w: usize,
) {
    let l = V::LANES;
    let mut s = [[V::zero(); NV]; R];
    if load_c {
        for r in 0..R {
            for v in 0..NV {
                s[r][v] = load_cols::<V, PARTIAL>(c.add(r * ldc + v * l), w);
            }
        }
    }
    let (mut ap, mut bp) = (a.ptr, b);
    for _ in 0..kc {
        let mut bv = [V::zero(); NV];
        for v in 0..NV {
            bv[v] = load_cols::<V, PARTIAL>(bp.add(v * l), w);
        }
        for r in 0..R {
            let ar = V::splat(*ap.add(r * a.row));
            for v in 0..NV {
                s[r][v] = V::fma(ar, bv[v], s[r][v]);
            }
        }
        ap = ap.add(a.col);
        bp = bp.add(ldb);
    }
    for r in 0..R {
        for v in 0..NV {
            if PARTIAL {
                s[r][v].store_first(c.add(r * ldc + v * l), w);
            } else {
                s[r][v].store(c.add(r * ldc + v * l));
            }
        }
    }
}

/// A vector of `b` or `c`: whole, or (`PARTIAL`) its first `w` lanes. (A
/// function, not a closure: a closure would not inherit the caller's target
/// features.)
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn load_cols<V: Simd, const PARTIAL: bool>(p: *const f32, w: usize) -> V {
    if PARTIAL {
        V::load_first(p, w)
    } else {
        V::load(p)
    }
}

/// Columns of `out` per packed block.
const PJ: usize = 128;
/// Depth (columns of `d` and `b`) per packed block.
const PB: usize = 64;

/// `out += d · bᵀ`: `PB × PJ` blocks of `bᵀ` are packed (transposed, 8 × 8
/// tiles at a time) into a 32 KiB stack buffer, then multiplied by
/// [`gemm_impl`], whose vectors then run along the rows of `out`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn gemm_nt_impl<V: Simd, const MR: usize>(
    m: usize,
    k: usize,
    n: usize,
    d: *const f32,
    b: *const f32,
    out: *mut f32,
) {
    let mut buf = MaybeUninit::<[f32; PB * PJ]>::uninit();
    let bt = buf.as_mut_ptr() as *mut f32;
    let mut j0 = 0;
    while j0 < k {
        let pj = PJ.min(k - j0);
        let mut b0 = 0;
        while b0 < n {
            let pb = PB.min(n - b0);
            // bt[q][jj] = b[j0 + jj][b0 + q] for q < pb, jj < pj: exactly the
            // part of the buffer `gemm_impl` reads below (`pb` rows of `pj`).
            pack_transposed(b.add(j0 * n + b0), n, pj, pb, bt, PJ);
            gemm_impl::<V, MR>(
                m,
                pj,
                pb,
                Operand {
                    ptr: d.add(b0),
                    row: n,
                    col: 1,
                },
                bt,
                PJ,
                out.add(j0),
                k,
                true,
            );
            b0 += pb;
        }
        j0 += pj;
    }
}

/// `dst = srcᵀ` through [`pack_transposed`] (AVX 8 × 8 tiles on both paths).
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn transpose_impl<V: Simd>(src: *const f32, rows: usize, cols: usize, dst: *mut f32) {
    pack_transposed(src, cols, rows, cols, dst, rows)
}

/// `dst[q][r] = src[r][q]` for `r < rows`, `q < cols` (`src` row stride `lds`,
/// `dst` row stride `ldd`), 8 × 8 tiles through AVX registers, edges one by one.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn pack_transposed(
    src: *const f32,
    lds: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ldd: usize,
) {
    // The inner loop runs along the shorter side, so that a strip of 8 short
    // rows (of `dst` when `rows` is the shorter side, of `src` otherwise) is
    // finished whole, a cache line at a time, before the next one.
    // (No closure for the tile: a closure would not inherit the caller's
    // target features, and the AVX intrinsics would not be inlined.)
    let (r8, q8) = (rows - rows % 8, cols - cols % 8);
    if rows <= cols {
        for q in (0..q8).step_by(8) {
            for r in (0..r8).step_by(8) {
                transpose8(src.add(r * lds + q), lds, dst.add(q * ldd + r), ldd);
            }
        }
    } else {
        for r in (0..r8).step_by(8) {
            for q in (0..q8).step_by(8) {
                transpose8(src.add(r * lds + q), lds, dst.add(q * ldd + r), ldd);
            }
        }
    }
    for qq in q8..cols {
        for rr in 0..rows {
            *dst.add(qq * ldd + rr) = *src.add(rr * lds + qq);
        }
    }
    for rr in r8..rows {
        for qq in 0..q8 {
            *dst.add(qq * ldd + rr) = *src.add(rr * lds + qq);
        }
    }
}

/// Transposes one 8 × 8 tile (unpack, shuffle, then swap 128-bit halves).
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn transpose8(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
    let r: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(src.add(i * lds)));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let o = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (i, v) in o.iter().enumerate() {
        _mm256_storeu_ps(dst.add(i * ldd), *v);
    }
}

// ---------------------------------------------------------------------------
// Transcendental functions: the `Lanes` operations of `math` for both vector
// types, and the slice entry point.

use super::math::{self, Func, Lanes};

impl Lanes for Y {
    const LANES: usize = 8;
    type I = __m256i;
    type M = __m256;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn splat(x: f32) -> Self {
        Y(_mm256_set1_ps(x))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        Y(_mm256_loadu_ps(p))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn add(a: Self, b: Self) -> Self {
        Y(_mm256_add_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn sub(a: Self, b: Self) -> Self {
        Y(_mm256_sub_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Y(_mm256_mul_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn div(a: Self, b: Self) -> Self {
        Y(_mm256_div_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Y(_mm256_fmadd_ps(a.0, b.0, c.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn max(a: Self, b: Self) -> Self {
        Y(_mm256_max_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn min(a: Self, b: Self) -> Self {
        Y(_mm256_min_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn lt(a: Self, b: Self) -> __m256 {
        _mm256_cmp_ps::<_CMP_LT_OQ>(a.0, b.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn ge(a: Self, b: Self) -> __m256 {
        _mm256_cmp_ps::<_CMP_GE_OQ>(a.0, b.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn eq(a: Self, b: Self) -> __m256 {
        _mm256_cmp_ps::<_CMP_EQ_OQ>(a.0, b.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn select(m: __m256, a: Self, b: Self) -> Self {
        Y(_mm256_blendv_ps(b.0, a.0, m))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn isplat(x: i32) -> __m256i {
        _mm256_set1_epi32(x)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn iadd(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn isub(a: __m256i, b: __m256i) -> __m256i {
        _mm256_sub_epi32(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn iand(a: __m256i, b: __m256i) -> __m256i {
        _mm256_and_si256(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn ior(a: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn shl23(a: __m256i) -> __m256i {
        _mm256_slli_epi32::<23>(a)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn shr23(a: __m256i) -> __m256i {
        _mm256_srli_epi32::<23>(a)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn sra1(a: __m256i) -> __m256i {
        _mm256_srai_epi32::<1>(a)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn to_bits(self) -> __m256i {
        _mm256_castps_si256(self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn from_bits(i: __m256i) -> Self {
        Y(_mm256_castsi256_ps(i))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn i2f(i: __m256i) -> Self {
        Y(_mm256_cvtepi32_ps(i))
    }
}

#[allow(clippy::incompatible_msrv)]
impl Lanes for Z {
    const LANES: usize = 16;
    type I = __m512i;
    type M = __mmask16;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn splat(x: f32) -> Self {
        Z(_mm512_set1_ps(x))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        Z(_mm512_loadu_ps(p))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn add(a: Self, b: Self) -> Self {
        Z(_mm512_add_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn sub(a: Self, b: Self) -> Self {
        Z(_mm512_sub_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Z(_mm512_mul_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn div(a: Self, b: Self) -> Self {
        Z(_mm512_div_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Z(_mm512_fmadd_ps(a.0, b.0, c.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn max(a: Self, b: Self) -> Self {
        Z(_mm512_max_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn min(a: Self, b: Self) -> Self {
        Z(_mm512_min_ps(a.0, b.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn lt(a: Self, b: Self) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a.0, b.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn ge(a: Self, b: Self) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a.0, b.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn eq(a: Self, b: Self) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a.0, b.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn select(m: __mmask16, a: Self, b: Self) -> Self {
        Z(_mm512_mask_blend_ps(m, b.0, a.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn isplat(x: i32) -> __m512i {
        _mm512_set1_epi32(x)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn iadd(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi32(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn isub(a: __m512i, b: __m512i) -> __m512i {
        _mm512_sub_epi32(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn iand(a: __m512i, b: __m512i) -> __m512i {
        _mm512_and_si512(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn ior(a: __m512i, b: __m512i) -> __m512i {
        _mm512_or_si512(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn shl23(a: __m512i) -> __m512i {
        _mm512_slli_epi32::<23>(a)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn shr23(a: __m512i) -> __m512i {
        _mm512_srli_epi32::<23>(a)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn sra1(a: __m512i) -> __m512i {
        _mm512_srai_epi32::<1>(a)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn to_bits(self) -> __m512i {
        _mm512_castps_si512(self.0)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn from_bits(i: __m512i) -> Self {
        Z(_mm512_castsi512_ps(i))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn i2f(i: __m512i) -> Self {
        Z(_mm512_cvtepi32_ps(i))
    }
}

/// `out[i] = func(x[i])` for `i < n` (`x` and `out` may be the same pointer).
pub(super) unsafe fn map(isa: Isa, func: Func, x: *const f32, out: *mut f32, n: usize) {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(func: Func, x: *const f32, out: *mut f32, n: usize) {
        math::with_op!(func, |O| math::map::<Y, O>(x, out, n))
    }
    #[allow(clippy::incompatible_msrv)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512(func: Func, x: *const f32, out: *mut f32, n: usize) {
        math::with_op!(func, |O| math::map::<Z, O>(x, out, n))
    }
    match isa {
        Isa::Avx2Fma => avx2(func, x, out, n),
        Isa::Avx512 => avx512(func, x, out, n),
        Isa::Portable => unreachable!("portable kernels do not come here"),
    }
}
