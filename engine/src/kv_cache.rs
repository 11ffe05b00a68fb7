//! Keys and values of every past position, per layer, in f16 (the default, as llama.cpp) or
//! f32. At long contexts attention reads the whole cache per token, so its element size is
//! what decode speed at depth is bound by.

use crate::kernels::attention::Kv;
use crate::kernels::convert::f32_to_f16;
use std::fmt;
use std::str::FromStr;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheType {
    #[default]
    F16,
    F32,
}

impl CacheType {
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F16 => "f16",
            CacheType::F32 => "f32",
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            CacheType::F16 => 2,
            CacheType::F32 => 4,
        }
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<CacheType, String> {
        match s {
            "f16" => Ok(CacheType::F16),
            "f32" => Ok(CacheType::F32),
            _ => Err(format!("unknown cache type '{s}' (f16 or f32)")),
        }
    }
}

/// One layer's keys or values, `[pos * kv_dim + i]`. Allocated zeroed, so pages are only
/// touched (and counted in RSS) as positions are written.
enum Store {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Store {
    fn new(ty: CacheType, n: usize) -> Store {
        match ty {
            CacheType::F16 => Store::F16(vec![0; n]),
            CacheType::F32 => Store::F32(vec![0.0; n]),
        }
    }

    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            Store::F16(s) => f32_to_f16(x, &mut s[at..at + x.len()]),
            Store::F32(s) => s[at..at + x.len()].copy_from_slice(x),
        }
    }

    fn view(&self) -> Kv<'_> {
        match self {
            Store::F16(s) => Kv::F16(s),
            Store::F32(s) => Kv::F32(s),
        }
    }
}

pub struct KvCache {
    k: Vec<Store>,
    v: Vec<Store>,
    pub kv_dim: usize,
    pub capacity: usize,
    /// Positions filled so far.
    pub len: usize,
    pub ty: CacheType,
}

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize, capacity: usize, ty: CacheType) -> KvCache {
        let n = capacity * kv_dim;
        KvCache {
            k: (0..n_layers).map(|_| Store::new(ty, n)).collect(),
            v: (0..n_layers).map(|_| Store::new(ty, n)).collect(),
            kv_dim,
            capacity,
            len: 0,
            ty,
        }
    }

    /// Stores keys and values for positions `p0..` of `layer` (rows of `kv_dim`, converted to
    /// the cache's type).
    pub fn write(&mut self, layer: usize, p0: usize, k: &[f32], v: &[f32]) {
        let at = p0 * self.kv_dim;
        assert!(
            k.len() == v.len() && at + k.len() <= self.capacity * self.kv_dim,
            "KV cache write out of range"
        );
        self.k[layer].write(at, k);
        self.v[layer].write(at, v);
    }

    /// One layer's keys and values, every position of the capacity.
    pub fn layer(&self, layer: usize) -> (Kv<'_>, Kv<'_>) {
        (self.k[layer].view(), self.v[layer].view())
    }

    /// Forgets every position (the memory is reused).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.capacity * self.kv_dim * self.ty.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back_in_the_cache_type() {
        for ty in [CacheType::F16, CacheType::F32] {
            let mut c = KvCache::new(2, 4, 3, ty);
            let k = [1.0, -2.5, 0.1, 65504.0, 3.0, 4.0, 5.0, 6.0];
            let v = [0.5; 8];
            c.write(1, 1, &k, &v);
            let (kv, vv) = c.layer(1);
            let at = |s: Kv<'_>, i: usize| match s {
                Kv::F16(s) => half::f16::from_bits(s[i]).to_f32(),
                Kv::F32(s) => s[i],
            };
            assert_eq!(at(kv, 4 + 1), -2.5, "{ty}");
            assert_eq!(at(vv, 11), 0.5, "{ty}");
            assert_eq!(at(kv, 0), 0.0, "{ty}");
            let want = if ty == CacheType::F16 {
                half::f16::from_f32(0.1).to_f32()
            } else {
                0.1
            };
            assert_eq!(at(kv, 6), want, "{ty}");
            assert_eq!(c.bytes(), 2 * 2 * 3 * 4 * ty.bytes());
        }
    }
}
