//! Which byte ranges of a message have arrived: for reassembly from pieces in any order.
//!
//! Shared by the QUIC CRYPTO stream and DTLS handshake fragment reassembly; the same rules as
//! `ja3svc/byte_ranges.py`, which the differential test holds this to.

/// Add `[start, end)` to `ranges` (sorted, disjoint, non-adjacent half-open ranges), merging it
/// with every range it overlaps or touches. An empty range is kept like any other (the Python
/// reference does the same, and a DTLS zero-length fragment relies on it).
///
/// Returns the new number of ranges; `ranges` is only changed when that number is at most
/// `limit`, so a caller can refuse a piece that would fragment a message too much without
/// building a copy first.
pub fn merge_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64, limit: usize) -> usize {
    // The ranges that overlap or touch [start, end) form one run [first, last).
    let first = ranges.partition_point(|&(_, e)| e < start);
    let last = ranges.partition_point(|&(s, _)| s <= end);
    let merged_len = ranges.len() + 1 - (last - first);
    if merged_len > limit {
        return merged_len;
    }
    let (mut s, mut e) = (start, end);
    if first < last {
        s = s.min(ranges[first].0);
        e = e.max(ranges[last - 1].1);
    }
    ranges.splice(first..last, [(s, e)]);
    merged_len
}

#[cfg(test)]
mod tests {
    use super::merge_range;

    fn add(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut v = ranges.to_vec();
        merge_range(&mut v, start, end, usize::MAX);
        v
    }

    #[test]
    fn merges_overlapping_and_touching_ranges() {
        assert_eq!(add(&[], 5, 10), vec![(5, 10)]);
        assert_eq!(add(&[(0, 5)], 5, 10), vec![(0, 10)]);
        assert_eq!(
            add(&[(0, 5), (20, 30)], 10, 15),
            vec![(0, 5), (10, 15), (20, 30)]
        );
        assert_eq!(add(&[(0, 5), (10, 15), (20, 30)], 3, 22), vec![(0, 30)]);
        assert_eq!(add(&[(10, 15)], 0, 3), vec![(0, 3), (10, 15)]);
        assert_eq!(add(&[(10, 15)], 20, 25), vec![(10, 15), (20, 25)]);
        assert_eq!(add(&[(10, 15)], 12, 13), vec![(10, 15)]);
        // Empty ranges stay, as in the Python reference, and merge when touched.
        assert_eq!(add(&[(0, 3)], 10, 10), vec![(0, 3), (10, 10)]);
        assert_eq!(add(&[(0, 3), (10, 10)], 3, 10), vec![(0, 10)]);
    }

    #[test]
    fn refuses_past_the_limit_without_changing_anything() {
        let mut v = vec![(0, 1), (3, 4)];
        assert_eq!(merge_range(&mut v, 6, 7, 2), 3);
        assert_eq!(v, vec![(0, 1), (3, 4)]);
        assert_eq!(merge_range(&mut v, 1, 3, 2), 1);
        assert_eq!(v, vec![(0, 4)]);
    }
}
