//! Cuts a long recorded trace to its first N events (then frees what they left live), so
//! it is small enough to ship: `cargo run -p heapkit-trace --example truncate -- IN OUT N`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, events] = args.as_slice() else {
        return Err("usage: truncate IN OUT EVENTS".into());
    };
    let trace = heapkit_trace::trace::Trace::parse(&std::fs::read_to_string(input)?)?;
    let prefix = trace.truncated(events.parse()?);
    std::fs::write(output, prefix.to_text())?;
    println!(
        "{} of {} events kept ({} with the final frees), peak live {} bytes",
        events,
        trace.events().len(),
        prefix.events().len(),
        prefix.summary().peak_live
    );
    Ok(())
}
