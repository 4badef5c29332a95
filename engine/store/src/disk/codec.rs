//! The chunk codec: rows of a timestamp and one or more `f64` columns, compressed into a
//! self-contained byte string (a row of `chunks.data`, or part of a `heads` row).
//!
//! # What is guaranteed
//!
//! * Values come back **bit for bit**: NaN payloads, `-0.0`, infinities and subnormals
//!   included. Nothing is ever rounded; every shortcut below is taken only after checking
//!   that the value it rebuilds has the same bits.
//! * Any `i64` timestamps round-trip, whatever the gaps (arithmetic wraps on both sides).
//! * Decoding bytes that are not a chunk returns a [`CodecError`]: it never panics, and
//!   every row consumes at least one bit, so a forged row count cannot make it loop.
//! * An encoder resumed from its bytes ([`ChunkEncoder::resume`]) goes on exactly as if
//!   it had never stopped: same bytes.
//!
//! # Format (version 1)
//!
//! Header: the version byte, the column count, the [`Coding`] the chunk was written with,
//! then (varints) the row count and, for a non-empty chunk, the first timestamp (zigzag),
//! the span to the last one, and one [`ColumnMode`] byte per column. Then one bit stream,
//! row after row, padded with zero bits to a whole byte.
//!
//! * **Timestamps**: the first is in the header; then delta-of-delta, zigzagged, in
//!   buckets: `0` for no change, so a regular series costs one bit a row. The buckets
//!   were sized on the `system` collector's real timestamps: its interval is 1,000 ms
//!   plus the time a collection takes, which jitters by a few ms on an idle machine and
//!   by tens of ms on a busy one; ±2 ms costs 4 bits and ±42 ms 10, where Gorilla's
//!   buckets (made for seconds) spend 9 on anything but 0.
//! * **Values**, per column, in one of these modes, recorded in the header:
//!   * `Binary` and `Integer`, the integral modes: while every value of the column is
//!     `n × 2^s`, `n / 10^k` or `n × 10^-k` for integers `n` (the form `counter × 0.001`
//!     takes) and a fixed `s ≤ 24` or `k ≤ 9`, checked by rebuilding each value, `n` is
//!     coded as a delta-of-delta. Counters, byte gauges (multiples of a page) and values
//!     the kernel prints with two decimals (load, pressure averages) then cost a few bits
//!     instead of the 12 to 60 an XOR costs whenever they change.
//!   * `Chimp`: XOR with the previous value, with Chimp's classes of leading zeros and
//!     its case for many trailing zeros (Liakos et al., VLDB 2022), plus an exact-match
//!     lookup among the column's last 64 distinct values: a derived ratio such as a CPU
//!     percentage (`100 × busy / total` over a handful of jiffies) comes back to the
//!     same few values again and again, and a repeat then costs 9 bits instead of ~60.
//!   * `Gorilla`: XOR as in Facebook's Gorilla paper (Pelkonen et al., VLDB 2015): the
//!     baseline, written only when asked for ([`ChunkEncoder::with_coding`]).
//!
//!   A column starts in the first integral mode its first value fits (see
//!   `INTEGRAL_MODES`); a value that does not fit moves it on to the next mode that fits
//!   all its values, which re-encodes what the chunk holds (rare: a few times per chunk at
//!   most, usually within its first rows), eventually to the XOR mode of its [`Coding`].
//!
//! # Why this coding
//!
//! Measured with `cargo bench -p telltale-store --bench codec` on an hour of the real
//! `system` collector at 1 s (146 series, 525,534 samples, 1024-row chunks):
//!
//! | coding | bytes/sample |
//! |---|---:|
//! | Gorilla (timestamps and values), the baseline | 2.62 |
//! | Chimp-style XOR | 2.53 |
//! | integral modes, then Gorilla | 2.34 |
//! | integral modes, then Chimp-style XOR | 2.25 |
//! | the same with a ring of 16 / 32 / 64 recent values | 1.99 / 1.94 / **1.89** |
//!
//! Of the 1.89, the timestamps take 0.85 (the collection interval jittered by tens of ms
//! on the busy machine; 0.57 over its quieter first ten minutes). Integral values cost
//! little beyond their timestamps (1.25 bytes/sample in all); the 23 % of samples that are
//! derived floats (percentages and rates the collector computes) cost 4.0 and make half
//! the bytes: no exact coding makes them small, and none is allowed to round them.
//! Decoding costs 17 ns a point against Gorilla's 12 (1.5 ms for a day at 1 s);
//! encoding 33 against 22. docs/benchmarks.md, "Store: chunk codec", has every figure.

use telltale_model::Point;

/// Columns of a roll-up bucket: count, sum, min, max, last, increase.
pub const ROLLUP_COLUMNS: usize = 6;

/// The most columns a chunk can have. The decoder keeps one row on the stack.
pub const MAX_COLUMNS: usize = 16;

/// The format version this build writes; the only one it reads.
pub const FORMAT_VERSION: u8 = 1;

/// The largest decimal scale `k` of the `Integer` mode (`n / 10^k`): nanoseconds.
pub const MAX_SCALE: u8 = 9;

/// The largest ring of recent values the `Chimp` mode may keep (2^6 = 64 values).
pub const MAX_RING_BITS: u8 = 6;

/// Why a chunk could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The chunk is shorter than what it says it holds.
    #[error("chunk is truncated ({0})")]
    Truncated(&'static str),
    /// The chunk holds something this codec never writes.
    #[error("chunk is malformed ({0})")]
    Malformed(&'static str),
    /// Written in a format version this build does not know.
    #[error(
        "chunk format version {found} is unknown (this build reads version {FORMAT_VERSION}); \
         was it written by a newer Telltale?"
    )]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// [`decode_points`] was given a chunk of several columns (a roll-up).
    #[error("chunk has {found} columns where raw samples (1 column) were expected")]
    NotRaw {
        /// The chunk's column count.
        found: usize,
    },
}

/// How values that are not integral are coded (see [`Coding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatCoding {
    /// Gorilla's XOR scheme as published: the baseline the others are measured against.
    Gorilla,
    /// XOR with Chimp's leading-zero classes, and an exact-match lookup among the last
    /// `2^ring_bits` distinct values (`0` for none; at most [`MAX_RING_BITS`]).
    Chimp {
        /// Log2 of the number of recent values looked up.
        ring_bits: u8,
    },
}

/// How an encoder codes values: kept in every chunk, so that a resumed chunk goes on the
/// same way, and so that benchmarks can write every candidate in the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coding {
    /// Whether columns start in the `Integer` mode when their first value allows it.
    pub integers: bool,
    /// What columns that are not (or no longer) integral use.
    pub floats: FloatCoding,
}

impl Coding {
    /// What the store writes for raw samples: integers while they fit, then Chimp-style
    /// XOR with a ring of 64 recent distinct values.
    ///
    /// Chosen by bytes per sample on an hour of the real `system` collector at 1 s, then
    /// by memory and speed (docs/benchmarks.md, "Store: chunk codec", has the figures):
    /// 1.89 bytes/sample against Gorilla's 2.62 (−28 %). The integral modes take
    /// two-decimal values from 3.77 to 1.73 bytes/sample and byte counters down by about
    /// a third; the ring takes a third off CPU percentages, which keep coming back to the
    /// same few ratios. Each doubling of the ring saved about 2.4 % of all bytes up to 64
    /// values, for 9 % more memory per open encoder at 300 rows than a ring of 16.
    pub const DEFAULT: Coding = Coding {
        integers: true,
        floats: FloatCoding::Chimp { ring_bits: 6 },
    };

    /// What the store writes for roll-ups (several columns): the same without the ring.
    /// Their chunks are short (24 to 60 rows) and their sums and increases rarely repeat:
    /// on the benchmark's minute roll-ups a ring of 64 saved 5 % of the bytes (11.9
    /// against 12.5 per bucket) for a third more memory per open encoder, and every
    /// series keeps three open.
    pub const ROLLUP: Coding = Coding {
        integers: true,
        floats: FloatCoding::Chimp { ring_bits: 0 },
    };

    /// Plain Gorilla XOR for every value: the baseline.
    pub const GORILLA: Coding = Coding {
        integers: false,
        floats: FloatCoding::Gorilla,
    };

    fn to_byte(self) -> u8 {
        (self.integers as u8) << 7 | ColumnMode::float(self.floats).to_byte()
    }

    fn from_byte(b: u8) -> Result<Coding, CodecError> {
        let floats = match ColumnMode::from_byte(b & 0x7f)? {
            ColumnMode::Gorilla => FloatCoding::Gorilla,
            ColumnMode::Chimp { ring_bits } => FloatCoding::Chimp { ring_bits },
            _ => return Err(CodecError::Malformed("unknown coding")),
        };
        Ok(Coding {
            integers: b & 0x80 != 0,
            floats,
        })
    }
}

