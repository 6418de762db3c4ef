//! Random-walk reachability, shared by the `connectivity` and `trust` variants.
//!
//! Both papers read W as the transition matrix of a walk over peers. The self-weight w_ii is
//! where the walk stops (the absorbing state of market paper §3 and appendix 12.7, whose code
//! sets `Q = W - diag(W)`), so the walk moves along Q, the row-normalised W without its
//! diagonal. The expected number of visits to j of a walk started at i is the fundamental
//! matrix `N = (I - Q)^-1 = sum_k Q^k`; computing it needs an n x n inverse, which the papers
//! themselves replace by a depth cut-off (market paper §5, second version "random walks to
//! some depth d"). We do the same:
//!
//! `v_ij = sum_{k=0..depth} (Q^k)_ij`,
//!
//! the expected visits to j within `depth` steps, including the zero-step visit (so v_ii >= 1,
//! as in N). A peer that set no weights at all has taken no part: it reaches nobody, not even
//! itself ("outwardly dis-trusting", market paper §4), so its row of V is empty. It costs O(k^depth) per source for k weights per row, so O(n k^depth) per epoch:
//! fine for the hundreds to few thousands of peers these variants were designed for, and the
//! reason `nakamoto` and `yuma` replaced them on large networks.

use crate::SparseMatrix;
use rayon::prelude::*;

/// Sources handled per parallel block. Results are handed to the caller block by block in
/// source order, so the caller's sums never depend on the thread count.
const BLOCK: usize = 128;

/// Scratch space for walks from one source at a time over a network of n peers.
pub struct Walker {
    visits: Vec<f64>,
    visited: Vec<u32>,
    seen: Vec<bool>,
    current: Vec<f64>,
    frontier: Vec<u32>,
    next: Vec<f64>,
    next_frontier: Vec<u32>,
    in_next: Vec<bool>,
}

impl Walker {
    /// Scratch for a network of `n` peers, allocated once and reused for every source, so
    /// an epoch's walks allocate nothing per peer.
    pub fn new(n: usize) -> Self {
        Walker {
            visits: vec![0.0; n],
            visited: Vec::new(),
            seen: vec![false; n],
            current: vec![0.0; n],
            frontier: Vec::new(),
            next: vec![0.0; n],
            next_frontier: Vec::new(),
            in_next: vec![false; n],
        }
    }

    /// Writes `(j, v_ij)` for every j with `v_ij > 0` into `out`, sorted by j. `q` must be the
    /// row-normalised W; its diagonal is skipped here rather than copied away.
    pub fn visits_from(&mut self, q: &SparseMatrix, source: usize, depth: usize, out: &mut Vec<(u32, f64)>) {
        out.clear();
        if q.row(source).0.is_empty() {
            return;
        }
        self.visits[source] = 1.0;
        self.seen[source] = true;
        self.visited.push(source as u32);
        self.current[source] = 1.0;
        self.frontier.push(source as u32);
        for _ in 0..depth {
            // Ascending u, so each next[j] is summed in the same order on every run.
            self.frontier.sort_unstable();
            for &u in &self.frontier {
                let mass = self.current[u as usize];
                let (cols, vals) = q.row(u as usize);
                for (&j, &w) in cols.iter().zip(vals) {
                    if j == u {
                        continue;
                    }
                    let j = j as usize;
                    if !self.in_next[j] {
                        self.in_next[j] = true;
                        self.next_frontier.push(j as u32);
                    }
                    self.next[j] += mass * w;
                }
            }
            for &u in &self.frontier {
                self.current[u as usize] = 0.0;
            }
            self.frontier.clear();
            std::mem::swap(&mut self.current, &mut self.next);
            std::mem::swap(&mut self.frontier, &mut self.next_frontier);
            for &j in &self.frontier {
                let j = j as usize;
                self.in_next[j] = false;
                self.visits[j] += self.current[j];
                if !self.seen[j] {
                    self.seen[j] = true;
                    self.visited.push(j as u32);
                }
            }
            if self.frontier.is_empty() {
                break;
            }
        }
        for &u in &self.frontier {
            self.current[u as usize] = 0.0;
        }
        self.frontier.clear();
        self.visited.sort_unstable();
        for &j in &self.visited {
            let v = self.visits[j as usize];
            if v > 0.0 {
                out.push((j, v));
            }
            self.visits[j as usize] = 0.0;
            self.seen[j as usize] = false;
        }
        self.visited.clear();
    }
}

