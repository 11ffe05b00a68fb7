//! Keys and values of every past position, per layer, kept in f32.

pub struct KvCache {
    /// `[layer][pos * kv_dim + i]`
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub kv_dim: usize,
    pub capacity: usize,
    /// Positions filled so far.
    pub len: usize,
}

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize, capacity: usize) -> KvCache {
        KvCache {
            k: (0..n_layers)
                .map(|_| vec![0.0; capacity * kv_dim])
                .collect(),
            v: (0..n_layers)
                .map(|_| vec![0.0; capacity * kv_dim])
                .collect(),
            kv_dim,
            capacity,
            len: 0,
        }
    }

    /// Forgets every position (the memory is reused).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.capacity * self.kv_dim * std::mem::size_of::<f32>()
    }
}