impl Default for Coding {
    fn default() -> Coding {
        Coding::DEFAULT
    }
}

/// How one column of a chunk is coded (the header keeps one per column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnMode {
    /// Gorilla's XOR.
    Gorilla,
    /// Chimp-style XOR with a ring of `2^ring_bits` recent values (`0`: no ring).
    Chimp {
        /// Log2 of the ring's size.
        ring_bits: u8,
    },
    /// Every value is `n × 2^shift` for an integer `n` (`shift` >= 1), coded as a
    /// delta-of-delta of `n`: byte counts kept in pages or sectors, whose low bits are
    /// always zero and would otherwise be paid for in every delta.
    Binary {
        /// The power of two all values are multiples of.
        shift: u8,
    },
    /// Every value is `n / 10^scale` (or `n × 10^-scale` when `multiply`) for an integer
    /// `n`, coded as a delta-of-delta.
    Integer {
        /// The decimal scale `k`.
        scale: u8,
        /// Whether values are rebuilt as `n × 10^-k` rather than `n / 10^k` (the two
        /// round differently; a counter scaled by `0.001` needs the former).
        multiply: bool,
    },
}

/// The largest `shift` of the `Binary` mode (multiples of 16 MiB).
pub const MAX_SHIFT: u8 = 24;

/// How many integral modes there are: `Binary` from the largest shift down, `Integer`
/// with no scale, then each decimal scale both ways.
const INTEGRAL_MODES_LEN: usize = MAX_SHIFT as usize + 2 * MAX_SCALE as usize + 1;

/// The integral modes in the order a column tries them: the first that fits wins, and a
/// column only ever moves forward in this list (which is what makes its mode a function
/// of its values, so that a resumed chunk goes on exactly as an uninterrupted one). Every
/// mode fits whatever an earlier one fits, but for the decimal pairs, which is why a
/// column that outgrows its mode looks further on rather than starting again.
const INTEGRAL_MODES: [ColumnMode; INTEGRAL_MODES_LEN] = {
    let mut modes = [ColumnMode::Integer {
        scale: 0,
        multiply: false,
    }; INTEGRAL_MODES_LEN];
    let mut i = 0;
    while i < MAX_SHIFT as usize {
        modes[i] = ColumnMode::Binary {
            shift: MAX_SHIFT - i as u8,
        };
        i += 1;
    }
    let mut k = 1;
    while k <= MAX_SCALE {
        let at = MAX_SHIFT as usize + 2 * k as usize;
        modes[at - 1] = ColumnMode::Integer {
            scale: k,
            multiply: false,
        };
        modes[at] = ColumnMode::Integer {
            scale: k,
            multiply: true,
        };
        k += 1;
    }
    modes
};

/// `10^k`, exact in `f64` for every `k` used.
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The `f64` nearest `10^-k` (literals are correctly rounded).
const NEG_POW10: [f64; MAX_SCALE as usize + 1] =
    [1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9];

/// `2^s`: exact, so `Binary` values are rebuilt exactly.
const POW2: [f64; MAX_SHIFT as usize + 1] = {
    let mut t = [1.0; MAX_SHIFT as usize + 1];
    let mut s = 1;
    while s <= MAX_SHIFT as usize {
        t[s] = t[s - 1] * 2.0;
        s += 1;
    }
    t
};

/// `2^-s`, exact too: dividing by a power of two is multiplying by its inverse, without
/// the cost of a division.
const NEG_POW2: [f64; MAX_SHIFT as usize + 1] = {
    let mut t = [1.0; MAX_SHIFT as usize + 1];
    let mut s = 1;
    while s <= MAX_SHIFT as usize {
        t[s] = t[s - 1] * 0.5;
        s += 1;
    }
    t
};

impl ColumnMode {
    fn float(f: FloatCoding) -> ColumnMode {
        match f {
            FloatCoding::Gorilla => ColumnMode::Gorilla,
            FloatCoding::Chimp { ring_bits } => ColumnMode::Chimp { ring_bits },
        }
    }

    /// Whether values are coded as integers (`Binary` or `Integer`).
    pub fn is_integral(self) -> bool {
        matches!(self, ColumnMode::Binary { .. } | ColumnMode::Integer { .. })
    }

    fn to_byte(self) -> u8 {
        match self {
            ColumnMode::Gorilla => 0x00,
            ColumnMode::Chimp { ring_bits } => 0x10 | ring_bits,
            ColumnMode::Integer {
                scale,
                multiply: false,
            } => 0x40 | scale,
            ColumnMode::Integer {
                scale,
                multiply: true,
            } => 0x60 | scale,
            ColumnMode::Binary { shift } => 0x80 | shift,
        }
    }

    fn from_byte(b: u8) -> Result<ColumnMode, CodecError> {
        let low = b & 0x0f;
        match b {
            0x00 => Ok(ColumnMode::Gorilla),
            0x10..=0x1f if low <= MAX_RING_BITS => Ok(ColumnMode::Chimp { ring_bits: low }),
            0x40..=0x4f if low <= MAX_SCALE => Ok(ColumnMode::Integer {
                scale: low,
                multiply: false,
            }),
            0x60..=0x6f if (1..=MAX_SCALE).contains(&low) => Ok(ColumnMode::Integer {
                scale: low,
                multiply: true,
            }),
            0x81..=0xff if b & 0x7f <= MAX_SHIFT => Ok(ColumnMode::Binary { shift: b & 0x7f }),
            _ => Err(CodecError::Malformed("unknown column mode")),
        }
    }

    /// The integer `v` is in this integral mode, if it is one exactly.
    #[inline]
    fn integer_of(self, v: f64) -> Option<i64> {
        let scaled = match self {
            ColumnMode::Integer { scale, .. } => v * POW10[usize::from(scale)],
            // Exact: a power of two only moves the exponent (a subnormal result would
            // lose bits, which the check below catches).
            ColumnMode::Binary { shift } => v * NEG_POW2[usize::from(shift)],
            _ => return None,
        };
        // Also refuses NaN and infinities; 2^62 leaves room for the deltas.
        if scaled.is_nan() || scaled.abs() >= 4.6e18 {
            return None;
        }
        // Nearest integer by the 1.5 × 2^52 trick (f64::round is a libm call, a quarter
        // of the encoder's time); larger values are integers already. A wrong guess
        // would only cost compression: the check below decides.
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        let rounded = if scaled.abs() < MAGIC / 3.0 {
            (scaled + MAGIC) - MAGIC
        } else {
            scaled
        };
        let n = rounded as i64;
        (self.value_of(n).to_bits() == v.to_bits()).then_some(n)
    }

    /// The value integer `n` stands for in this integral mode.
    #[inline]
    fn value_of(self, n: i64) -> f64 {
        match self {
            ColumnMode::Binary { shift } => n as f64 * POW2[usize::from(shift)],
            ColumnMode::Integer {
                scale: 0,
                multiply: false,
            } => n as f64,
            ColumnMode::Integer {
                scale,
                multiply: true,
            } => n as f64 * NEG_POW10[usize::from(scale)],
            ColumnMode::Integer { scale, .. } => n as f64 / POW10[usize::from(scale)],
            _ => f64::NAN,
        }
    }
}

/// What [`header`] tells of a chunk without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The format version.
    pub version: u8,
    /// Values per row.
    pub columns: usize,
    /// Rows.
    pub count: usize,
    /// Timestamp of the first row (0 when the chunk is empty).
    pub first_t: i64,
    /// Timestamp of the last row (0 when the chunk is empty).
    pub last_t: i64,
    /// How the chunk was written.
    pub coding: Coding,
}

/// Reads the header of a chunk (no row is decoded).
pub fn header(data: &[u8]) -> Result<ChunkHeader, CodecError> {
    Ok(Layout::parse(data)?.header)
}

/// The mode of each column of a chunk (empty for an empty chunk): what its values turned
/// out to be. For statistics and benchmarks.
pub fn column_modes(data: &[u8]) -> Result<Vec<ColumnMode>, CodecError> {
    let layout = Layout::parse(data)?;
    Ok(layout.modes[..layout.mode_count].to_vec())
}

/// Decodes every row of a chunk, oldest first, calling `row(t, values)`; stops early if
/// `row` returns false.
///
/// A chunk decoded to its end is checked whole (its last timestamp against the header,
/// no bytes after its rows); rows passed to `row` before an error was found stand.
pub fn decode(data: &[u8], row: &mut dyn FnMut(i64, &[f64]) -> bool) -> Result<(), CodecError> {
    Decoder::new(data)?.run(|t, v| row(t, v)).map(|_| ())
}

