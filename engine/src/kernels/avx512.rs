//! Placeholder until the avx512 kernels land: reports itself unavailable.
use super::Kernels;

pub(super) fn kernels() -> Option<&'static Kernels> {
    None
}
