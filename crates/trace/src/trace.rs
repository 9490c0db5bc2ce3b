//! Allocation traces: a program's requests as a list of events that any allocator can
//! replay, in a small text format.
//!
//! One event per line; `#` starts a comment line:
//!
//! ```text
//! # heapkit trace
//! a 1 24 8      alloc: id, size, align
//! r 1 48        realloc: id, new size (the alignment stays)
//! f 1           free: id
//! ```
//!
//! A line may end with a thread tag, `t3`: the thread (numbered from 1 in order of first
//! appearance) that made the call, in traces recorded from multi-threaded programs
//! (`HEAPKIT_TRACE`, heapkit-malloc). The lab replays events in their recorded order.
//!
//! Ids name blocks; an id may be used again once its block is freed. Sizes are non-zero
//! and alignments powers of two, as `Layout` requires. [`Trace::parse`] checks all of this
//! (and that every free or realloc names a live block), so replaying a parsed trace
//! never frees a block twice. Ids are renumbered densely on parsing, so replay looks
//! blocks up by index.
//!
//! ```
//! use heapkit_trace::trace::{Event, Trace};
//!
//! let trace = Trace::parse("a 7 24 8\nr 7 100\nf 7\n").unwrap();
//! assert_eq!(trace.events()[1], Event::Realloc { slot: 0, size: 100 });
//! assert_eq!(trace.summary().peak_live, 100);
//! assert_eq!(Trace::parse(&trace.to_text()).unwrap(), trace);
//! assert!(Trace::parse("f 1\n").unwrap_err().to_string().contains("line 1"));
//! ```

use std::alloc::Layout;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// One request. `slot` is the block's dense index, below [`Trace::slots`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new block of `size` bytes aligned to `align` in `slot`, which is empty.
    Alloc {
        slot: u32,
        size: usize,
        align: usize,
    },
    /// The block in `slot` resized to `size` bytes, keeping its alignment.
    Realloc { slot: u32, size: usize },
    /// The block in `slot` freed.
    Free { slot: u32 },
}

/// A validated sequence of [`Event`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    events: Vec<Event>,
    slots: u32,
    /// Each event's thread tag, or empty when the trace has none.
    threads: Vec<u32>,
}

/// Why a trace was refused, with the line (1-based) it was found on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line number, or the event's 1-based index for traces built in code.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TraceError {}

/// What a trace asks of an allocator, for choosing which allocators can run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Events in the trace.
    pub events: usize,
    /// Allocations (each realloc counts as one more when it moves, which replay decides).
    pub allocs: usize,
    /// Largest requested size, including realloc targets.
    pub max_size: usize,
    /// Largest requested alignment.
    pub max_align: usize,
    /// The one layout every allocation uses, when the trace has a single layout and no
    /// reallocs (what a fixed-size pool can serve).
    pub fixed_layout: Option<Layout>,
    /// Most requested bytes live at once.
    pub peak_live: usize,
    /// Whether every free and realloc is of the newest live block: a stack discipline,
    /// which a bump region serves in bounded memory (its other frees are no-ops).
    pub newest_first: bool,
}

/// Builds a [`Trace`] from events named by the caller's ids, checking each as it comes.
#[derive(Debug, Default)]
pub struct TraceBuilder {
    trace: Trace,
    /// Caller's id → (slot, layout) of its live block.
    live: HashMap<u64, (u32, Layout)>,
    /// Slots whose blocks were freed, reused for new ids so slots stay few.
    free_slots: Vec<u32>,
    /// The thread tag of the events added from now on (0: none yet).
    thread: u32,
}

impl TraceBuilder {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events so far.
    pub fn len(&self) -> usize {
        self.trace.events.len()
    }

    /// Tags the events added from now on with `thread` (from 1). Once one event is
    /// tagged, every event is: the earlier ones get thread 1.
    pub fn on_thread(&mut self, thread: u32) {
        self.thread = thread.max(1);
    }

