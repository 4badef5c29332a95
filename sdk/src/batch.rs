//! [`Samples`]: the batch a collector writes its samples into.
//!
//! `collect` returns a `sample-batch` (contract `0.3`): one `text` holding every metric
//! name, label name and label value back to back, and columns of numbers pointing into it
//! (four per sample, a value and a timestamp per sample, four per label). Building it needs
//! no allocation per sample (the buffers grow, and start each call at the size the
//! previous call needed), and crossing into the host costs a few bulk copies instead of a
//! few allocations per sample. [`Samples::sample`] writes straight into it; names and
//! values are anything that implements [`Text`]: strings, integers, `bool`, `char`,
//! `format_args!(...)`, and any [`Display`] through [`display`].

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::{self, Display, Write};

use crate::bindings::telltale::plugin::types::SampleBatch;
use crate::{Label, Sample, now_ms};

thread_local! {
    /// The sizes of the previous call's batch (text bytes, samples, label records): the next
    /// call's batch starts with that capacity, so a collector that returns about the same
    /// samples every time grows no buffer after its first call.
    static LAST_SIZES: Cell<(usize, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// The samples one `collect` call returns, written into one flat batch.
///
/// Start a sample with [`Samples::sample`], which returns a [`SampleWriter`] to add labels
/// and set the time. A sample is timestamped with the time the batch was created (the start
/// of the `collect` call, read once from the host) unless [`SampleWriter::at`] says
/// otherwise.
///
/// ```
/// use telltale_sdk::Samples;
///
/// let mut out = Samples::new();
/// for (core, busy) in [(0, 12.5), (1, 80.0)] {
///     // Strings, integers and `format_args!` are written straight into the batch.
///     out.sample("cpu_usage_percent", busy).label("cpu", core);
/// }
/// out.sample("cpu_count", 2.0);
///
/// assert_eq!(out.len(), 3);
/// let first = out.iter().next().unwrap();
/// assert_eq!(first.name(), "cpu_usage_percent");
/// assert_eq!(first.label("cpu"), Some("0"));
/// assert_eq!(first.value(), 12.5);
/// assert_eq!(first.timestamp_ms(), out.timestamp_ms());
/// ```
#[derive(Debug)]
pub struct Samples {
    text: String,
    /// Four numbers per sample: name start, name length, first label, label count.
    samples: Vec<u32>,
    values: Vec<f64>,
    timestamps: Vec<i64>,
    /// Four numbers per label: name start, name length, value start, value length.
    labels: Vec<u32>,
    now: i64,
}

/// Numbers per sample in `Samples::samples`, and per label in `Samples::labels`.
const STRIDE: usize = 4;

impl Default for Samples {
    fn default() -> Samples {
        Samples::new()
    }
}

/// The byte offset `n` as the contract's `u32`: a batch cannot exceed 4 GiB inside a
/// 32-bit WebAssembly memory; natively the host would refuse the saturated span.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A value the batch can write as text: a metric name, a label name or a label value.
///
/// Implemented for `str`, `String`, `Cow<str>`, references to any of them, the integer
/// types, `bool`, `char`, `fmt::Arguments` (`format_args!("{x}_bytes")`) and, through
/// [`display`], anything that implements [`Display`]. Strings and integers are copied
/// straight into the batch; only `Display` goes through the formatting machinery, which
/// costs several times more inside WebAssembly.
///
/// Integers are written as `Display` would write them, without its cost:
///
/// ```
/// use telltale_sdk::Text;
///
/// let mut out = String::new();
/// for n in [0u128, 7, u64::MAX as u128, u128::MAX] {
///     n.write_to(&mut out);
///     out.push(' ');
/// }
/// (-5i8).write_to(&mut out);
/// i64::MIN.write_to(&mut out);
/// out.push(' ');
/// i128::MIN.write_to(&mut out);
/// let expected = format!(
///     "0 7 {} {} -5{} {}",
///     u64::MAX,
///     u128::MAX,
///     i64::MIN,
///     i128::MIN
/// );
/// assert_eq!(out, expected);
/// ```
pub trait Text {
    /// Appends the text to `out`.
    fn write_to(&self, out: &mut String);
}

impl Text for str {
    fn write_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Text for String {
    fn write_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Text for Cow<'_, str> {
    fn write_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: Text + ?Sized> Text for &T {
    fn write_to(&self, out: &mut String) {
        (**self).write_to(out);
    }
}

impl Text for fmt::Arguments<'_> {
    fn write_to(&self, out: &mut String) {
        match self.as_str() {
            Some(s) => out.push_str(s),
            // Writing into a `String` cannot fail.
            None => {
                let _ = out.write_fmt(*self);
            }
        }
    }
}

impl Text for bool {
    fn write_to(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl Text for char {
    fn write_to(&self, out: &mut String) {
        out.push(*self);
    }
}

/// Defines a function that appends the decimal digits of an unsigned integer. Two
/// instances: `u64` for the common case (64-bit division is far cheaper inside
/// WebAssembly than 128-bit) and `u128` for the rest.
macro_rules! decimal_writer {
    ($name:ident, $t:ty, $digits:literal) => {
        /// Appends the decimal digits of `n`.
        fn $name(mut n: $t, out: &mut String) {
            let mut digits = [0u8; $digits];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            // Only ASCII digits were written.
            out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
        }
    };
}
decimal_writer!(write_u64, u64, 20);
decimal_writer!(write_u128, u128, 39);

macro_rules! unsigned_text {
    ($($t:ty),*) => {$(
        impl Text for $t {
            fn write_to(&self, out: &mut String) {
                write_u64(*self as u64, out);
            }
        }
    )*};
}
unsigned_text!(u8, u16, u32, u64, usize);

macro_rules! signed_text {
    ($($t:ty),*) => {$(
        impl Text for $t {
            fn write_to(&self, out: &mut String) {
                if *self < 0 {
                    out.push('-');
                }
                write_u64(self.unsigned_abs() as u64, out);
            }
        }
    )*};
}
signed_text!(i8, i16, i32, i64, isize);

impl Text for u128 {
    fn write_to(&self, out: &mut String) {
        write_u128(*self, out);
    }
}

impl Text for i128 {
    fn write_to(&self, out: &mut String) {
        if *self < 0 {
            out.push('-');
        }
        write_u128(self.unsigned_abs(), out);
    }
}

/// Any [`Display`] value as [`Text`], formatted straight into the batch (no `String`).
///
/// ```
/// use telltale_sdk::{Samples, display};
///
/// let mut out = Samples::new();
/// let addr: std::net::Ipv4Addr = "10.0.0.7".parse().unwrap();
/// out.sample("peer_up", 1.0).label("addr", display(addr)).label("ratio", display(0.5));
/// let s = out.iter().next().unwrap();
/// assert_eq!(s.label("addr"), Some("10.0.0.7"));
/// assert_eq!(s.label("ratio"), Some("0.5"));
/// ```
pub fn display<T: Display>(value: T) -> Displayed<T> {
    Displayed(value)
}

/// A [`Display`] value wrapped as [`Text`]; made by [`display`].
#[derive(Debug, Clone, Copy)]
pub struct Displayed<T>(pub T);

impl<T: Display> Text for Displayed<T> {
    fn write_to(&self, out: &mut String) {
        // Writing into a `String` cannot fail; a `Display` impl that reports an error
        // leaves what it wrote so far.
        let _ = write!(out, "{}", self.0);
    }
}

/// Writes `value` at the end of `text` and returns where: `(start, len)` in bytes.
fn write_span(text: &mut String, value: impl Text) -> (u32, u32) {
    let start = text.len();
    value.write_to(text);
    (offset(start), offset(text.len() - start))
}

impl Samples {
    /// An empty batch whose samples are timestamped now ([`now_ms`]).
    pub fn new() -> Samples {
        Samples::with_timestamp(now_ms())
    }

    /// An empty batch whose samples are timestamped `timestamp_ms` (milliseconds since the
    /// Unix epoch) unless a sample sets its own: for tests that compare exact output.
    pub fn with_timestamp(timestamp_ms: i64) -> Samples {
        Samples {
            text: String::new(),
            samples: Vec::new(),
            values: Vec::new(),
            timestamps: Vec::new(),
            labels: Vec::new(),
            now: timestamp_ms,
        }
    }

    /// The batch the SDK hands to `Collector::collect`: sized like the previous call's.
    pub(crate) fn for_call() -> Samples {
        let (text, samples, labels) = LAST_SIZES.with(Cell::get);
        Samples {
            text: String::with_capacity(text),
            samples: Vec::with_capacity(samples * STRIDE),
            values: Vec::with_capacity(samples),
            timestamps: Vec::with_capacity(samples),
            labels: Vec::with_capacity(labels * STRIDE),
            now: now_ms(),
        }
    }

    /// The timestamp of samples that do not set their own.
    pub fn timestamp_ms(&self) -> i64 {
        self.now
    }

    /// Starts a sample of metric `name` with `value`; add labels with
    /// [`SampleWriter::label`]. The name is written into the batch, so
    /// `format_args!("{prefix}_bytes")` costs no allocation.
    ///
    /// Names follow Prometheus' conventions, which the engine checks
    /// (`[a-zA-Z_:][a-zA-Z0-9_:]*`): `snake_case`, prefixed with what is measured, in base
    /// units (`_bytes`, `_seconds`), `_total` for counters, `_percent` for 0–100 ratios.
    /// Label names are `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__`.
    pub fn sample(&mut self, name: impl Text, value: f64) -> SampleWriter<'_> {
        let (name_start, name_len) = write_span(&mut self.text, name);
        let first_label = offset(self.labels.len() / STRIDE);
        self.samples
            .extend_from_slice(&[name_start, name_len, first_label, 0]);
        self.values.push(value);
        self.timestamps.push(self.now);
        SampleWriter { batch: self }
    }

    /// Adds a sample built with [`sample`](crate::sample) (an owned [`Sample`], e.g. from
    /// code shared with an analyzer). [`Samples::sample`] is cheaper: it allocates nothing
    /// per sample.
    pub fn push(&mut self, sample: Sample) {
        self.push_ref(&sample);
    }

    fn push_ref(&mut self, s: &Sample) {
        self.sample(&s.name, s.value)
            .labels(&s.labels)
            .at(s.timestamp_ms);
    }

    /// How many samples the batch holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The samples in the order they were written, as views into the batch: what tests
    /// look at.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SampleRef<'_>> + '_ {
        (0..self.len()).map(move |index| SampleRef { batch: self, index })
    }

    /// The samples as owned [`Sample`]s (allocates every string): for tests.
    pub fn to_vec(&self) -> Vec<Sample> {
        self.iter().map(|s| s.to_sample()).collect()
    }

    /// The batch in the contract's shape, as `collect` returns it.
    #[doc(hidden)]
    pub fn into_batch(self) -> SampleBatch {
        LAST_SIZES.with(|c| {
            c.set((
                self.text.len(),
                self.values.len(),
                self.labels.len() / STRIDE,
            ))
        });
        SampleBatch {
            text: self.text,
            samples: self.samples,
            values: self.values,
            timestamps_ms: self.timestamps,
            labels: self.labels,
        }
    }

    fn text(&self, start: u32, len: u32) -> &str {
        let start = start as usize;
        self.text
            .get(start..start.saturating_add(len as usize))
            .unwrap_or("")
    }
}

impl Extend<Sample> for Samples {
    fn extend<I: IntoIterator<Item = Sample>>(&mut self, iter: I) {
        for s in iter {
            self.push_ref(&s);
        }
    }
}

impl<'a> Extend<&'a Sample> for Samples {
    fn extend<I: IntoIterator<Item = &'a Sample>>(&mut self, iter: I) {
        for s in iter {
            self.push_ref(s);
        }
    }
}

/// Adds labels to (and sets the time of) the sample [`Samples::sample`] just started.
/// Everything is written into the batch at once; dropping the writer finishes the sample.
#[derive(Debug)]
pub struct SampleWriter<'a> {
    batch: &'a mut Samples,
}

impl SampleWriter<'_> {
    /// Adds the label `name="value"`; both are written into the batch, so an integer or
    /// a `format_args!` needs no `String` (see [`Text`]).
    ///
    /// ```
    /// use telltale_sdk::Samples;
    ///
    /// let mut out = Samples::new();
    /// let pid = 4242;
    /// out.sample("process_threads", 3.0).label("pid", pid).label("name", "nginx");
    /// let s = out.iter().next().unwrap();
    /// assert_eq!(s.labels().collect::<Vec<_>>(), [("pid", "4242"), ("name", "nginx")]);
    /// ```
    pub fn label(self, name: impl Text, value: impl Text) -> Self {
        let b = &mut *self.batch;
        let (name_start, name_len) = write_span(&mut b.text, name);
        let (value_start, value_len) = write_span(&mut b.text, value);
        b.labels
            .extend_from_slice(&[name_start, name_len, value_start, value_len]);
        // The label count is the last of the current sample's four numbers.
        if let Some(count) = b.samples.last_mut() {
            *count += 1;
        }
        self
    }

    /// Adds every label of `labels` (e.g. those of a config section).
    pub fn labels<'l>(mut self, labels: impl IntoIterator<Item = &'l Label>) -> Self {
        for l in labels {
            self = self.label(&l.name, &l.value);
        }
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch) of this sample.
    pub fn at(self, timestamp_ms: i64) -> Self {
        if let Some(t) = self.batch.timestamps.last_mut() {
            *t = timestamp_ms;
        }
        self
    }
}

