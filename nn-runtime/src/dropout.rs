//! Dropout masks, as the generated training passes draw them: each element
//! kept or dropped by a hash of the sample's seed, the dropout's index in
//! the definition and the element's index, with no random stream shared
//! between samples. A sample's mask is therefore a function of its seed
//! alone, whichever thread or batch block computes it; the trainer gives
//! sample `i` of a step the seed [`sample_seed`]`(step_seed, i)`.

use crate::float::Float;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
const fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The dropout seed of sample `sample` (its index in the data) in the
/// training step whose seed is `step_seed`.
pub const fn sample_seed(step_seed: u64, sample: usize) -> u64 {
    mix(step_seed ^ mix(sample as u64 ^ 0xD1B5_4A32_D192_ED03))
}

/// Whether element `index` of dropout `layer` is kept, with drop
/// probability `p`, for the sample whose seed is `seed`.
pub fn keep(seed: u64, layer: usize, index: usize, p: f64) -> bool {
    let h = mix(seed ^ mix(((layer as u64) << 40) ^ index as u64));
    // uniform in [0, 1) from 53 bits
    let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    u >= p
}

/// The mask value of element `index` of dropout `layer`: with dropout `on`,
/// `1 / (1 - p)` where the element is kept and 0 where it is dropped;
/// with it off, 1.
#[inline]
pub fn scale<T: Float>(on: bool, seed: u64, layer: usize, index: usize, p: f64) -> T {
    if !on {
        T::ONE
    } else if keep(seed, layer, index, p) {
        T::from_f64(1.0 / (1.0 - p))
    } else {
        T::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_fraction_is_one_minus_p_and_samples_differ() {
        let p = 0.3;
        let n = 100_000;
        let kept = (0..n).filter(|&i| keep(sample_seed(7, 0), 0, i, p)).count();
        let frac = kept as f64 / n as f64;
        assert!((frac - 0.7).abs() < 0.01, "{frac}");
        // other samples, layers and steps draw other masks
        let mask = |s: u64, sample, layer| {
            (0..64)
                .map(|i| keep(sample_seed(s, sample), layer, i, 0.5))
                .collect::<Vec<_>>()
        };
        assert_ne!(mask(7, 0, 0), mask(7, 1, 0));
        assert_ne!(mask(7, 0, 0), mask(7, 0, 1));
        assert_ne!(mask(7, 0, 0), mask(8, 0, 0));
        assert_eq!(mask(7, 3, 1), mask(7, 3, 1));
        assert_eq!(scale::<f32>(false, 1, 0, 0, 0.5), 1.0);
        let s: f64 = scale(true, sample_seed(7, 0), 0, 0, 0.5);
        assert!(s == 0.0 || s == 2.0);
    }
}
