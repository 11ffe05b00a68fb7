//! Query rows attending over cached positions, streamed in tiles with an online softmax.
//!
//! One call handles every query row that reads the same key/value head: the query heads of a
//! GQA group and, in prefill, several consecutive tokens. Positions are walked in tiles of
//! [`TILE`]; a tile's keys and values are read from memory once and then from L1 for each
//! further row. Each row keeps a running maximum `m`, a running sum `l` of `exp(score - m)`
//! and an unnormalised f32 output `acc`, rescaled whenever `m` grows, so no score buffer as
//! long as the context is needed and a row's positions can be split across several calls
//! (threads) and the parts merged ([`merge`]).

use super::Kernels;
use half::f16;

/// Positions per tile: a tile of 256-wide f16 keys and values (64 KiB) still mostly fits L2,
/// and a 64-wide one fits L1.
pub const TILE: usize = 64;

/// A run of cached keys or values; position `p` of head `h` starts at `p * stride + h * hd`.
#[derive(Clone, Copy)]
pub enum Kv<'a> {
    F32(&'a [f32]),
    /// IEEE half-precision bits.
    F16(&'a [u16]),
}

impl<'a> Kv<'a> {
    /// The same run without its first `n` elements (another head's offset).
    pub fn skip(self, n: usize) -> Kv<'a> {
        match self {
            Kv::F32(s) => Kv::F32(&s[n..]),
            Kv::F16(s) => Kv::F16(&s[n..]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Kv::F32(s) => s.len(),
            Kv::F16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f32 (the scalar reference's read).
    #[inline]
    fn at(&self, i: usize) -> f32 {
        match self {
            Kv::F32(s) => s[i],
            Kv::F16(s) => f16::from_bits(s[i]).to_f32(),
        }
    }
}

/// The query rows of one call and the positions each sees.
///
/// Rows are numbered `r = t * group + g` for token `t` of `spans` and query head `g` of the
/// group; row `r`'s query is `q[t * q_stride + g * hd..][..hd]`.
pub struct AttnBlock<'a> {
    pub q: &'a [f32],
    pub q_stride: usize,
    /// Query heads per token that share this key/value head.
    pub group: usize,
    pub hd: usize,
    /// Per token: the positions `lo..hi` it attends to (possibly empty).
    pub spans: &'a [(usize, usize)],
    /// Position `p`'s key is `keys[p * stride..][..hd]`, its value likewise in `values`.
    pub keys: Kv<'a>,
    pub values: Kv<'a>,
    pub stride: usize,
    /// Multiplies every score before the softmax.
    pub scale: f32,
}

/// Online-softmax state of each row of an [`AttnBlock`]: `m[r]`, `l[r]` and
/// `acc[r * hd..][..hd]`. A row that saw no position has `m = -inf`, `l = 0`, `acc = 0`.
pub struct AttnState<'a> {
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub acc: &'a mut [f32],
}

/// A kernel for [`attend`]; called only after [`AttnBlock::check`] has passed. It overwrites
/// the state.
pub type Attend = fn(&AttnBlock<'_>, &mut AttnState<'_>);

impl AttnBlock<'_> {
    pub fn rows(&self) -> usize {
        self.spans.len() * self.group
    }

    /// Panics unless every query, key and value read lies inside the slices and the state
    /// fits; SIMD implementations rely on this before reading through raw pointers.
    pub fn check(&self, st: &AttnState<'_>) {
        let (hd, rows) = (self.hd, self.rows());
        assert!(hd > 0 && self.group > 0, "attention: empty head");
        if let Some(t) = self.spans.len().checked_sub(1) {
            assert!(
                self.q.len() >= t * self.q_stride + self.group * hd,
                "attention: query rows out of range"
            );
        }
        let hi = self.spans.iter().map(|s| s.1).max().unwrap_or(0);
        if hi > 0 {
            let last = (hi - 1) * self.stride + hd;
            assert!(
                self.keys.len() >= last && self.values.len() >= last,
                "attention: key/value cache shorter than {hi} positions"
            );
        }
        assert!(
            st.m.len() >= rows && st.l.len() >= rows && st.acc.len() >= rows * hd,
            "attention: state sizes"
        );
    }
}

/// Runs the table's kernel over `b`, overwriting `st`.
pub fn attend(k: &Kernels, b: &AttnBlock<'_>, st: &mut AttnState<'_>) {
    b.check(st);
    (k.attend)(b, st)
}

/// The reference: the same tiles and online softmax in plain Rust, with `f32::exp`.
pub fn attend_scalar(b: &AttnBlock<'_>, st: &mut AttnState<'_>) {
    b.check(st);
    let hd = b.hd;
    let mut s = [0.0f32; TILE];
    for r in 0..b.rows() {
        st.m[r] = f32::NEG_INFINITY;
        st.l[r] = 0.0;
        st.acc[r * hd..(r + 1) * hd].fill(0.0);
    }
    let Some((lo, hi)) = outer_span(b.spans) else {
        return;
    };
    for t0 in (lo..hi).step_by(TILE) {
        let t1 = (t0 + TILE).min(hi);
        for (t, &span) in b.spans.iter().enumerate() {
            let (a, e) = (span.0.max(t0), span.1.min(t1));
            if a >= e {
                continue;
            }
            for g in 0..b.group {
                let r = t * b.group + g;
                let q = &b.q[t * b.q_stride + g * hd..][..hd];
                let s = &mut s[..e - a];
                for (j, sj) in s.iter_mut().enumerate() {
                    let base = (a + j) * b.stride;
                    let dot: f32 = (0..hd).map(|i| q[i] * b.keys.at(base + i)).sum();
                    *sj = dot * b.scale;
                }
                let mx = s.iter().copied().fold(st.m[r], f32::max);
                let acc = &mut st.acc[r * hd..(r + 1) * hd];
                if mx > st.m[r] {
                    let f = (st.m[r] - mx).exp();
                    st.l[r] *= f;
                    acc.iter_mut().for_each(|v| *v *= f);
                    st.m[r] = mx;
                }
                for (j, &sj) in s.iter().enumerate() {
                    let p = (sj - mx).exp();
                    st.l[r] += p;
                    let base = (a + j) * b.stride;
                    for (i, o) in acc.iter_mut().enumerate() {
                        *o += p * b.values.at(base + i);
                    }
                }
            }
        }
    }
}

/// The smallest `lo` and largest `hi` of the non-empty spans.
pub fn outer_span(spans: &[(usize, usize)]) -> Option<(usize, usize)> {
    spans
        .iter()
        .filter(|s| s.0 < s.1)
        .fold(None, |o, &(a, e)| match o {
            None => Some((a, e)),
            Some((lo, hi)) => Some((lo.min(a), hi.max(e))),
        })
}

/// One row's attention output from the states of the parts its positions were split into:
/// `out = sum_i exp(m_i - m) acc_i / sum_i exp(m_i - m) l_i`. All-empty parts give zeros.
pub fn merge<'a>(parts: impl Iterator<Item = (f32, f32, &'a [f32])> + Clone, out: &mut [f32]) {
    let m = parts.clone().fold(f32::NEG_INFINITY, |m, p| m.max(p.0));
    out.fill(0.0);
    if m == f32::NEG_INFINITY {
        return;
    }
    let mut l = 0.0;
    for (mi, li, acc) in parts {
        if li == 0.0 {
            continue;
        }
        let f = (mi - m).exp();
        l += f * li;
        for (o, &a) in out.iter_mut().zip(acc) {
            *o += f * a;
        }
    }
    let inv = 1.0 / l;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// `exp(x)` for `x <= 0` as the SIMD kernels compute it lane by lane: `x = n ln2 + r` with
/// `|r| <= ln2 / 2`, then a degree-6 Taylor polynomial for `e^r` (relative error about 2e-7)
/// times `2^n`; below -87 (and -inf) the result is 0. Kept here so tests can check it.
#[cfg(test)]
pub fn exp_approx(x: f32) -> f32 {
    if x < -87.0 {
        return 0.0;
    }
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = EXP_POLY.iter().rev().fold(0.0, |acc, &c| acc * r + c);
    p * 2f32.powi(n as i32)
}

/// ln 2 split so `n * LN2_HI` is exact for the `n` that occur.
pub(crate) const LN2_HI: f32 = 0.693_145_75;
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;
/// `1 / k!` for k = 0..=6.
pub(crate) const EXP_POLY: [f32; 7] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::test_support::Rng;

    /// Random queries, keys and values for `tokens` tokens of `group` rows over `n` positions
    /// of a cache `heads` key/value heads wide, with causal spans ending at `n - tokens + t + 1`
    /// (and a sliding window when `window` is set).
    pub struct Case {
        pub hd: usize,
        pub group: usize,
        pub q: Vec<f32>,
        pub k32: Vec<f32>,
        pub v32: Vec<f32>,
        pub k16: Vec<u16>,
        pub v16: Vec<u16>,
        pub spans: Vec<(usize, usize)>,
        pub stride: usize,
    }

    impl Case {
        pub fn new(rng: &mut Rng, hd: usize, group: usize, n: usize, tokens: usize) -> Case {
            let heads = 2;
            let stride = heads * hd;
            let q_stride = group * hd + 3;
            let q: Vec<f32> = (0..tokens * q_stride).map(|_| 3.0 * rng.f32()).collect();
            let k32: Vec<f32> = (0..n * stride).map(|_| rng.f32()).collect();
            let v32: Vec<f32> = (0..n * stride).map(|_| rng.f32()).collect();
            let k16 = k32.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
            let v16 = v32.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
            let spans = (0..tokens)
                .map(|t| {
                    let hi = n - tokens.min(n) + t.min(n - 1) + 1;
                    let lo = if t % 3 == 2 { hi / 3 } else { 0 };
                    (lo, hi.min(n))
                })
                .collect();
            Case {
                hd,
                group,
                q,
                k32,
                v32,
                k16,
                v16,
                spans,
                stride,
            }
        }

        /// The block over the second key/value head, in f16 or f32.
        pub fn block(&self, f16: bool) -> AttnBlock<'_> {
            let hd = self.hd;
            AttnBlock {
                q: &self.q,
                q_stride: self.group * hd + 3,
                group: self.group,
                hd,
                spans: &self.spans,
                keys: if f16 {
                    Kv::F16(&self.k16[hd..])
                } else {
                    Kv::F32(&self.k32[hd..])
                },
                values: if f16 {
                    Kv::F16(&self.v16[hd..])
                } else {
                    Kv::F32(&self.v32[hd..])
                },
                stride: self.stride,
                scale: 1.0 / (hd as f32).sqrt(),
            }
        }

        /// Every row's normalised output through `f`.
        pub fn run(&self, f16: bool, f: Attend) -> Vec<f32> {
            let b = self.block(f16);
            let rows = b.rows();
            let (mut m, mut l, mut acc) = (
                vec![f32::NAN; rows],
                vec![f32::NAN; rows],
                vec![f32::NAN; rows * b.hd],
            );
            let mut st = AttnState {
                m: &mut m,
                l: &mut l,
                acc: &mut acc,
            };
            b.check(&st);
            f(&b, &mut st);
            let mut out = vec![0.0; rows * b.hd];
            for r in 0..rows {
                let a = &acc[r * b.hd..(r + 1) * b.hd];
                merge(
                    std::iter::once((m[r], l[r], a)),
                    &mut out[r * b.hd..][..b.hd],
                );
            }
            out
        }
    }

    /// Straightforward attention (full score row, softmax, weighted sum) for one row.
    fn naive(b: &AttnBlock<'_>, t: usize, g: usize) -> Vec<f32> {
        let (lo, hi) = b.spans[t];
        let q = &b.q[t * b.q_stride + g * b.hd..][..b.hd];
        let mut s: Vec<f32> = (lo..hi)
            .map(|p| {
                (0..b.hd)
                    .map(|i| q[i] * b.keys.at(p * b.stride + i))
                    .sum::<f32>()
                    * b.scale
            })
            .collect();
        crate::ops::softmax(&mut s);
        let mut out = vec![0.0; b.hd];
        for (j, &a) in s.iter().enumerate() {
            for (i, o) in out.iter_mut().enumerate() {
                *o += a * b.values.at((lo + j) * b.stride + i);
            }
        }
        out
    }

    /// Asserts `got` is within `tol` of `want` element by element.
    pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "{what} [{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn the_reference_equals_a_plain_softmax() {
        let mut rng = Rng(11);
        for (hd, group, n, tokens) in [
            (64, 3, 1, 1),
            (64, 3, 200, 5),
            (16, 1, 130, 7),
            (128, 2, 65, 1),
        ] {
            let c = Case::new(&mut rng, hd, group, n, tokens);
            for f16 in [false, true] {
                let b = c.block(f16);
                let got = c.run(f16, attend_scalar);
                for t in 0..tokens {
                    for g in 0..group {
                        let r = t * group + g;
                        let want = naive(&b, t, g);
                        let what = format!("hd {hd} n {n} t {t} g {g}");
                        assert_close(&got[r * hd..(r + 1) * hd], &want, 1e-5, &what);
                    }
                }
            }
        }
    }

    #[test]
    fn merged_parts_equal_one_pass() {
        let mut rng = Rng(5);
        let c = Case::new(&mut rng, 64, 2, 300, 1);
        let whole = c.run(true, attend_scalar);
        let b = c.block(true);
        let (lo, hi) = b.spans[0];
        let cuts = [lo, lo + 37, lo + 37, lo + 200, hi];
        let mut states = Vec::new();
        for w in cuts.windows(2) {
            let spans = [(w[0], w[1])];
            let part = AttnBlock {
                spans: &spans,
                ..c.block(true)
            };
            let (mut m, mut l, mut acc) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 128]);
            attend_scalar(
                &part,
                &mut AttnState {
                    m: &mut m,
                    l: &mut l,
                    acc: &mut acc,
                },
            );
            states.push((m, l, acc));
        }
        for g in 0..2 {
            let mut out = vec![0.0; 64];
            let parts = states
                .iter()
                .map(|(m, l, a)| (m[g], l[g], &a[g * 64..(g + 1) * 64]));
            merge(parts, &mut out);
            assert_close(&out, &whole[g * 64..(g + 1) * 64], 1e-6, "merged");
        }
    }

    #[test]
    fn the_exp_approximation_is_within_a_few_ulp() {
        let mut x = -90.0f32;
        while x <= 0.0 {
            let (got, want) = (exp_approx(x), x.exp());
            assert!(
                (got - want).abs() <= 4e-7 * want || (x < -87.0 && got == 0.0),
                "exp({x}): {got} vs {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
    }

    /// Every table's kernel against the reference: head sizes the supported models use and
    /// others, lengths around and between tiles, GQA groups, prefill blocks, f16 and f32.
    #[test]
    fn every_table_matches_the_reference() {
        let mut rng = Rng(7);
        for hd in [64, 128, 256, 16, 48, 40] {
            for n in [1, 2, 17, 63, 64, 65, 130, 257, 600] {
                for (group, tokens) in [(1, 1), (3, 1), (4, 1), (2, 5), (1, 9)] {
                    let c = Case::new(&mut rng, hd, group, n, tokens);
                    for f16 in [true, false] {
                        let want = c.run(f16, attend_scalar);
                        for k in crate::kernels::available() {
                            let got = c.run(f16, k.attend);
                            let what = format!(
                                "{} hd {hd} n {n} group {group} tokens {tokens} f16 {f16}",
                                k.isa
                            );
                            assert_close(&got, &want, 2e-5, &what);
                        }
                    }
                }
            }
        }
    }
}