/// One sample of a [`Samples`] batch, read back (see [`Samples::iter`]).
#[derive(Debug, Clone, Copy)]
pub struct SampleRef<'a> {
    batch: &'a Samples,
    index: usize,
}

impl<'a> SampleRef<'a> {
    /// The sample's four numbers: name start, name length, first label, label count.
    fn record(&self) -> [u32; 4] {
        let at = self.index * STRIDE;
        let r = &self.batch.samples[at..at + STRIDE];
        [r[0], r[1], r[2], r[3]]
    }

    /// The metric name.
    pub fn name(&self) -> &'a str {
        let [start, len, _, _] = self.record();
        self.batch.text(start, len)
    }

    /// The value.
    pub fn value(&self) -> f64 {
        self.batch.values[self.index]
    }

    /// The timestamp, milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> i64 {
        self.batch.timestamps[self.index]
    }

    /// The labels, `(name, value)`, in the order they were added.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        let [_, _, first, count] = self.record();
        let first = first as usize * STRIDE;
        let end = first.saturating_add(count as usize * STRIDE);
        batch
            .labels
            .get(first..end)
            .unwrap_or(&[])
            .chunks_exact(STRIDE)
            .map(move |l| (batch.text(l[0], l[1]), batch.text(l[2], l[3])))
    }

    /// The value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The sample as an owned [`Sample`].
    pub fn to_sample(&self) -> Sample {
        Sample {
            name: self.name().to_string(),
            labels: self
                .labels()
                .map(|(name, value)| Label {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            value: self.value(),
            timestamp_ms: self.timestamp_ms(),
        }
    }
}