/// Convenience for raw (1-column) chunks: appends the points with `from_ms <= t <= to_ms`
/// to `out`. On error, `out` is left as it was.
pub fn decode_points(
    data: &[u8],
    from_ms: i64,
    to_ms: i64,
    out: &mut Vec<Point>,
) -> Result<(), CodecError> {
    let mut dec = Decoder::new(data)?;
    let h = dec.layout.header;
    if h.columns != 1 {
        return Err(CodecError::NotRaw { found: h.columns });
    }
    if h.count == 0 || h.last_t < from_ms || h.first_t > to_ms || from_ms > to_ms {
        return Ok(());
    }
    let before = out.len();
    let result = if from_ms <= h.first_t && h.last_t <= to_ms {
        out.reserve(h.count);
        dec.run(|t, v| {
            out.push(Point {
                timestamp_ms: t,
                value: v[0],
            });
            true
        })
    } else {
        dec.run(|t, v| {
            if t > to_ms {
                return false;
            }
            if t >= from_ms {
                out.push(Point {
                    timestamp_ms: t,
                    value: v[0],
                });
            }
            true
        })
    };
    if let Err(e) = result {
        out.truncate(before);
        return Err(e);
    }
    Ok(())
}

/// Builds a chunk row by row. Compact (about 100 bytes besides the compressed bits, plus
/// the ring of a float column) because the store keeps one open for every series.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    bits: BitWriter,
    count: u32,
    columns: u8,
    coding: Coding,
    first_t: i64,
    last_t: i64,
    /// The previous row's timestamp delta.
    prev_dt: i64,
    cols: Cols,
}

impl ChunkEncoder {
    /// An empty chunk of `columns` values per row (1 for raw samples, [`ROLLUP_COLUMNS`]
    /// for roll-ups), written with [`Coding::DEFAULT`] (one column) or [`Coding::ROLLUP`].
    ///
    /// Panics if `columns` is 0 or more than [`MAX_COLUMNS`] (a programming error).
    pub fn new(columns: usize) -> ChunkEncoder {
        let coding = if columns == 1 {
            Coding::DEFAULT
        } else {
            Coding::ROLLUP
        };
        ChunkEncoder::with_coding(columns, coding)
    }

    /// An empty chunk written with `coding` (for benchmarks and tests: every coding reads
    /// back, but the store writes [`Coding::DEFAULT`]).
    ///
    /// Panics if `columns` is 0 or more than [`MAX_COLUMNS`], or if a ring is larger than
    /// [`MAX_RING_BITS`] (programming errors).
    pub fn with_coding(columns: usize, coding: Coding) -> ChunkEncoder {
        assert!(
            (1..=MAX_COLUMNS).contains(&columns),
            "a chunk has 1 to {MAX_COLUMNS} columns, not {columns}"
        );
        if let FloatCoding::Chimp { ring_bits } = coding.floats {
            assert!(ring_bits <= MAX_RING_BITS, "ring of 2^{ring_bits} values");
        }
        let cols = if columns == 1 {
            Cols::One(Column::default())
        } else {
            Cols::Many(vec![Column::default(); columns].into_boxed_slice())
        };
        ChunkEncoder {
            bits: BitWriter::default(),
            count: 0,
            columns: columns as u8,
            coding,
            first_t: 0,
            last_t: 0,
            prev_dt: 0,
            cols,
        }
    }

    /// Appends a row. `t` must be greater than the previous row's (caller guarantees;
    /// checked in debug builds; a chunk that breaks it still round-trips, but its header's
    /// first and last timestamps no longer bound it).
    ///
    /// Panics if `values.len()` is not [`ChunkEncoder::columns`] (a programming error).
    pub fn push(&mut self, t: i64, values: &[f64]) {
        assert_eq!(
            values.len(),
            self.columns as usize,
            "row of {} values in a chunk of {} columns",
            values.len(),
            self.columns
        );
        debug_assert!(
            self.count == 0 || t > self.last_t,
            "timestamp {t} after {}",
            self.last_t
        );
        self.push_row(t, values, None);
    }

    fn push_row(&mut self, t: i64, values: &[f64], modes: Option<&[ColumnMode]>) {
        if self.count == 0 {
            self.first_t = t;
            self.last_t = t;
            self.prev_dt = 0;
            let coding = self.coding;
            for (i, (col, &v)) in self.cols.as_mut_slice().iter_mut().zip(values).enumerate() {
                let mode = match modes {
                    Some(m) => m[i],
                    None => first_mode(coding, v),
                };
                col.encode_first(mode, v, &mut self.bits);
            }
            self.count = 1;
            return;
        }
        // Integers first, so that a value that no longer fits is found before any bit of
        // the row is written.
        let mut ints = [0i64; MAX_COLUMNS];
        let mut misfits = false;
        for (i, (col, &v)) in self.cols.as_slice().iter().zip(values).enumerate() {
            if col.mode.is_integral() {
                match col.mode.integer_of(v) {
                    Some(n) => ints[i] = n,
                    None => misfits = true,
                }
            }
        }
        if misfits {
            self.change_modes(values);
            for (i, (col, &v)) in self.cols.as_slice().iter().zip(values).enumerate() {
                if let Some(n) = col.mode.integer_of(v) {
                    ints[i] = n;
                }
            }
        }
        let dt = t.wrapping_sub(self.last_t);
        TIMESTAMPS.write(&mut self.bits, zigzag(dt.wrapping_sub(self.prev_dt)));
        self.prev_dt = dt;
        self.last_t = t;
        for (i, (col, &v)) in self.cols.as_mut_slice().iter_mut().zip(values).enumerate() {
            col.encode(v, ints[i], &mut self.bits);
        }
        self.count += 1;
    }

    /// Moves every `Integer` column that `values` does not fit to the next mode that fits
    /// the column's values so far and the new one, re-encoding the chunk. Rare: a column
    /// moves forward only, through at most [`INTEGRAL_MODES`] and then its XOR mode.
    #[cold]
    fn change_modes(&mut self, values: &[f64]) {
        let columns = self.columns as usize;
        let mut times = Vec::with_capacity(self.count as usize);
        let mut rows = Vec::with_capacity(self.count as usize * columns);
        let bytes = self.to_bytes();
        let decoded = Decoder::new(&bytes).and_then(|mut d| {
            d.run(|t, v| {
                times.push(t);
                rows.extend_from_slice(v);
                true
            })
        });
        // Only a bug in this module could make its own bytes unreadable.
        if let Err(e) = decoded {
            panic!("a chunk encoder could not read back its own bytes: {e}");
        }
        let mut modes = [ColumnMode::Gorilla; MAX_COLUMNS];
        for (i, (col, &v)) in self.cols.as_slice().iter().zip(values).enumerate() {
            modes[i] = col.mode;
            if !col.mode.is_integral() {
                continue;
            }
            let column = || rows.iter().skip(i).step_by(columns).copied();
            let fits = |m: ColumnMode| {
                m.integer_of(v).is_some() && column().all(|x| m.integer_of(x).is_some())
            };
            // Checked over the old rows too, not only the new value: a chunk resumed from
            // disk may hold values its mode cannot rebuild (it was not written here), and
            // re-encoding must never change a value.
            if fits(col.mode) {
                continue;
            }
            let from = INTEGRAL_MODES
                .iter()
                .position(|&m| m == col.mode)
                .map_or(INTEGRAL_MODES.len(), |p| p + 1);
            modes[i] = INTEGRAL_MODES[from..]
                .iter()
                .copied()
                .find(|&m| fits(m))
                .unwrap_or(ColumnMode::float(self.coding.floats));
        }
        let mut fresh = ChunkEncoder::with_coding(columns, self.coding);
        fresh.bits.buf.reserve_exact(self.bits.buf.capacity());
        for (r, &t) in times.iter().enumerate() {
            fresh.push_row(
                t,
                &rows[r * columns..(r + 1) * columns],
                Some(&modes[..columns]),
            );
        }
        *self = fresh;
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Values per row.
    pub fn columns(&self) -> usize {
        self.columns as usize
    }

    /// How this chunk codes its values.
    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// Timestamp of the first row.
    pub fn first_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_t)
    }

    /// Timestamp of the last row.
    pub fn last_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last_t)
    }

    /// The length of [`ChunkEncoder::to_bytes`]'s result, without building it.
    pub fn encoded_len(&self) -> usize {
        self.header_len() + self.bits.byte_len()
    }

    fn header_len(&self) -> usize {
        let mut n = 3 + varint_len(u64::from(self.count));
        if self.count > 0 {
            n += varint_len(zigzag(self.first_t));
            n += varint_len(self.last_t.wrapping_sub(self.first_t) as u64);
            n += self.columns as usize;
        }
        n
    }

    /// The chunk so far as a self-contained, decodable byte string (what is written to
    /// disk): the header and a copy of the bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(FORMAT_VERSION);
        out.push(self.columns);
        out.push(self.coding.to_byte());
        put_varint(&mut out, u64::from(self.count));
        if self.count > 0 {
            put_varint(&mut out, zigzag(self.first_t));
            put_varint(&mut out, self.last_t.wrapping_sub(self.first_t) as u64);
            out.extend(self.cols.as_slice().iter().map(|c| c.mode.to_byte()));
        }
        self.bits.append_to(&mut out);
        out
    }

    /// Continues a chunk read back from disk (after a restart): later pushes append to it,
    /// exactly as if the encoder had never stopped.
    pub fn resume(data: &[u8]) -> Result<ChunkEncoder, CodecError> {
        let mut dec = Decoder::new(data)?;
        let h = dec.layout.header;
        let mut enc = ChunkEncoder::with_coding(h.columns, h.coding);
        if h.count == 0 {
            return Ok(enc);
        }
        dec.run(|_, _| true)?;
        enc.count = h.count as u32;
        enc.first_t = h.first_t;
        enc.last_t = dec.t;
        enc.prev_dt = dec.dt;
        for (e, d) in enc.cols.as_mut_slice().iter_mut().zip(&mut dec.cols) {
            *e = std::mem::take(d);
        }
        enc.bits = BitWriter::from_bits(dec.layout.payload, dec.reader.pos);
        Ok(enc)
    }

    /// Bytes of heap this encoder holds (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        let cols = match &self.cols {
            Cols::One(c) => c.heap_bytes(),
            Cols::Many(cs) => {
                cs.len() * size_of::<Column>() + cs.iter().map(Column::heap_bytes).sum::<usize>()
            }
        };
        self.bits.buf.capacity() + cols
    }
}

