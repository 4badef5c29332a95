use super::*;

fn p(t: i64, v: f64) -> Point {
    Point {
        timestamp_ms: t,
        value: v,
    }
}

fn raw(head: &Head) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    head.raw_points(i64::MIN, i64::MAX, &mut out).unwrap();
    out.iter().map(|p| (p.timestamp_ms, p.value)).collect()
}

#[test]
fn a_run_of_equal_timestamps_keeps_its_last_and_older_samples_are_stale() {
    let mut h = Head::new(1);
    let mut sealed = Vec::new();
    let a = h.add(&[p(1000, 1.0), p(2000, 2.0), p(2000, 3.0)], 5, &mut sealed);
    assert_eq!((a.accepted, a.stale), (2, 0));
    let b = h.add(&[p(2000, 9.0), p(1500, 9.0), p(3000, 4.0)], 6, &mut sealed);
    assert_eq!((b.accepted, b.stale), (1, 2));
    assert_eq!(raw(&h), [(1000, 1.0), (2000, 3.0), (3000, 4.0)]);
}

#[test]
fn full_chunks_are_sealed_and_the_rest_stays_open() {
    let mut h = Head::new(7);
    let mut sealed = Vec::new();
    let n = Tier::Raw.chunk_rows() as i64 * 2 + 10;
    let points: Vec<Point> = (0..n).map(|k| p(k * 1000, k as f64)).collect();
    h.add(&points, 0, &mut sealed);
    let raw_chunks: Vec<&Sealed> = sealed.iter().filter(|c| c.tier == Tier::Raw).collect();
    assert_eq!(raw_chunks.len(), 2);
    assert_eq!(raw_chunks[0].count, Tier::Raw.chunk_rows());
    assert_eq!(raw_chunks[1].start_ms, raw_chunks[0].end_ms + 1000);
    assert_eq!(raw(&h).len(), 10);
    // Minutes: an hour's worth makes a sealed roll-up chunk.
    let minute_chunks = sealed.iter().filter(|c| c.tier == Tier::Minute).count();
    assert_eq!(minute_chunks, (n as usize / 60) / Tier::Minute.chunk_rows());
}

#[test]
fn a_head_reads_back_from_its_bytes_and_goes_on_as_if_never_saved() {
    let mut a = Head::new(3);
    let mut b_sealed = Vec::new();
    let mut a_sealed = Vec::new();
    let first: Vec<Point> = (0..5000)
        .map(|k| p(k * 1000, (k % 7) as f64 * 0.5))
        .collect();
    let second: Vec<Point> = (5000..9000).map(|k| p(k * 1000, (k % 11) as f64)).collect();
    a.add(&first, 0, &mut a_sealed);
    let mut b = Head::from_bytes(3, &a.to_bytes()).unwrap();
    b_sealed.extend(a_sealed.iter().cloned());
    a.add(&second, 0, &mut a_sealed);
    b.add(&second, 0, &mut b_sealed);
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!(a_sealed.len(), b_sealed.len());
    for (x, y) in a_sealed.iter().zip(&b_sealed) {
        assert_eq!(
            (x.tier, x.start_ms, x.end_ms, &x.data),
            (y.tier, y.start_ms, y.end_ms, &y.data)
        );
    }
}

#[test]
fn an_idle_head_seals_everything_and_its_buckets_reach_the_coarser_tiers() {
    let mut h = Head::new(2);
    let mut sealed = Vec::new();
    h.add(&[p(0, 1.0), p(30_000, 3.0), p(90_000, 5.0)], 0, &mut sealed);
    h.seal_all(&mut sealed);
    assert!(h.is_empty());
    let of = |tier: Tier| -> Vec<Bucket> {
        let mut out = Vec::new();
        for c in sealed.iter().filter(|c| c.tier == tier) {
            decode_buckets(&c.data, i64::MIN, i64::MAX, &mut out).unwrap();
        }
        out
    };
    let minutes = of(Tier::Minute);
    assert_eq!(minutes.len(), 2);
    assert_eq!((minutes[0].count, minutes[0].sum), (2.0, 4.0));
    let hours = of(Tier::Hour);
    assert_eq!(hours.len(), 1);
    assert_eq!(
        (hours[0].count, hours[0].sum, hours[0].max, hours[0].last),
        (3.0, 9.0, 5.0, 5.0)
    );
    assert_eq!(of(Tier::Day).len(), 1);
    // A late sample for the closed minute stays raw but cannot reopen the roll-up.
    let late = h.add(&[p(95_000, 1.0)], 0, &mut sealed);
    assert_eq!((late.accepted, late.late_for_rollup), (1, 1));
}

#[test]
fn garbage_heads_are_errors() {
    assert!(Head::from_bytes(1, &[]).is_err());
    assert!(Head::from_bytes(1, &[HEAD_VERSION, 1, 2, 3]).is_err());
    assert!(Head::from_bytes(1, &[99]).is_err());
}

#[test]
fn with_a_tolerance_times_near_the_step_are_stored_on_it_and_never_drift() {
    let mut h = Head::new(4);
    h.tolerance_ms = 2;
    let mut sealed = Vec::new();
    // A 1 s collector whose first interval came out 1,001 ms (taken as 1 s: the grid is
    // anchored where the series started) and whose stamps then jitter by a millisecond or
    // two, then one late by 40 ms
    // (the interval stays 1 s), then a run that keeps creeping 2 ms a second (aligned
    // times would drift away from it if they were not checked against what was written).
    let written = [
        0, 1001, 2001, 2999, 4002, 5000, 6040, 7040, 8042, 9044, 10046, 11048, 12050,
    ];
    let points: Vec<Point> = written.iter().map(|&t| p(t, t as f64)).collect();
    h.add(&points, 0, &mut sealed);
    let stored: Vec<i64> = raw(&h).iter().map(|&(t, _)| t).collect();
    assert_eq!(
        stored,
        [
            0, 1001, 2001, 3001, 4001, 5001, 6040, 7040, 8040, 9044, 10044, 11048, 12048
        ]
    );
    for (s, w) in stored.iter().zip(written) {
        assert!((s - w).abs() <= 2, "{s} stored for {w}");
    }
    // Values are never changed.
    assert!(
        raw(&h)
            .iter()
            .zip(written)
            .all(|(&(_, v), w)| v == w as f64)
    );
}

#[test]
fn without_a_tolerance_every_time_is_kept_exactly() {
    let mut h = Head::new(5);
    let mut sealed = Vec::new();
    let written = [0, 1000, 2001, 2999];
    h.add(&written.map(|t| p(t, 1.0)), 0, &mut sealed);
    let stored: Vec<i64> = raw(&h).iter().map(|&(t, _)| t).collect();
    assert_eq!(stored, written);
}