/// Calls `f(i, visits_from(i))` for every source i in ascending order. Walks run in parallel
/// (each is independent), `f` runs sequentially in source order.
pub fn for_each_source(q: &SparseMatrix, depth: usize, mut f: impl FnMut(usize, &[(u32, f64)])) {
    let n = q.n();
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let block: Vec<Vec<(u32, f64)>> = (start..end)
            .into_par_iter()
            .map_init(
                || Walker::new(n),
                |walker, i| {
                    let mut out = Vec::new();
                    walker.visits_from(q, i, depth, &mut out);
                    out
                },
            )
            .collect();
        for (offset, visits) in block.iter().enumerate() {
            f(start + offset, visits);
        }
        start = end;
    }
}

/// Dense reference: `V = sum_{k=0..depth} Q^k` by plain matrix products, `Q` being the
/// row-normalised W without its diagonal; rows of peers that set no weights are zero.
pub fn visits_dense(w_normalised: &[Vec<f64>], depth: usize) -> Vec<Vec<f64>> {
    let n = w_normalised.len();
    let mut q = w_normalised.to_vec();
    for (i, row) in q.iter_mut().enumerate() {
        row[i] = 0.0;
    }
    let mut power: Vec<Vec<f64>> =
        (0..n).map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect()).collect();
    let mut total = power.clone();
    for _ in 0..depth {
        let mut next = vec![vec![0.0; n]; n];
        for i in 0..n {
            for u in 0..n {
                if power[i][u] == 0.0 {
                    continue;
                }
                for j in 0..n {
                    next[i][j] += power[i][u] * q[u][j];
                }
            }
        }
        power = next;
        for i in 0..n {
            for j in 0..n {
                total[i][j] += power[i][j];
            }
        }
    }
    for (i, row) in total.iter_mut().enumerate() {
        if w_normalised[i].iter().all(|&w| w == 0.0) {
            row.fill(0.0);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_three_by_hand() {
        // 0 -> 1 (0.5) and stays (0.5); 1 -> 2 (1.0); 2 stays (1.0).
        // Q = [[0, .5, 0], [0, 0, 1], [0, 0, 0]]
        // From 0, depth 2: k=0 {0: 1}, k=1 {1: 0.5}, k=2 {2: 0.5}
        let w =
            SparseMatrix::from_rows(3, [vec![(0, 0.5), (1, 0.5)], vec![(2, 1.0)], vec![(2, 1.0)]]).unwrap();
        let mut walker = Walker::new(3);
        let mut out = Vec::new();
        walker.visits_from(&w, 0, 2, &mut out);
        assert_eq!(out, vec![(0, 1.0), (1, 0.5), (2, 0.5)]);
        walker.visits_from(&w, 0, 1, &mut out);
        assert_eq!(out, vec![(0, 1.0), (1, 0.5)]);
        walker.visits_from(&w, 2, 5, &mut out);
        assert_eq!(out, vec![(2, 1.0)]);
        walker.visits_from(&w, 0, 0, &mut out);
        assert_eq!(out, vec![(0, 1.0)]);
        // A peer with no weights reaches nobody.
        let silent = SparseMatrix::from_rows(2, [vec![], vec![(0, 1.0)]]).unwrap();
        Walker::new(2).visits_from(&silent, 0, 3, &mut out);
        assert!(out.is_empty());
        assert_eq!(visits_dense(&silent.to_dense(), 3)[0], vec![0.0, 0.0]);
    }

    #[test]
    fn cycles_revisit() {
        // 0 <-> 1 with probability 1: visits to 0 from 0 within 4 steps = 1 + 1 + 1 (k=0,2,4).
        let w = SparseMatrix::from_rows(2, [vec![(1, 1.0)], vec![(0, 1.0)]]).unwrap();
        let mut out = Vec::new();
        Walker::new(2).visits_from(&w, 0, 4, &mut out);
        assert_eq!(out, vec![(0, 3.0), (1, 2.0)]);
    }

    #[test]
    fn sparse_matches_dense_and_is_ordered() {
        let rows: Vec<Vec<(usize, f64)>> = (0..40)
            .map(|i| {
                (0..40)
                    .filter(|j| (i * 7 + j * 3) % 5 == 0)
                    .map(|j| (j, 1.0 + ((i + j) % 3) as f64))
                    .collect()
            })
            .collect();
        let w = SparseMatrix::from_rows(40, rows).unwrap().row_normalized();
        let dense = visits_dense(&w.to_dense(), 3);
        let mut seen = 0;
        for_each_source(&w, 3, |i, visits| {
            assert_eq!(i, seen);
            seen += 1;
            for j in 0..40 {
                let sparse = visits.iter().find(|(c, _)| *c as usize == j).map_or(0.0, |(_, v)| *v);
                assert!((sparse - dense[i][j]).abs() < 1e-12, "v[{i}][{j}]: {sparse} vs {}", dense[i][j]);
            }
        });
        assert_eq!(seen, 40);
    }
}