/// The mode a column starts in, from its first value.
fn first_mode(coding: Coding, v: f64) -> ColumnMode {
    if coding.integers
        && let Some(m) = INTEGRAL_MODES.iter().find(|m| m.integer_of(v).is_some())
    {
        return *m;
    }
    ColumnMode::float(coding.floats)
}

/// The columns' coding state: inline for the one column of raw samples, which is what
/// nearly every open encoder holds, to save an allocation per series.
#[derive(Debug, Clone)]
enum Cols {
    One(Column),
    Many(Box<[Column]>),
}

impl Cols {
    fn as_slice(&self) -> &[Column] {
        match self {
            Cols::One(c) => std::slice::from_ref(c),
            Cols::Many(cs) => cs,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Column] {
        match self {
            Cols::One(c) => std::slice::from_mut(c),
            Cols::Many(cs) => cs,
        }
    }
}

/// No XOR window yet (Gorilla) / no leading-zero class yet (Chimp).
const NONE: u8 = u8::MAX;

/// Chimp's leading-zero classes: a count of leading zeros is rounded down to one of these
/// and sent as its 3-bit index.
const LEAD_CLASSES: [u8; 8] = [0, 8, 12, 16, 18, 20, 22, 24];

/// Class index of every count of leading zeros (0..=64).
const LEAD_CLASS_OF: [u8; 65] = {
    let mut t = [0u8; 65];
    let mut lz = 0;
    while lz <= 64 {
        let mut c = 0;
        while c + 1 < LEAD_CLASSES.len() && LEAD_CLASSES[c + 1] as usize <= lz {
            c += 1;
        }
        t[lz] = c as u8;
        lz += 1;
    }
    t
};

/// Chimp sends a value's centre bits alone when it has more trailing zeros than this.
const CHIMP_TRAILING: u32 = 6;

/// One column's state, the same for the encoder and the decoder: that is what lets
/// [`ChunkEncoder::resume`] take the decoder's state as its own.
#[derive(Debug, Clone)]
struct Column {
    mode: ColumnMode,
    /// The previous value's bits (XOR modes) or integer (`Integer`).
    prev: u64,
    /// `Integer`: the previous delta.
    prev_delta: i64,
    /// Gorilla: the leading zeros of the current window; Chimp: the previous class.
    lead: u8,
    /// Gorilla: the trailing zeros of the current window.
    trail: u8,
    /// Chimp: the ring slot the next distinct value replaces, once the ring is full.
    ring_next: u8,
    /// Chimp: the last distinct values' bits, oldest first until the ring is full. It
    /// grows as values come (empty without a ring: no allocation), so that a chunk with
    /// few distinct values, or few rows, holds little.
    ring: Vec<u64>,
}

impl Default for Column {
    fn default() -> Column {
        Column {
            mode: ColumnMode::Gorilla,
            prev: 0,
            prev_delta: 0,
            lead: NONE,
            trail: 0,
            ring_next: 0,
            ring: Vec::new(),
        }
    }
}

impl Column {
    fn heap_bytes(&self) -> usize {
        self.ring.capacity() * size_of::<u64>()
    }

    /// Sets the column up for `mode` from its first value.
    fn start(&mut self, mode: ColumnMode, bits: u64) {
        self.mode = mode;
        self.prev = bits;
        self.prev_delta = 0;
        self.lead = NONE;
        self.trail = 0;
        self.ring_next = 0;
        self.ring = Vec::new();
        if let ColumnMode::Chimp { ring_bits } = mode
            && ring_bits > 0
        {
            self.remember(bits, ring_bits);
        }
    }

    /// Puts a distinct value in the ring: appended while the ring is not full, else in
    /// place of the oldest.
    #[inline]
    fn remember(&mut self, bits: u64, ring_bits: u8) {
        let size = 1usize << ring_bits;
        if self.ring.len() < size {
            if self.ring.len() == self.ring.capacity() {
                // Doubling from 4, never past the ring's size.
                let more = self.ring.len().max(4).min(size - self.ring.len());
                self.ring.reserve_exact(more);
            }
            self.ring.push(bits);
        } else if let Some(slot) = self.ring.get_mut(usize::from(self.ring_next)) {
            *slot = bits;
            self.ring_next = ((usize::from(self.ring_next) + 1) & (size - 1)) as u8;
        }
    }

    fn encode_first(&mut self, mode: ColumnMode, v: f64, w: &mut BitWriter) {
        match mode {
            ColumnMode::Binary { .. } | ColumnMode::Integer { .. } => {
                // Only called with a mode that fits (see `first_mode`, `change_modes`).
                let n = mode.integer_of(v).unwrap_or_default();
                INTEGERS.write(w, zigzag(n));
                self.start(mode, n as u64);
            }
            _ => {
                w.write(v.to_bits(), 64);
                self.start(mode, v.to_bits());
            }
        }
    }

    /// Codes `v` (`n` being its integer in `Integer` mode).
    #[inline]
    fn encode(&mut self, v: f64, n: i64, w: &mut BitWriter) {
        match self.mode {
            ColumnMode::Binary { .. } | ColumnMode::Integer { .. } => {
                let delta = n.wrapping_sub(self.prev as i64);
                INTEGERS.write(w, zigzag(delta.wrapping_sub(self.prev_delta)));
                self.prev = n as u64;
                self.prev_delta = delta;
            }
            ColumnMode::Gorilla => self.encode_gorilla(v.to_bits(), w),
            ColumnMode::Chimp { ring_bits } => self.encode_chimp(v.to_bits(), ring_bits, w),
        }
    }

    fn encode_gorilla(&mut self, bits: u64, w: &mut BitWriter) {
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write(0, 1);
            return;
        }
        // Five bits hold the leading zeros; more than 31 are sent as meaningful bits.
        let lead = x.leading_zeros().min(31) as u8;
        let trail = x.trailing_zeros() as u8;
        if self.lead != NONE && lead >= self.lead && trail >= self.trail {
            w.write(0b10, 2);
            w.write(x >> self.trail, u32::from(64 - self.lead - self.trail));
        } else {
            let len = 64 - lead - trail;
            w.write(0b11 << 11 | u64::from(lead) << 6 | u64::from(len - 1), 13);
            w.write(x >> trail, u32::from(len));
            self.lead = lead;
            self.trail = trail;
        }
    }

