//! Cumulative counts over time as an SVG line chart: the lab's recoveries by strategy, and a
//! campaign's caps and recoveries in `capguard report --chart`.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// Draws one step line per series, each the running count of its events at their times (hours
/// after the campaign was sent), to `path` as SVG.
pub fn cumulative(series: &mut [(String, Vec<f64>)], caption: &str, y_desc: &str, path: &Path) -> anyhow::Result<()> {
    for (_, times) in series.iter_mut() {
        times.sort_by(f64::total_cmp);
    }
    let hours = series.iter().flat_map(|(_, t)| t.last().copied()).fold(24.0_f64, f64::max).ceil();
    let most = series.iter().map(|(_, t)| t.len()).max().unwrap_or(0).max(1) as f64;

    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..hours, 0.0..most * 1.05)?;
    chart.configure_mesh().x_desc("hours after the campaign was sent").y_desc(y_desc).draw()?;
    for (index, (name, times)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let mut points = vec![(0.0, 0.0)];
        for (count, at) in times.iter().enumerate() {
            points.push((*at, count as f64));
            points.push((*at, count as f64 + 1.0));
        }
        points.push((hours, times.len() as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
