//! What a run prints: a text summary, and an SVG plot of latency and throughput.

use super::BenchResult;

/// An SVG with latency percentiles per operation type (left) and throughput per second
/// (right).
pub fn svg(r: &BenchResult) -> String {
    let mut s = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"320\" font-family=\"sans-serif\" font-size=\"11\">\n",
    );
    s.push_str(&format!(
        "<text x=\"10\" y=\"16\" font-size=\"13\">hyperdex bench: workload {} ({}), {} clients x window {}, {:.0} ops/s</text>\n",
        r.workload, r.distribution, r.clients, r.window, r.ops_per_sec
    ));
    let max_lat = r
        .per_op
        .values()
        .map(|o| o.p999_us)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (x0, y0, h) = (40.0, 290.0, 240.0);
    let colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2"];
    for (i, (name, o)) in r.per_op.iter().enumerate() {
        let gx = x0 + i as f64 * 90.0;
        for (j, v) in [o.p50_us, o.p95_us, o.p99_us, o.p999_us].iter().enumerate() {
            let bh = h * (*v as f64) / max_lat;
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"18\" height=\"{:.1}\" fill=\"{}\"/>\n",
                gx + j as f64 * 20.0,
                y0 - bh,
                bh,
                colors[j]
            ));
        }
        s.push_str(&format!("<text x=\"{gx:.1}\" y=\"305\">{name}</text>\n"));
    }
    s.push_str(&format!(
        "<text x=\"{x0}\" y=\"40\">latency p50/p95/p99/p99.9 (max {:.0} us)</text>\n",
        max_lat
    ));
    let (px, pw) = (480.0, 320.0);
    let max_t = r.timeline.iter().copied().max().unwrap_or(1).max(1) as f64;
    let n = r.timeline.len().max(2) as f64 - 1.0;
    let points: Vec<String> = r
        .timeline
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                px + pw * i as f64 / n,
                y0 - h * *v as f64 / max_t
            )
        })
        .collect();
    s.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#4c72b0\" stroke-width=\"2\" points=\"{}\"/>\n",
        points.join(" ")
    ));
    s.push_str(&format!(
        "<text x=\"{px}\" y=\"40\">throughput per second (max {max_t:.0})</text>\n"
    ));
    s.push_str(&format!(
        "<line x1=\"{px}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>\n",
        px + pw
    ));
    s.push_str("</svg>\n");
    s
}

/// One line per operation type.
pub fn summary(r: &BenchResult) -> String {
    let mut out = format!(
        "workload {} ({}) clients={} window={} records={} (loaded in {:.2} s): {} ops, {} errors in {:.2} s = {:.0} ops/s\n",
        r.workload, r.distribution, r.clients, r.window, r.records, r.load_seconds, r.ops, r.errors, r.seconds, r.ops_per_sec
    );
    for (name, o) in &r.per_op {
        out.push_str(&format!(
            "  {name:<10} {:>8} ops  p50 {:>7} us  p95 {:>7} us  p99 {:>7} us  p99.9 {:>7} us\n",
            o.count, o.p50_us, o.p95_us, o.p99_us, o.p999_us
        ));
    }
    if let (Some(load), Some(run)) = (r.disk_after_load, r.disk_after_run) {
        out.push_str(&format!(
            "  data on disk (every server): {:.1} MB after the load, {:.1} MB after the run\n",
            load as f64 / 1e6,
            run as f64 / 1e6
        ));
    }
    out
}
