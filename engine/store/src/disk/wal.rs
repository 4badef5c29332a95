//! The write-ahead rows: what one flush wrote, read back at a restart to bring the heads
//! up to the last flush. Transient (deleted at each checkpoint), so the format favours
//! encoding speed over size: per series its id, its points' count, then each point as the
//! zigzag varint step from the previous timestamp and the value's 8 bytes.

use telltale_model::Point;

/// Malformed write-ahead data (a bug or a damaged file): the row is skipped and counted.
#[derive(Debug, thiserror::Error)]
#[error("write-ahead row is malformed at byte {at}")]
pub struct WalError {
    at: usize,
}

/// Appends the points of one series to a row being built.
pub(crate) fn put_series(buf: &mut Vec<u8>, series: i64, points: &[Point]) {
    put_varint(buf, zigzag(series));
    put_varint(buf, points.len() as u64);
    let mut prev = 0i64;
    for p in points {
        put_varint(buf, zigzag(p.timestamp_ms.wrapping_sub(prev)));
        buf.extend_from_slice(&p.value.to_bits().to_le_bytes());
        prev = p.timestamp_ms;
    }
}

/// Calls `f` with each series of a row and its points, in the order they were put.
pub(crate) fn for_each_series(
    data: &[u8],
    f: &mut dyn FnMut(i64, &[Point]),
) -> Result<(), WalError> {
    let mut r = Reader { data, at: 0 };
    let mut points = Vec::new();
    while r.at < data.len() {
        let series = unzigzag(r.varint()?);
        let n = usize::try_from(r.varint()?).map_err(|_| r.error())?;
        // Each point takes at least 9 bytes: a count beyond what is left is garbage.
        if n > (data.len() - r.at) / 9 {
            return Err(r.error());
        }
        points.clear();
        let mut prev = 0i64;
        for _ in 0..n {
            let t = prev.wrapping_add(unzigzag(r.varint()?));
            let bytes: [u8; 8] = r.take(8)?.try_into().map_err(|_| r.error())?;
            points.push(Point {
                timestamp_ms: t,
                value: f64::from_bits(u64::from_le_bytes(bytes)),
            });
            prev = t;
        }
        f(series, &points);
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self) -> WalError {
        WalError { at: self.at }
    }

    fn varint(&mut self) -> Result<u64, WalError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.at).ok_or_else(|| self.error())?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.error())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WalError> {
        let end = self.at.checked_add(n).ok_or_else(|| self.error())?;
        let s = self.data.get(self.at..end).ok_or_else(|| self.error())?;
        self.at = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, v: f64) -> Point {
        Point {
            timestamp_ms: t,
            value: v,
        }
    }

    #[test]
    fn rows_read_back_as_written_special_values_included() {
        let a = vec![
            p(-5, f64::NAN),
            p(1_700_000_000_000, -0.0),
            p(i64::MAX, f64::INFINITY),
        ];
        let b = vec![p(3, 1.5)];
        let mut buf = Vec::new();
        put_series(&mut buf, 7, &a);
        put_series(&mut buf, i64::MAX, &b);
        let mut got = Vec::new();
        for_each_series(&buf, &mut |s, pts| got.push((s, pts.to_vec()))).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[1].0), (7, i64::MAX));
        let bits = |v: &[Point]| {
            v.iter()
                .map(|p| (p.timestamp_ms, p.value.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&got[0].1), bits(&a));
        assert_eq!(bits(&got[1].1), bits(&b));
    }

    #[test]
    fn truncated_or_garbage_rows_are_errors_not_panics() {
        let mut buf = Vec::new();
        put_series(&mut buf, 1, &[p(1, 1.0), p(2, 2.0)]);
        for cut in 0..buf.len() {
            let _ = for_each_series(&buf[..cut], &mut |_, _| {});
        }
        assert!(for_each_series(&buf[..buf.len() - 1], &mut |_, _| {}).is_err());
        assert!(for_each_series(&[0xff; 20], &mut |_, _| {}).is_err());
        assert!(for_each_series(&[0, 0xff, 0xff, 0xff, 0x0f], &mut |_, _| {}).is_err());
    }
}