    fn encode_chimp(&mut self, bits: u64, ring_bits: u8, w: &mut BitWriter) {
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write(0, 1);
            return;
        }
        if ring_bits > 0 {
            if let Some(i) = self.ring.iter().position(|&r| r == bits) {
                w.write(0b100 << ring_bits | i as u64, 3 + u32::from(ring_bits));
                return;
            }
            self.remember(bits, ring_bits);
        }
        let class = LEAD_CLASS_OF[x.leading_zeros() as usize];
        let lead = u32::from(LEAD_CLASSES[usize::from(class)]);
        let trail = x.trailing_zeros();
        if trail > CHIMP_TRAILING {
            let centre = 64 - lead - trail;
            w.write(0b101 << 9 | u64::from(class) << 6 | u64::from(centre), 12);
            w.write(x >> trail, centre);
        } else if class == self.lead {
            w.write(0b110, 3);
            w.write(x, 64 - lead);
        } else {
            w.write(0b111 << 3 | u64::from(class), 6);
            w.write(x, 64 - lead);
        }
        self.lead = class;
    }

    fn decode_first(&mut self, mode: ColumnMode, r: &mut BitReader) -> f64 {
        match mode {
            ColumnMode::Binary { .. } | ColumnMode::Integer { .. } => {
                let n = unzigzag(INTEGERS.read(r));
                self.start(mode, n as u64);
                mode.value_of(n)
            }
            _ => {
                let bits = r.read_long(64);
                self.start(mode, bits);
                f64::from_bits(bits)
            }
        }
    }

    #[inline(always)]
    fn decode(&mut self, r: &mut BitReader) -> Result<f64, CodecError> {
        match self.mode {
            ColumnMode::Binary { .. } | ColumnMode::Integer { .. } => {
                self.prev_delta = self.prev_delta.wrapping_add(unzigzag(INTEGERS.read(r)));
                let n = (self.prev as i64).wrapping_add(self.prev_delta);
                self.prev = n as u64;
                Ok(self.mode.value_of(n))
            }
            ColumnMode::Chimp { ring_bits } => self.decode_chimp(ring_bits, r),
            ColumnMode::Gorilla => self.decode_gorilla(r),
        }
    }

    #[inline(always)]
    fn decode_gorilla(&mut self, r: &mut BitReader) -> Result<f64, CodecError> {
        let p = r.peek();
        if p >> 63 == 0 {
            r.skip(1);
            return Ok(f64::from_bits(self.prev));
        }
        if p >> 62 == 0b10 {
            if self.lead == NONE {
                return Err(CodecError::Malformed("XOR window used before it was set"));
            }
            r.skip(2);
        } else {
            let lead = ((p >> 57) & 0x1f) as u8;
            let len = ((p >> 51) & 0x3f) as u8 + 1;
            if lead + len > 64 {
                return Err(CodecError::Malformed("XOR window wider than 64 bits"));
            }
            r.skip(13);
            self.lead = lead;
            self.trail = 64 - lead - len;
        }
        let len = u32::from(64 - self.lead - self.trail);
        self.prev ^= r.read_long(len) << self.trail;
        Ok(f64::from_bits(self.prev))
    }

    #[inline(always)]
    fn decode_chimp(&mut self, ring_bits: u8, r: &mut BitReader) -> Result<f64, CodecError> {
        let p = r.peek();
        if p >> 63 == 0 {
            r.skip(1);
            return Ok(f64::from_bits(self.prev));
        }
        let x = match p >> 61 {
            0b100 => {
                if ring_bits == 0 {
                    return Err(CodecError::Malformed("ring used in a column without one"));
                }
                let i = ((p << 3) >> (64 - u32::from(ring_bits))) as usize;
                r.skip(3 + u32::from(ring_bits));
                self.prev = *self
                    .ring
                    .get(i)
                    .ok_or(CodecError::Malformed("ring slot not filled yet"))?;
                return Ok(f64::from_bits(self.prev));
            }
            0b101 => {
                let class = ((p >> 58) & 7) as u8;
                let centre = ((p >> 52) & 0x3f) as u32;
                let lead = u32::from(LEAD_CLASSES[usize::from(class)]);
                if centre == 0 || lead + centre > 64 {
                    return Err(CodecError::Malformed("XOR centre out of range"));
                }
                r.skip(12);
                self.lead = class;
                r.read_long(centre) << (64 - lead - centre)
            }
            0b110 => {
                if self.lead == NONE {
                    return Err(CodecError::Malformed("XOR class used before it was set"));
                }
                r.skip(3);
                r.read_long(64 - u32::from(LEAD_CLASSES[usize::from(self.lead)]))
            }
            _ => {
                let class = ((p >> 58) & 7) as u8;
                r.skip(6);
                self.lead = class;
                r.read_long(64 - u32::from(LEAD_CLASSES[usize::from(class)]))
            }
        };
        self.prev ^= x;
        if ring_bits > 0 {
            self.remember(self.prev, ring_bits);
        }
        Ok(f64::from_bits(self.prev))
    }
}

/// A prefix code for zigzagged integers: `0` for zero; else `i` one bits and a zero, then
/// `widths[i - 1]` bits of offset within bucket `i`; or, past the last bucket, all ones
/// and the 64 bits as they are.
struct Buckets<const N: usize> {
    widths: [u32; N],
    offsets: [u64; N],
    /// By count of leading ones (0 for the zero code): the width and offset, so that
    /// reading is free of branches the data would make unpredictable (jittered
    /// timestamps make every length of code common).
    read_widths: [u32; 8],
    read_offsets: [u64; 8],
}

impl<const N: usize> Buckets<N> {
    const fn new(widths: [u32; N]) -> Buckets<N> {
        assert!(N < 8);
        let mut offsets = [0u64; N];
        let mut read_widths = [0u32; 8];
        let mut read_offsets = [0u64; 8];
        let mut lo = 1u64;
        let mut i = 0;
        while i < N {
            offsets[i] = lo;
            read_widths[i + 1] = widths[i];
            read_offsets[i + 1] = lo;
            lo += 1 << widths[i];
            i += 1;
        }
        Buckets {
            widths,
            offsets,
            read_widths,
            read_offsets,
        }
    }

    #[inline]
    fn write(&self, w: &mut BitWriter, z: u64) {
        if z == 0 {
            w.write(0, 1);
            return;
        }
        let mut i = 0;
        while i < N {
            // `z >= offsets[i]`: smaller values were taken by an earlier bucket.
            let rel = z - self.offsets[i];
            if rel < 1 << self.widths[i] {
                let ones = i as u32 + 1;
                let prefix = ((1u64 << ones) - 1) << 1;
                w.write(prefix << self.widths[i] | rel, ones + 1 + self.widths[i]);
                return;
            }
            i += 1;
        }
        w.write((1 << (N + 1)) - 1, N as u32 + 1);
        w.write(z, 64);
    }

    #[inline(always)]
    fn read(&self, r: &mut BitReader) -> u64 {
        let p = r.peek();
        let ones = p.leading_ones();
        if ones as usize > N {
            r.skip(N as u32 + 1);
            return r.read_long(64);
        }
        let width = self.read_widths[ones as usize & 7];
        // The prefix and the offset are within the 57 bits `peek` guarantees; shifting
        // in two steps gives 0 for a width of 0 (the zero code).
        let rel = ((p << (ones + 1)) >> (63 - width)) >> 1;
        r.skip(ones + 1 + width);
        self.read_offsets[ones as usize & 7] + rel
    }
}

/// Timestamp deltas-of-deltas: 0 in 1 bit, ±2 in 4, ±10 in 7, ±42 in 10, ±170 in 13,
/// ±2.2 s in 18.
const TIMESTAMPS: Buckets<6> = Buckets::new([2, 4, 6, 8, 12, 24]);

/// Integer deltas-of-deltas (and a column's first integer).
const INTEGERS: Buckets<6> = Buckets::new([3, 6, 10, 16, 24, 32]);

#[inline]
fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

#[inline]
fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Bits appended most significant first: whole 64-bit words in `buf`, the rest in `acc`.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// The pending bits, left-aligned.
    acc: u64,
    /// How many bits of `acc` are pending (0..=63).
    fill: u32,
}

impl BitWriter {
    /// A writer holding the first `bits` bits of `data` (the rest must be padding).
    fn from_bits(data: &[u8], bits: usize) -> BitWriter {
        let whole = bits / 64 * 8;
        let mut buf = Vec::with_capacity(whole + 32);
        buf.extend_from_slice(&data[..whole.min(data.len())]);
        let mut tail = [0u8; 8];
        for (t, &b) in tail.iter_mut().zip(data.get(whole..).unwrap_or_default()) {
            *t = b;
        }
        let fill = (bits % 64) as u32;
        let acc = if fill == 0 {
            0
        } else {
            u64::from_be_bytes(tail) & !(u64::MAX >> fill)
        };
        BitWriter { buf, acc, fill }
    }

    /// Appends the low `n` bits of `v` (1 <= n <= 64; higher bits of `v` must be zero).
    #[inline]
    fn write(&mut self, v: u64, n: u32) {
        debug_assert!((1..=64).contains(&n) && (n == 64 || v >> n == 0));
        let free = 64 - self.fill;
        if n < free {
            self.acc |= v << (free - n);
            self.fill += n;
        } else {
            let word = self.acc | v >> (n - free);
            self.push_word(word);
            self.fill = n - free;
            self.acc = if self.fill == 0 {
                0
            } else {
                v << (64 - self.fill)
            };
        }
    }

    #[inline]
    fn push_word(&mut self, word: u64) {
        if self.buf.len() + 8 > self.buf.capacity() {
            // A quarter more at a time, not double: open encoders live for every series,
            // and doubling would leave up to half of each buffer unused.
            let grow = (self.buf.capacity() / 4).next_multiple_of(8).max(32);
            self.buf.reserve_exact(grow);
        }
        self.buf.extend_from_slice(&word.to_be_bytes());
    }

    fn byte_len(&self) -> usize {
        self.buf.len() + self.fill.div_ceil(8) as usize
    }

    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&self.acc.to_be_bytes()[..self.fill.div_ceil(8) as usize]);
    }
}