    fn push(&mut self, event: Event) {
        self.trace.events.push(event);
        if self.thread > 0 {
            let events = self.trace.events.len();
            self.trace.threads.resize(events - 1, 1);
            self.trace.threads.push(self.thread);
        }
    }

    /// Whether no event was added yet.
    pub fn is_empty(&self) -> bool {
        self.trace.events.is_empty()
    }

    /// A new block `id` of `size` bytes aligned to `align`.
    ///
    /// # Errors
    ///
    /// When `id` is live, `size` is zero or the layout is invalid.
    pub fn alloc(&mut self, id: u64, size: usize, align: usize) -> Result<(), String> {
        if size == 0 {
            return Err("zero-sized allocation".into());
        }
        let layout = Layout::from_size_align(size, align)
            .map_err(|_| format!("invalid layout: size {size}, align {align}"))?;
        if self.live.contains_key(&id) {
            return Err(format!("id {id} allocated while live"));
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.trace.slots += 1;
            self.trace.slots - 1
        });
        self.live.insert(id, (slot, layout));
        self.push(Event::Alloc { slot, size, align });
        Ok(())
    }

    /// Block `id` resized to `size` bytes.
    ///
    /// # Errors
    ///
    /// When `id` is not live or `size` is zero or too large for its alignment.
    pub fn realloc(&mut self, id: u64, size: usize) -> Result<(), String> {
        if size == 0 {
            return Err("realloc to zero bytes".into());
        }
        let (slot, layout) = self
            .live
            .get_mut(&id)
            .ok_or_else(|| format!("realloc of id {id}, which is not live"))?;
        *layout = Layout::from_size_align(size, layout.align())
            .map_err(|_| format!("invalid layout: size {size}, align {}", layout.align()))?;
        let slot = *slot;
        self.push(Event::Realloc { slot, size });
        Ok(())
    }

    /// Block `id` freed.
    ///
    /// # Errors
    ///
    /// When `id` is not live.
    pub fn free(&mut self, id: u64) -> Result<(), String> {
        let (slot, _) = self
            .live
            .remove(&id)
            .ok_or_else(|| format!("free of id {id}, which is not live"))?;
        self.free_slots.push(slot);
        self.push(Event::Free { slot });
        Ok(())
    }

    /// Frees every live block, in id order (so the result is deterministic).
    pub fn free_all(&mut self) {
        let mut ids: Vec<u64> = self.live.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.free(id).expect("live id");
        }
    }

    /// The trace built.
    pub fn finish(self) -> Trace {
        self.trace
    }
}

impl Trace {
    /// The events in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Number of slots: one more than the largest slot any event names.
    pub fn slots(&self) -> usize {
        self.slots as usize
    }

    /// The thread tag of each event (one per event), or an empty slice when the trace
    /// has none.
    pub fn threads(&self) -> &[u32] {
        &self.threads
    }

    /// The first `events` events, then frees of every block still live (a prefix of a
    /// long recording that is a complete trace itself).
    #[must_use]
    pub fn truncated(&self, events: usize) -> Self {
        let mut builder = TraceBuilder::new();
        for (index, event) in self.events.iter().take(events).enumerate() {
            if let Some(&thread) = self.threads.get(index) {
                builder.on_thread(thread);
            }
            let result = match *event {
                Event::Alloc { slot, size, align } => builder.alloc(u64::from(slot), size, align),
                Event::Realloc { slot, size } => builder.realloc(u64::from(slot), size),
                Event::Free { slot } => builder.free(u64::from(slot)),
            };
            result.expect("a prefix of a valid trace is valid");
        }
        builder.free_all();
        builder.finish()
    }

