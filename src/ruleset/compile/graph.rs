//! The graph checks, on the compiled model: segment cycles (segments using
//! segments), prerequisite cycles, and the cost limits that bound how many
//! conditions deciding one flag, or every flag, may test (evaluation does not
//! memoise, so shared prerequisites or segments in layers multiply).
//!
//! It must not look at operands or names (only indices), and must not recurse:
//! graphs come from untrusted rulesets, and a long chain must not overflow the stack.

use crate::eval::model::{self, Condition};

use super::{CompileError, ErrorKind, Place};

/// Most conditions one evaluate-all may test in the worst case (every
/// enabled flag's cost, summed: each flag walks its prerequisites again).
/// It bounds the CPU of one evaluate-all while staying far above what real
/// rulesets need; the README ("Benchmarks") has the evaluation timings.
pub const MAX_RULESET_COST: u64 = 1_000_000;

/// Most conditions one flag's decision may test in the worst case, counting a
/// prerequisite or segment again on every path that reaches it (evaluation
/// does not memoise). Far above real rulesets (a flag of 2,000 rules of 5
/// conditions is 10,000), far below a layered "diamond" of prerequisites or
/// segments that would take seconds per request (2^30 paths).
pub const MAX_FLAG_COST: u64 = 100_000;

/// Rejects a ruleset in which deciding some flag tests more than
/// [`MAX_FLAG_COST`] conditions. Runs after the cycle checks (the graphs are
/// acyclic). Cost of a segment: its conditions, a segment condition counting
/// as that segment's cost (+1); of a flag: 1, its rules' conditions the same
/// way, plus each prerequisite's cost.
pub(super) fn check_evaluation_cost(
    flags: &[model::Flag],
    segments: &[model::Segment],
) -> Result<(), CompileError> {
    fn conditions_cost(conditions: &[Condition], segment_cost: &[u64]) -> u64 {
        conditions.iter().fold(0u64, |sum, c| {
            let one = match c {
                Condition::Segment { segment, .. } => segment_cost
                    .get(*segment)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1),
                Condition::Attr(_) => 1,
            };
            sum.saturating_add(one)
        })
    }
    let segment_edges = segment_graph(segments);
    // A segment's own cost counts its attribute tests; its segment
    // conditions are the edges (their cost is added by `dag_costs`).
    let segment_own: Vec<u64> = segments
        .iter()
        .map(|s| s.rules.iter().map(|r| r.len() as u64).sum())
        .collect();
    let segment_cost = dag_costs(&segment_edges, &segment_own);
    let flag_edges = prerequisite_graph(flags);
    // A disabled flag serves `off` without looking at anything; as a
    // prerequisite it costs one step.
    let flag_own: Vec<u64> = flags
        .iter()
        .map(|f| {
            if !f.enabled {
                return 1;
            }
            f.rules.iter().fold(1u64, |sum, r| {
                sum.saturating_add(conditions_cost(&r.conditions, &segment_cost))
            })
        })
        .collect();
    let flag_edges: Vec<Vec<usize>> = flags
        .iter()
        .zip(flag_edges)
        .map(|(f, e)| if f.enabled { e } else { Vec::new() })
        .collect();
    let flag_cost = dag_costs(&flag_edges, &flag_own);
    if let Some((flag, &visits)) = flags
        .iter()
        .zip(&flag_cost)
        .find(|(_, cost)| **cost > MAX_FLAG_COST)
    {
        return Err(CompileError::new(
            Place::flag(&flag.key),
            ErrorKind::TooCostly { visits },
        ));
    }
    let visits = flag_cost.iter().fold(0u64, |t, c| t.saturating_add(*c));
    if visits > MAX_RULESET_COST {
        return Err(CompileError::new(
            Place::root(),
            ErrorKind::RulesetTooCostly { visits },
        ));
    }
    Ok(())
}

/// For an acyclic graph: `cost[n] = own[n] + sum of cost[s]` over the edges
/// `n -> s` (one term per edge, so a node reached twice counts twice),
/// saturating. Iterative post-order, so a long chain cannot overflow the
/// stack.
pub(super) fn dag_costs(edges: &[Vec<usize>], own: &[u64]) -> Vec<u64> {
    let mut cost: Vec<Option<u64>> = vec![None; edges.len()];
    // A node is expanded once; meeting it unfinished again would mean a
    // cycle (rejected before this runs), and then its pending edges count 0
    // rather than loop.
    let mut expanded = vec![false; edges.len()];
    for start in 0..edges.len() {
        if cost.get(start).copied().flatten().is_some() {
            continue;
        }
        let mut stack = vec![start];
        while let Some(&node) = stack.last() {
            if cost.get(node).copied().flatten().is_some() {
                // A copy pushed by another parent, already summed.
                stack.pop();
                continue;
            }
            let succ = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            let first = expanded.get(node).is_some_and(|e| !e);
            let pending = succ
                .iter()
                .any(|&s| cost.get(s).copied().flatten().is_none());
            if !pending || !first {
                let total = succ
                    .iter()
                    .fold(own.get(node).copied().unwrap_or(0), |t, &s| {
                        t.saturating_add(cost.get(s).copied().flatten().unwrap_or(0))
                    });
                if let Some(c) = cost.get_mut(node) {
                    *c = Some(total);
                }
                stack.pop();
            } else {
                if let Some(e) = expanded.get_mut(node) {
                    *e = true;
                }
                stack.extend(
                    succ.iter()
                        .copied()
                        .filter(|&s| cost.get(s).copied().flatten().is_none()),
                );
            }
        }
    }
    cost.into_iter().map(Option::unwrap_or_default).collect()
}