/// Bits read most significant first. Reads past the end yield zero bits rather than
/// failing, so that each read is branch-free; the decoder checks the position once a row.
struct BitReader<'a> {
    data: &'a [u8],
    /// Bits consumed.
    pos: usize,
}

impl BitReader<'_> {
    /// The next 64 bits (at least 57 of them meaningful), first bit most significant.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let i = self.pos >> 3;
        let word = match self.data.get(i..).and_then(|s| s.first_chunk::<8>()) {
            Some(b) => u64::from_be_bytes(*b),
            None => self.peek_tail(i),
        };
        word << (self.pos & 7)
    }

    #[cold]
    fn peek_tail(&self, i: usize) -> u64 {
        let mut b = [0u8; 8];
        for (d, &s) in b.iter_mut().zip(self.data.get(i..).unwrap_or_default()) {
            *d = s;
        }
        u64::from_be_bytes(b)
    }

    #[inline(always)]
    fn skip(&mut self, n: u32) {
        self.pos += n as usize;
    }

    /// The next `n` bits (1 <= n <= 64).
    #[inline(always)]
    fn read_long(&mut self, n: u32) -> u64 {
        if n <= 56 {
            let v = self.peek() >> (64 - n);
            self.skip(n);
            v
        } else {
            let hi = self.peek() >> 32;
            self.skip(32);
            let lo = self.peek() >> (96 - n);
            self.skip(n - 32);
            hi << (n - 32) | lo
        }
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data
            .get(*at)
            .ok_or(CodecError::Truncated("header ends early"))?;
        *at += 1;
        if shift == 63 && b > 1 {
            return Err(CodecError::Malformed("varint overflows 64 bits"));
        }
        // One spelling per number, so that a chunk read back and written again is the
        // same bytes.
        if b == 0 && shift > 0 {
            return Err(CodecError::Malformed("varint not in its shortest form"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::Malformed("varint overflows 64 bits"))
}

/// A parsed header and where the bits start.
struct Layout<'a> {
    header: ChunkHeader,
    modes: [ColumnMode; MAX_COLUMNS],
    mode_count: usize,
    payload: &'a [u8],
}

impl Layout<'_> {
    fn parse(data: &[u8]) -> Result<Layout<'_>, CodecError> {
        let [version, columns, coding, ..] = *data else {
            return Err(CodecError::Truncated("no header"));
        };
        if version != FORMAT_VERSION {
            return Err(CodecError::UnknownVersion { found: version });
        }
        let columns = usize::from(columns);
        if !(1..=MAX_COLUMNS).contains(&columns) {
            return Err(CodecError::Malformed("column count out of range"));
        }
        let coding = Coding::from_byte(coding)?;
        let mut at = 3;
        let count = get_varint(data, &mut at)?;
        let mut header = ChunkHeader {
            version,
            columns,
            count: 0,
            first_t: 0,
            last_t: 0,
            coding,
        };
        let mut modes = [ColumnMode::Gorilla; MAX_COLUMNS];
        let mut mode_count = 0;
        if count > 0 {
            let first = get_varint(data, &mut at)?;
            let span = get_varint(data, &mut at)?;
            header.first_t = unzigzag(first);
            header.last_t = header.first_t.wrapping_add(span as i64);
            let bytes = data
                .get(at..at + columns)
                .ok_or(CodecError::Truncated("header ends early"))?;
            for (m, &b) in modes.iter_mut().zip(bytes) {
                *m = ColumnMode::from_byte(b)?;
            }
            mode_count = columns;
            at += columns;
        }
        let payload = data.get(at..).unwrap_or_default();
        // Every row but the first takes at least one bit per column and one for its
        // timestamp: a count beyond that is a lie, refused before any work.
        let bits = payload.len() as u64 * 8;
        if count > 0 && (count - 1).saturating_mul(columns as u64 + 1) > bits {
            return Err(CodecError::Truncated("fewer bits than rows"));
        }
        if count == 0 && !payload.is_empty() {
            return Err(CodecError::Malformed("bytes after an empty chunk"));
        }
        header.count = usize::try_from(count)
            .ok()
            .filter(|&c| c <= u32::MAX as usize)
            .ok_or(CodecError::Malformed("row count out of range"))?;
        Ok(Layout {
            header,
            modes,
            mode_count,
            payload,
        })
    }
}