    /// Parses the text format (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// A [`TraceError`] naming the first bad line: unknown event, missing or malformed
    /// numbers, zero sizes, invalid alignments, or a free or realloc of an id that is not
    /// live, or an alloc of one that is.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut builder = TraceBuilder::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let fail = |message: String| TraceError {
                line: line_no,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields: Vec<&str> = line.split_ascii_whitespace().collect();
            if let Some(tag) = fields.last().and_then(|field| field.strip_prefix('t')) {
                let thread = tag
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| fail(format!("bad thread tag `t{tag}` (t1, t2, …)")))?;
                builder.on_thread(thread);
                fields.pop();
            }
            let mut fields = fields.into_iter();
            let kind = fields.next().unwrap_or_default();
            let mut number = |what: &str| -> Result<u64, TraceError> {
                let field = fields
                    .next()
                    .ok_or_else(|| fail(format!("missing {what} in `{line}`")))?;
                field
                    .parse()
                    .map_err(|_| fail(format!("{what} `{field}` is not a number")))
            };
            let result = match kind {
                "a" => {
                    let id = number("id")?;
                    let size = number("size")?;
                    let align = number("align")?;
                    builder.alloc(id, to_usize(size), to_usize(align))
                }
                "r" => {
                    let id = number("id")?;
                    let size = number("size")?;
                    builder.realloc(id, to_usize(size))
                }
                "f" => {
                    let id = number("id")?;
                    builder.free(id)
                }
                other => Err(format!("unknown event `{other}` (expected a, r or f)")),
            };
            result.map_err(fail)?;
            if let Some(extra) = fields.next() {
                return Err(fail(format!("unexpected `{extra}` after the event")));
            }
        }
        Ok(builder.finish())
    }

    /// The trace in the text format, slots written as ids.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.events.len() * 12 + 32);
        text.push_str("# heapkit trace: a id size align / r id size / f id [t thread]\n");
        for (index, event) in self.events.iter().enumerate() {
            // Writing to a String cannot fail.
            let _ = match *event {
                Event::Alloc { slot, size, align } => write!(text, "a {slot} {size} {align}"),
                Event::Realloc { slot, size } => write!(text, "r {slot} {size}"),
                Event::Free { slot } => write!(text, "f {slot}"),
            };
            if let Some(thread) = self.threads.get(index) {
                let _ = write!(text, " t{thread}");
            }
            text.push('\n');
        }
        text
    }

    /// What the trace asks of an allocator.
    pub fn summary(&self) -> Summary {
        let mut sizes = vec![0usize; self.slots()];
        let mut live = 0usize;
        let mut summary = Summary {
            events: self.events.len(),
            allocs: 0,
            max_size: 0,
            max_align: 1,
            fixed_layout: None,
            peak_live: 0,
            newest_first: true,
        };
        let mut stack: Vec<u32> = Vec::new();
        let mut layouts = None;
        let mut single_layout = true;
        for event in &self.events {
            match *event {
                Event::Alloc { slot, size, align } => {
                    summary.allocs += 1;
                    summary.max_align = summary.max_align.max(align);
                    summary.max_size = summary.max_size.max(size);
                    let layout = (size, align);
                    single_layout &= *layouts.get_or_insert(layout) == layout;
                    sizes[slot as usize] = size;
                    live += size;
                    stack.push(slot);
                }
                Event::Realloc { slot, size } => {
                    summary.newest_first &= stack.last() == Some(&slot);
                    single_layout = false;
                    summary.max_size = summary.max_size.max(size);
                    live = live - sizes[slot as usize] + size;
                    sizes[slot as usize] = size;
                }
                Event::Free { slot } => {
                    live -= sizes[slot as usize];
                    summary.newest_first &= stack.pop() == Some(slot);
                }
            }
            summary.peak_live = summary.peak_live.max(live);
        }
        if single_layout {
            summary.fixed_layout =
                layouts.and_then(|(size, align)| Layout::from_size_align(size, align).ok());
        }
        summary
    }

    /// The layouts of the trace's allocations in order, for sampling its size mix.
    pub fn alloc_layouts(&self) -> Vec<Layout> {
        self.events
            .iter()
            .filter_map(|event| match *event {
                Event::Alloc { size, align, .. } => Layout::from_size_align(size, align).ok(),
                _ => None,
            })
            .collect()
    }
}