/// Depth-first search for a cycle in a graph given as adjacency lists; returns
/// the nodes of the first cycle found, closed (`a b a`).
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if mark.get(start) != Some(&Mark::New) {
            continue;
        }
        // Iterative DFS: (node, next edge to look at); `path` mirrors the stack.
        let mut stack = vec![(start, 0usize)];
        if let Some(m) = mark.get_mut(start) {
            *m = Mark::Open;
        }
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let succ = edges.get(node).and_then(|e| e.get(*next)).copied();
            *next += 1;
            match succ {
                Some(s) => match mark.get(s).copied() {
                    Some(Mark::New) => {
                        if let Some(m) = mark.get_mut(s) {
                            *m = Mark::Open;
                        }
                        stack.push((s, 0));
                    }
                    Some(Mark::Open) => {
                        let from = stack.iter().position(|&(n, _)| n == s).unwrap_or(0);
                        let mut cycle: Vec<usize> =
                            stack.iter().skip(from).map(|&(n, _)| n).collect();
                        cycle.push(s);
                        return Some(cycle);
                    }
                    _ => {}
                },
                None => {
                    if let Some(m) = mark.get_mut(node) {
                        *m = Mark::Done;
                    }
                    stack.pop();
                }
            }
        }
    }
    None
}

/// Appends the segments that `conditions` use (one entry per use).
fn segment_refs(conditions: &[Condition], out: &mut Vec<usize>) {
    for c in conditions {
        if let Condition::Segment { segment, .. } = c {
            out.push(*segment);
        }
    }
}

/// Segment `i` -> the segments its rules refer to (one edge per reference).
fn segment_graph(segments: &[model::Segment]) -> Vec<Vec<usize>> {
    segments
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            for rule in &s.rules {
                segment_refs(rule, &mut out);
            }
            out
        })
        .collect()
}

/// Flag `i` -> its prerequisites (one edge per prerequisite).
fn prerequisite_graph(flags: &[model::Flag]) -> Vec<Vec<usize>> {
    flags
        .iter()
        .map(|f| f.prerequisites.iter().map(|p| p.flag).collect())
        .collect()
}

/// Rejects a segment that uses itself, directly or through other segments.
pub(super) fn check_segment_cycles(segments: &[model::Segment]) -> Result<(), CompileError> {
    let edges = segment_graph(segments);
    match find_cycle(&edges) {
        None => Ok(()),
        Some(cycle) => {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|&i| segments.get(i).map(|s| s.name.as_str()))
                .collect();
            Err(CompileError::new(
                Place::segment(names.first().copied().unwrap_or_default()),
                ErrorKind::SegmentCycle(names.join(" -> ")),
            ))
        }
    }
}

/// Rejects a flag that requires itself, directly or through other flags.
pub(super) fn check_prerequisite_cycles(flags: &[model::Flag]) -> Result<(), CompileError> {
    let edges = prerequisite_graph(flags);
    match find_cycle(&edges) {
        None => Ok(()),
        Some(cycle) => {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|&i| flags.get(i).map(|f| &*f.key))
                .collect();
            Err(CompileError::new(
                Place::flag(names.first().copied().unwrap_or_default()).field("requires"),
                ErrorKind::PrerequisiteCycle(names.join(" -> ")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_count_every_path_through_a_dag() {
        // a -> b, a -> c, b -> d, c -> d: d is reached twice.
        let edges = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert_eq!(dag_costs(&edges, &[1, 1, 1, 5]), vec![13, 6, 6, 5]);
        // A chain longer than any stack would take recursively.
        let n = 200_000;
        let chain: Vec<Vec<usize>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![] })
            .collect();
        let costs = dag_costs(&chain, &vec![1; n]);
        assert_eq!(costs[0], n as u64);
        // A cycle (never passed in) still ends.
        assert_eq!(dag_costs(&[vec![1], vec![0]], &[1, 1]).len(), 2);
    }
}
