//! The report's plots, drawn with plotters as SVG: text is set by the
//! viewer (a browser, GitHub), so no font file ships with misfit and none is
//! needed at build time (plotters' bitmap text needs font-kit and the
//! system's fontconfig), and the plots stay sharp at any zoom.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colours of the lines of up to 10 classes (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A class's colour.
pub fn colour(i: usize) -> RGBColor {
    if i < PALETTE.len() {
        PALETTE[i]
    } else {
        let g = (40 + (i * 37) % 180) as u8;
        RGBColor(g, g / 2, 255 - g)
    }
}

/// One point of the scatter: a class's miss rate and attack success, each with its 95% interval.
pub struct ScatterPoint {
    pub label: String,
    pub x: (f64, f64, f64),
    pub y: (f64, f64, f64),
}

fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(|e| e.to_string()).and_then(|_| draw(&root));
        drawn.and_then(|_| root.present().map_err(|e| e.to_string())).expect("drawing into a string cannot fail");
    }
    s
}

/// The upper end of an axis holding `max` (a rate): a little room above, at most 1.
fn rate_axis(max: f64) -> f64 {
    ((max * 1.1).max(0.05) * 20.0).ceil().min(20.0) / 20.0
}

/// Miss rate (x) against attack success (y) per class, with 95% interval
/// bars and class names; `title` says which attack and the correlation.
pub fn scatter(points: &[ScatterPoint], x_desc: &str, y_desc: &str, title: &str) -> String {
    let xmax = rate_axis(points.iter().map(|p| p.x.2).fold(0.0, f64::max));
    let ymax = rate_axis(points.iter().map(|p| p.y.2).fold(0.0, f64::max));
    svg((530, 400), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, p) in points.iter().enumerate() {
            let c = colour(i);
            let bars = [((p.x.1, p.y.0), (p.x.2, p.y.0)), ((p.x.0, p.y.1), (p.x.0, p.y.2))];
            for (a, b) in bars {
                chart.draw_series(LineSeries::new([a, b], c.mix(0.5).stroke_width(1))).map_err(|e| e.to_string())?;
            }
            chart.draw_series([Circle::new((p.x.0, p.y.0), 5, c.filled())]).map_err(|e| e.to_string())?;
        }
        // One label per spot: classes at the same point share it.
        let mut spots: Vec<((f64, f64), Vec<&str>)> = Vec::new();
        for p in points {
            match spots.iter_mut().find(|(xy, _)| *xy == (p.x.0, p.y.0)) {
                Some((_, names)) => names.push(&p.label),
                None => spots.push(((p.x.0, p.y.0), vec![&p.label])),
            }
        }
        for (xy, names) in spots {
            let label = match names.len() {
                1..=2 => names.join(", "),
                n => format!("{}, {} and {} more", names[0], names[1], n - 2),
            };
            // Right of the point, or left of it in the right third (so it stays inside).
            let style = ("sans-serif", 13).into_font().color(&BLACK);
            let (text, style) = match xy.0 > 0.66 * xmax {
                true => (format!("{label} "), style.pos(Pos::new(HPos::Right, VPos::Top))),
                false => (format!(" {label}"), style),
            };
            chart.draw_series([Text::new(text, xy, style)]).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The test confusion matrix: rows the given class, columns the predicted,
/// each cell shaded by its share of the row and labelled with its count.
pub fn confusion(names: &[String], counts: &[Vec<i64>]) -> String {
    let k = names.len();
    let cell = if k <= 10 { 44 } else { (440 / k.max(1)).max(12) } as i32;
    let left = 120;
    let top = 40;
    let size = ((left + cell * k as i32 + 20) as u32, (top + cell * k as i32 + 110) as u32);
    svg(size, |root| {
        let font = ("sans-serif", 12).into_font();
        root.draw(&Text::new("predicted ->", (left, 12), ("sans-serif", 13).into_font())).map_err(|e| e.to_string())?;
        for (a, row) in counts.iter().enumerate() {
            let total: i64 = row.iter().sum::<i64>().max(1);
            let y = top + a as i32 * cell;
            root.draw(&Text::new(names[a].clone(), (4, y + cell / 2 - 6), font.clone())).map_err(|e| e.to_string())?;
            for (b, &n) in row.iter().enumerate() {
                let x = left + b as i32 * cell;
                let share = n as f64 / total as f64;
                let base = if a == b { RGBColor(44, 160, 44) } else { RGBColor(214, 39, 40) };
                let fill = base.mix(if n == 0 { 0.0 } else { 0.12 + 0.88 * share.sqrt() });
                root.draw(&Rectangle::new([(x, y), (x + cell - 1, y + cell - 1)], fill.filled()))
                    .map_err(|e| e.to_string())?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell - 1, y + cell - 1)],
                    RGBColor(220, 220, 220).stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
                if n > 0 && cell >= 24 {
                    let colour = if share > 0.5 { WHITE } else { BLACK };
                    let t = Text::new(n.to_string(), (x + 4, y + cell / 2 - 6), font.clone().color(&colour));
                    root.draw(&t).map_err(|e| e.to_string())?;
                }
            }
        }
        // Column names, rotated, under the grid.
        for (b, name) in names.iter().enumerate() {
            let x = left + b as i32 * cell + cell / 2 - 6;
            let style = font.clone().transform(FontTransform::Rotate90);
            root.draw(&Text::new(name.clone(), (x, top + k as i32 * cell + 6), style)).map_err(|e| e.to_string())?;
        }
        root.draw(&Text::new("given (rows)", (4, 12), ("sans-serif", 13).into_font())).map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Attack success (y) against budget (x) per class, one line each.
pub fn budgets(series: &[(String, Vec<(f64, f64)>)], x_desc: &str, title: &str) -> String {
    let xmax = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.0)).fold(0.0, f64::max) * 1.05;
    svg((530, 400), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .margin_right(130)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..xmax.max(1e-6), 0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("attack success (share of attacked test images)")
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (_, points)) in series.iter().enumerate() {
            let c = colour(i);
            chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2))).map_err(|e| e.to_string())?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(|e| e.to_string())?;
        }
        // The legend, in the right margin: a line of the class's colour and its name.
        let (w, _) = root.dim_in_pixel();
        for (i, (name, _)) in series.iter().enumerate() {
            let (x, y) = (w as i32 - 122, 44 + 17 * i as i32);
            let c = colour(i);
            root.draw(&PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3))).map_err(|e| e.to_string())?;
            root.draw(&Text::new(name.clone(), (x + 24, y - 6), ("sans-serif", 12).into_font()))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