/// Decodes a chunk; its final state is an encoder's ([`ChunkEncoder::resume`]).
struct Decoder<'a> {
    layout: Layout<'a>,
    reader: BitReader<'a>,
    cols: [Column; MAX_COLUMNS],
    t: i64,
    dt: i64,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8]) -> Result<Decoder<'a>, CodecError> {
        let layout = Layout::parse(data)?;
        let reader = BitReader {
            data: layout.payload,
            pos: 0,
        };
        Ok(Decoder {
            layout,
            reader,
            cols: Default::default(),
            t: 0,
            dt: 0,
        })
    }

    /// Calls `row` for each row until it returns false; true when every row was read
    /// (and the chunk checked whole).
    #[inline]
    fn run<F: FnMut(i64, &[f64]) -> bool>(&mut self, mut row: F) -> Result<bool, CodecError> {
        let h = self.layout.header;
        if h.count == 0 {
            return Ok(true);
        }
        let n = h.columns;
        let end = self.layout.payload.len() * 8;
        let cols = &mut self.cols[..n];
        let r = &mut self.reader;
        let mut values = [0f64; MAX_COLUMNS];
        let mut t = h.first_t;
        let mut dt = 0i64;
        for (i, (col, v)) in cols.iter_mut().zip(&mut values).enumerate() {
            *v = col.decode_first(self.layout.modes[i], r);
        }
        if r.pos > end {
            return Err(CodecError::Truncated("rows end early"));
        }
        let mut go_on = row(t, &values[..n]);
        let mut done = 1;
        if let [col] = cols {
            // Raw samples: one column, without the loop over columns.
            while go_on && done < h.count {
                dt = dt.wrapping_add(unzigzag(TIMESTAMPS.read(r)));
                t = t.wrapping_add(dt);
                let v = col.decode(r)?;
                if r.pos > end {
                    return Err(CodecError::Truncated("rows end early"));
                }
                done += 1;
                go_on = row(t, &[v]);
            }
        }
        while go_on && done < h.count {
            dt = dt.wrapping_add(unzigzag(TIMESTAMPS.read(r)));
            t = t.wrapping_add(dt);
            for (col, v) in cols.iter_mut().zip(&mut values) {
                *v = col.decode(r)?;
            }
            if r.pos > end {
                return Err(CodecError::Truncated("rows end early"));
            }
            done += 1;
            go_on = row(t, &values[..n]);
        }
        self.t = t;
        self.dt = dt;
        if done < h.count {
            return Ok(false);
        }
        if t != h.last_t {
            return Err(CodecError::Malformed(
                "last timestamp differs from the header",
            ));
        }
        // What follows the rows must be the zero bits that pad the last byte.
        if end - r.pos >= 8 || (end > r.pos && r.peek() != 0) {
            return Err(CodecError::Malformed("bytes after the last row"));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (splitmix64), so that a failing case can be rerun.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }

    const SPECIALS: [f64; 12] = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        5e-324,
        -2.5e-310,
        1.0,
    ];

    fn special(rng: &mut Rng) -> f64 {
        match rng.below(16) {
            // NaNs with payloads and signs the hardware would not produce.
            12 => f64::from_bits(0x7ff0_0000_0000_0001 | rng.next() & 0x000f_ffff_ffff_ffff),
            13 => f64::from_bits(0xfff8_0000_0000_0000 | rng.next() & 0x0007_ffff_ffff_ffff),
            14 => f64::from_bits(rng.next() & 0x000f_ffff_ffff_ffff),
            15 => f64::from_bits(rng.next()),
            i => SPECIALS[i as usize],
        }
    }

    /// Timestamps of one of several shapes.
    fn times(rng: &mut Rng, kind: u64, n: usize) -> Vec<i64> {
        let mut t = match kind {
            3 => i64::MIN,
            _ => 1_796_316_101_401 + rng.range(-1_000_000, 1_000_000),
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(t);
            let step = match kind {
                0 => 1000,
                1 => 1000 + rng.range(-7, 7) + if rng.below(20) == 0 { 40 } else { 0 },
                2 => match rng.below(10) {
                    0 => rng.range(1, 100_000_000),
                    1 => 1,
                    _ => 15_000 + rng.range(-300, 300),
                },
                // Arbitrary gaps across the whole range of i64.
                _ => {
                    let room = i64::MAX.wrapping_sub(t) as u64;
                    let gap = 1 + rng.below((room / n as u64).max(1).saturating_mul(2));
                    gap.min(room.max(1)) as i64
                }
            };
            match t.checked_add(step) {
                Some(next) if next > t => t = next,
                _ => break,
            }
        }
        out
    }

    /// Values of one of several shapes.
    fn values(rng: &mut Rng, kind: u64, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n);
        let mut acc = rng.range(0, 1 << 40) as f64;
        let k = rng.range(1, 4) as i32;
        for i in 0..n {
            let v = match kind {
                // Counter.
                0 => {
                    acc += rng.range(0, 500) as f64;
                    acc
                }
                // Byte gauge (pages).
                1 => {
                    acc = (acc + (rng.range(-3000, 3000) * 4096) as f64).abs();
                    acc
                }
                // Constant.
                2 => 42.0,
                // Decimals with `k` digits, built both ways a collector might.
                3 => {
                    let m = rng.range(-100_000, 100_000);
                    if i % 2 == 0 {
                        m as f64 / 10f64.powi(k)
                    } else {
                        m as f64 * [0.1, 0.01, 0.001, 0.0001][k as usize - 1]
                    }
                }
                // Percentages of small ratios (CPU modes).
                4 => {
                    if rng.below(3) == 0 {
                        0.0
                    } else {
                        100.0 * rng.range(0, 30) as f64 / rng.range(195, 205) as f64
                    }
                }
                // Smooth float gauge.
                5 => (i as f64 / 17.0).sin() * 1e3 + 1e4,
                // Random bits: anything, NaNs included.
                6 => f64::from_bits(rng.next()),
                // Special values.
                7 => special(rng),
                // Integers, then one float, then integers again.
                8 => {
                    if i == n / 2 {
                        0.1 + 0.2
                    } else {
                        rng.range(-5, 5) as f64
                    }
                }
                // Integers that end in a -0.0.
                _ => {
                    if i + 1 == n {
                        -0.0
                    } else {
                        rng.range(0, 3) as f64
                    }
                }
            };
            out.push(v);
        }
        out
    }

    const CODINGS: [Coding; 6] = [
        Coding::DEFAULT,
        Coding::GORILLA,
        Coding {
            integers: false,
            floats: FloatCoding::Chimp { ring_bits: 0 },
        },
        Coding {
            integers: false,
            floats: FloatCoding::Chimp { ring_bits: 5 },
        },
        Coding {
            integers: true,
            floats: FloatCoding::Gorilla,
        },
        Coding {
            integers: true,
            floats: FloatCoding::Chimp { ring_bits: 1 },
        },
    ];

    type Rows = Vec<(i64, Vec<f64>)>;

    /// A generated series of `columns` columns.
    fn series(seed: u64, columns: usize) -> Rows {
        let mut rng = Rng(seed);
        let n = match rng.below(4) {
            0 => 1 + rng.below(3) as usize,
            _ => 1 + rng.below(700) as usize,
        };
        let shape = rng.below(4);
        let ts = times(&mut rng, shape, n);
        let cols: Vec<Vec<f64>> = (0..columns)
            .map(|_| {
                let kind = rng.below(10);
                values(&mut rng, kind, ts.len())
            })
            .collect();
        ts.iter()
            .enumerate()
            .map(|(i, &t)| (t, cols.iter().map(|c| c[i]).collect()))
            .collect()
    }

    fn encode(rows: &Rows, columns: usize, coding: Coding) -> ChunkEncoder {
        let mut enc = ChunkEncoder::with_coding(columns, coding);
        for (t, v) in rows {
            enc.push(*t, v);
        }
        enc
    }

    fn decoded(data: &[u8]) -> Rows {
        let mut out = Vec::new();
        let result = decode(data, &mut |t, v| {
            out.push((t, v.to_vec()));
            true
        });
        if let Err(e) = result {
            panic!("decode failed: {e}");
        }
        out
    }

    /// Equal bit for bit (`==` on f64 would take -0.0 for 0.0 and refuse NaN).
    fn assert_same(got: &Rows, want: &Rows, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: row count");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.0, w.0, "{what}: timestamp of row {i}");
            let gb: Vec<u64> = g.1.iter().map(|v| v.to_bits()).collect();
            let wb: Vec<u64> = w.1.iter().map(|v| v.to_bits()).collect();
            assert_eq!(gb, wb, "{what}: values of row {i} ({:?} vs {:?})", g.1, w.1);
        }
    }

    #[test]
    fn generated_series_round_trip_bit_exactly() {
        for seed in 0..400 {
            let columns = if seed % 5 == 0 {
                1 + seed as usize % 7
            } else {
                1
            };
            let rows = series(seed, columns);
            for coding in CODINGS {
                let enc = encode(&rows, columns, coding);
                let bytes = enc.to_bytes();
                let what = format!("seed {seed}, {coding:?}");
                assert_eq!(bytes.len(), enc.encoded_len(), "{what}: encoded_len");
                assert_same(&decoded(&bytes), &rows, &what);
                let h = header(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(h.count, rows.len(), "{what}");
                assert_eq!(h.columns, columns, "{what}");
                assert_eq!(h.coding, coding, "{what}");
                assert_eq!(Some(h.first_t), rows.first().map(|r| r.0), "{what}");
                assert_eq!(Some(h.last_t), rows.last().map(|r| r.0), "{what}");
                assert_eq!(enc.first_t(), rows.first().map(|r| r.0), "{what}");
                assert_eq!(enc.last_t(), rows.last().map(|r| r.0), "{what}");
            }
        }
    }

    #[test]
    fn special_values_round_trip_in_every_coding() {
        let mut rows = Vec::new();
        let mut t = -5_000;
        let mut rng = Rng(7);
        // Each special value after each other one, and after integers and decimals.
        for a in SPECIALS {
            for b in SPECIALS {
                for v in [a, b, 3.0, b, 0.25, a] {
                    rows.push((t, vec![v]));
                    t += 1 + rng.range(0, 2000);
                }
            }
        }
        for _ in 0..500 {
            rows.push((t, vec![special(&mut rng)]));
            t += 1;
        }
        for coding in CODINGS {
            let bytes = encode(&rows, 1, coding).to_bytes();
            assert_same(&decoded(&bytes), &rows, &format!("{coding:?}"));
        }
    }

    #[test]
    fn integer_columns_move_forward_only_as_far_as_needed() {
        let modes = |vals: &[f64]| {
            let mut enc = ChunkEncoder::new(1);
            for (i, &v) in vals.iter().enumerate() {
                enc.push(i as i64, &[v]);
            }
            let bytes = enc.to_bytes();
            let rows: Rows = vals
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as i64, vec![v]))
                .collect();
            assert_same(&decoded(&bytes), &rows, &format!("{vals:?}"));
            column_modes(&bytes).unwrap_or_else(|e| panic!("{e}"))[0]
        };
        let int = |scale, multiply| ColumnMode::Integer { scale, multiply };
        assert_eq!(modes(&[1.0, 2.0, 1e15]), int(0, false));
        assert_eq!(
            modes(&[0.0, 4096.0, 8192.0, 0.0]),
            ColumnMode::Binary { shift: 12 }
        );
        assert_eq!(modes(&[0.0, 4096.0, 2.0]), ColumnMode::Binary { shift: 1 });
        assert_eq!(modes(&[0.0, 1e12, 3.0]), int(0, false));
        assert_eq!(modes(&[0.0, 0.0]), ColumnMode::Binary { shift: MAX_SHIFT });
        assert_eq!(modes(&[1.0, 2.5, 3.0]), int(1, false));
        assert_eq!(modes(&[1.0, 2.5, 0.01, 7.0]), int(2, false));
        // 70678154 µs × 0.000001, as the collector computes it: not 70678154 / 10^6.
        assert_eq!(modes(&[0.0, 70678154.0 * 1e-6]), int(6, true));
        // 0.1 + 0.2 is 0.30000000000000004, which is exactly 3 × 0.1 in f64.
        assert_eq!(modes(&[1.0, 2.0, 0.1 + 0.2]), int(1, true));
        let float = ColumnMode::float(Coding::DEFAULT.floats);
        assert_eq!(modes(&[1.0, 2.0, 1.0 / 3.0]), float);
        assert_eq!(modes(&[1.0, -0.0]), float);
        assert_eq!(modes(&[1.0, f64::NAN]), float);
        assert_eq!(modes(&[1.0, 1e300]), float);
    }

    #[test]
    fn regular_timestamps_cost_one_bit() {
        let mut enc = ChunkEncoder::new(1);
        for i in 0..1024 {
            enc.push(1_796_316_101_000 + i * 1000, &[5.0]);
        }
        // One bit of timestamp and one of value a row; the second row's delta, the header.
        let bytes = enc.to_bytes();
        assert!(bytes.len() <= 1024 * 2 / 8 + 24, "{} bytes", bytes.len());
    }

    #[test]
    fn resuming_after_to_bytes_equals_encoding_without_a_stop() {
        for seed in 1000..1200 {
            let columns = if seed % 4 == 0 { ROLLUP_COLUMNS } else { 1 };
            let rows = series(seed, columns);
            for coding in [Coding::DEFAULT, Coding::GORILLA, CODINGS[5]] {
                let whole = encode(&rows, columns, coding).to_bytes();
                let mut rng = Rng(seed);
                // Stop and resume at several points, as successive checkpoints would.
                let mut enc = ChunkEncoder::with_coding(columns, coding);
                for (t, v) in &rows {
                    if rng.below(50) == 0 {
                        let bytes = enc.to_bytes();
                        enc = ChunkEncoder::resume(&bytes)
                            .unwrap_or_else(|e| panic!("seed {seed}: resume: {e}"));
                        assert_eq!(enc.to_bytes(), bytes, "seed {seed}: resumed as it was");
                    }
                    enc.push(*t, v);
                }
                assert_eq!(enc.to_bytes(), whole, "seed {seed}, {coding:?}");
            }
        }
        let empty = ChunkEncoder::new(3).to_bytes();
        let resumed = ChunkEncoder::resume(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert!(resumed.is_empty());
        assert_eq!(resumed.columns(), 3);
    }

    #[test]
    fn decode_points_keeps_the_range() {
        let mut enc = ChunkEncoder::new(1);
        for i in 0..100 {
            enc.push(i * 10, &[i as f64 / 4.0]);
        }
        let bytes = enc.to_bytes();
        let points = |from, to| {
            let mut out = vec![Point {
                timestamp_ms: -1,
                value: -1.0,
            }];
            decode_points(&bytes, from, to, &mut out).unwrap_or_else(|e| panic!("{e}"));
            out.remove(0);
            out
        };
        let ts = |p: Vec<Point>| p.iter().map(|p| p.timestamp_ms).collect::<Vec<_>>();
        assert_eq!(ts(points(95, 130)), vec![100, 110, 120, 130]);
        assert_eq!(ts(points(-50, 15)), vec![0, 10]);
        assert_eq!(points(980, 5000).len(), 2);
        assert_eq!(points(i64::MIN, i64::MAX).len(), 100);
        assert!(points(991, 5000).is_empty());
        assert!(points(50, 40).is_empty());
        assert_eq!(points(40, 40)[0].value, 1.0);

        let rollup = ChunkEncoder::new(ROLLUP_COLUMNS);
        let mut out = Vec::new();
        assert!(matches!(
            decode_points(&rollup.to_bytes(), 0, 1, &mut out),
            Err(CodecError::NotRaw { found: 6 })
        ));
    }

    #[test]
    fn multi_column_rows_and_early_stop() {
        let mut enc = ChunkEncoder::new(ROLLUP_COLUMNS);
        let mut rows = Vec::new();
        for i in 0..200i64 {
            let row = vec![
                (i % 7) as f64,
                i as f64 * 1.1,
                -0.5,
                if i == 150 { f64::NAN } else { i as f64 },
                1e-3 * i as f64,
                (i * i) as f64,
            ];
            enc.push(60_000 * i, &row);
            rows.push((60_000 * i, row));
        }
        assert_eq!(enc.len(), 200);
        assert_eq!(enc.columns(), ROLLUP_COLUMNS);
        let bytes = enc.to_bytes();
        assert_same(&decoded(&bytes), &rows, "roll-up");
        let modes = column_modes(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            modes[0],
            ColumnMode::Integer {
                scale: 0,
                multiply: false
            }
        );
        assert_eq!(
            modes[2],
            ColumnMode::Integer {
                scale: 1,
                multiply: false
            }
        );
        assert!(matches!(modes[3], ColumnMode::Chimp { .. }));

        let mut seen = 0;
        let result = decode(&bytes, &mut |_, _| {
            seen += 1;
            seen < 10
        });
        assert!(result.is_ok());
        assert_eq!(seen, 10);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut rng = Rng(99);
        let check = |data: &[u8]| {
            let mut rows = Vec::new();
            let whole = decode(data, &mut |t, v| {
                rows.push((t, v.to_vec()));
                true
            });
            let _ = header(data);
            let _ = column_modes(data);
            let mut out = Vec::new();
            let _ = decode_points(data, i64::MIN, i64::MAX, &mut out);
            let Ok(mut enc) = ChunkEncoder::resume(data) else {
                return;
            };
            assert!(whole.is_ok(), "resumed what does not decode");
            // A chunk that reads back whole must read back the same once resumed, and
            // keep its rows when new ones (and a change of mode) follow.
            assert_eq!(enc.to_bytes(), data);
            let mut t = enc.last_t().unwrap_or(0);
            for v in [0.0, 1.0, 0.5, f64::NAN] {
                let Some(next) = t.checked_add(1) else {
                    return;
                };
                t = next;
                let row = vec![v; enc.columns()];
                enc.push(t, &row);
                rows.push((t, row));
            }
            assert_same(&decoded(&enc.to_bytes()), &rows, "resumed garbage");
        };
        // Random bytes, some behind a plausible header so that the rows are reached.
        for _ in 0..20_000 {
            let len = rng.below(64) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len > 6 && rng.below(2) == 0 {
                data[0] = FORMAT_VERSION;
                data[1] = 1 + rng.below(3) as u8;
                data[2] = [0x00, 0x80, 0x94, 0x10, 0x91][rng.below(5) as usize];
                data[3] = rng.below(100) as u8;
            }
            check(&data);
        }
        // Every truncation and many bit flips of real chunks.
        for seed in 0..40 {
            let columns = if seed % 3 == 0 { 2 } else { 1 };
            let coding = CODINGS[seed as usize % CODINGS.len()];
            let bytes = encode(&series(seed, columns), columns, coding).to_bytes();
            // Every cut through the header and the first rows, then a sample of the rest
            // (each cut decodes the whole chunk: all of them would be quadratic).
            let cuts = (0..bytes.len().min(80))
                .chain((0..60).map(|_| rng.below(bytes.len() as u64) as usize));
            for cut in cuts {
                check(&bytes[..cut]);
                let r = decode(&bytes[..cut], &mut |_, _| true);
                assert!(
                    r.is_err(),
                    "seed {seed}: truncated at {cut} of {}",
                    bytes.len()
                );
            }
            for _ in 0..100 {
                let mut bad = bytes.clone();
                let i = rng.below(bad.len() as u64) as usize;
                bad[i] ^= 1 << rng.below(8);
                check(&bad);
            }
        }
        // A row count far beyond the bits is refused up front.
        let mut lie = vec![FORMAT_VERSION, 1, 0x94];
        put_varint(&mut lie, u64::MAX);
        lie.extend_from_slice(&[0; 12]);
        assert!(decode(&lie, &mut |_, _| true).is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let mut bytes = ChunkEncoder::new(1).to_bytes();
        bytes[0] = 9;
        let e = header(&bytes).map(|_| ()).unwrap_err_or_panic();
        assert_eq!(e, CodecError::UnknownVersion { found: 9 });
        assert!(e.to_string().contains("version 9"), "{e}");
        let e = header(&[]).map(|_| ()).unwrap_err_or_panic();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = header(&[FORMAT_VERSION, 0, 0, 0])
            .map(|_| ())
            .unwrap_err_or_panic();
        assert!(e.to_string().contains("column count"), "{e}");
    }

    trait UnwrapErr {
        fn unwrap_err_or_panic(self) -> CodecError;
    }

    impl UnwrapErr for Result<(), CodecError> {
        fn unwrap_err_or_panic(self) -> CodecError {
            match self {
                Ok(()) => panic!("expected an error"),
                Err(e) => e,
            }
        }
    }

    #[test]
    fn an_open_encoder_is_small() {
        assert!(
            size_of::<ChunkEncoder>() <= 128,
            "{}",
            size_of::<ChunkEncoder>()
        );
        let open = |value: &mut dyn FnMut(&mut Rng) -> f64| {
            let mut rng = Rng(5);
            let mut enc = ChunkEncoder::new(1);
            let mut t = 0;
            for _ in 0..300 {
                t += 1000 + rng.range(-3, 3);
                let v = value(&mut rng);
                enc.push(t, &[v]);
            }
            // The buffer holds the bits and at most a quarter more.
            assert!(enc.heap_bytes() >= enc.encoded_len() - 20);
            size_of::<ChunkEncoder>() + enc.heap_bytes()
        };
        // 300 points of a counter at a steady rate, give or take 5 %: the common kind
        // (100,000 of them: under 70 MB).
        let mut n = 0.0;
        let counter = open(&mut |rng| {
            n += rng.range(95, 105) as f64;
            n
        });
        assert!(counter < 700, "counter: {counter} bytes");
        // Of a CPU percentage that never repeats a value: the costliest kind, its bits
        // and a full ring.
        let ratio = open(&mut |rng| {
            100.0 * rng.range(0, 40_000) as f64 / rng.range(195_000, 205_000) as f64
        });
        assert!(ratio < 4000, "CPU percentage: {ratio} bytes");
    }
}