/// Sizes beyond the address space saturate, and `Layout` then refuses them.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_ids_are_renumbered_densely() {
        let text =
            "# a comment\n\na 1000 24 8\na 5 16 16\nr 1000 64\nf 5\na 77 8 8\nf 1000\nf 77\n";
        let trace = Trace::parse(text).unwrap();
        assert_eq!(trace.slots(), 2, "the freed slot 1 is reused for id 77");
        assert_eq!(
            trace.events(),
            &[
                Event::Alloc {
                    slot: 0,
                    size: 24,
                    align: 8
                },
                Event::Alloc {
                    slot: 1,
                    size: 16,
                    align: 16
                },
                Event::Realloc { slot: 0, size: 64 },
                Event::Free { slot: 1 },
                Event::Alloc {
                    slot: 1,
                    size: 8,
                    align: 8
                },
                Event::Free { slot: 0 },
                Event::Free { slot: 1 },
            ]
        );
        assert_eq!(Trace::parse(&trace.to_text()).unwrap(), trace);
        let summary = trace.summary();
        assert_eq!(summary.peak_live, 80);
        assert_eq!(summary.max_size, 64);
        assert_eq!(summary.max_align, 16);
        assert_eq!(summary.allocs, 3);
        assert_eq!(summary.fixed_layout, None);
    }

    #[test]
    fn a_trace_of_one_layout_is_fixed() {
        let trace = Trace::parse("a 1 64 8\na 2 64 8\nf 1\nf 2\n").unwrap();
        assert_eq!(
            trace.summary().fixed_layout,
            Some(Layout::from_size_align(64, 8).unwrap())
        );
    }

    #[test]
    fn bad_traces_name_the_line_and_the_fault() {
        let cases = [
            ("f 1\n", "line 1", "not live"),
            ("a 1 8 8\na 1 8 8\n", "line 2", "while live"),
            ("a 1 0 8\n", "line 1", "zero-sized"),
            ("a 1 8 3\n", "line 1", "invalid layout"),
            ("a 1 8\n", "line 1", "missing align"),
            ("a 1 x 8\n", "line 1", "`x` is not a number"),
            ("a 1 8 8\nr 2 16\n", "line 2", "not live"),
            ("a 1 8 8\nr 1 0\n", "line 2", "zero bytes"),
            ("# c\nq 1\n", "line 2", "unknown event `q`"),
            ("a 1 8 8 9\n", "line 1", "unexpected `9`"),
            ("a 1 8 8 t0\n", "line 1", "bad thread tag `t0`"),
            ("a 1 8 8 tx\n", "line 1", "bad thread tag"),
        ];
        for (text, line, fault) in cases {
            let error = Trace::parse(text).unwrap_err().to_string();
            assert!(
                error.contains(line) && error.contains(fault),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn thread_tags_round_trip_and_untagged_events_before_them_get_thread_1() {
        let trace = Trace::parse("a 1 8 8\na 2 16 8 t2\nf 1 t2\nr 2 32 t3\nf 2 t1\n").unwrap();
        assert_eq!(trace.threads(), &[1, 2, 2, 3, 1]);
        assert_eq!(Trace::parse(&trace.to_text()).unwrap(), trace);
        assert!(Trace::parse("a 1 8 8\nf 1\n").unwrap().threads().is_empty());
    }

    #[test]
    fn a_truncated_trace_frees_what_its_prefix_left_live() {
        let trace =
            Trace::parse("a 1 8 8 t1\na 2 16 8 t2\nf 1 t2\na 3 24 8 t1\nf 2\nf 3\n").unwrap();
        let prefix = trace.truncated(2);
        assert_eq!(prefix.events().len(), 4, "two events, then two frees");
        assert_eq!(prefix.threads()[..2], [1, 2]);
        assert_eq!(prefix.summary().peak_live, 24);
        assert_eq!(Trace::parse(&prefix.to_text()).unwrap(), prefix);
        assert_eq!(trace.truncated(100), trace.truncated(6));
    }
}
