//! Loss and accuracy curves of a training run, as an SVG picture.

use crate::train::TrainReport;
use plotters::prelude::*;
use std::io;
use std::path::Path;

/// Colour of the training-set curves.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
/// Colour of the validation-set curves.
const VALIDATION: RGBColor = RGBColor(214, 39, 40);

type Series = Vec<(f64, f64)>;

impl TrainReport {
    /// The loss (left) and accuracy (right) per epoch, training set in blue
    /// and validation set (if any) in red, as an SVG document of
    /// `width` × `height` pixels.
    ///
    /// # Errors
    /// If no epoch ran, or drawing fails.
    pub fn svg(&self, width: u32, height: u32) -> io::Result<String> {
        if self.epochs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no epochs to plot",
            ));
        }
        let pick = |f: &dyn Fn(&crate::EpochReport) -> Option<f64>| -> Series {
            self.epochs
                .iter()
                .filter_map(|e| f(e).filter(|v| v.is_finite()).map(|v| (e.epoch as f64, v)))
                .collect()
        };
        let loss = pick(&|e| Some(e.loss));
        let val_loss = pick(&|e| e.val_loss);
        let acc = pick(&|e| Some(100.0 * e.accuracy));
        let val_acc = pick(&|e| e.val_accuracy.map(|a| 100.0 * a));
        let first = self.epochs[0].epoch as f64;
        let last = self.epochs[self.epochs.len() - 1].epoch as f64;
        let x_range = first..last.max(first + 1.0);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            let draw = |e: DrawingAreaErrorKind<_>| io::Error::other(e.to_string());
            root.fill(&WHITE).map_err(draw)?;
            let (left, right) = root.split_horizontally(width / 2);
            let loss_max = loss
                .iter()
                .chain(&val_loss)
                .map(|p| p.1)
                .fold(0.0f64, f64::max);
            panel(
                &left,
                "loss",
                "mean loss",
                x_range.clone(),
                0.0..(loss_max * 1.05).max(1e-12),
                [(&loss, "training"), (&val_loss, "validation")],
                SeriesLabelPosition::UpperRight,
            )
            .map_err(draw)?;
            panel(
                &right,
                "accuracy",
                "accuracy (%)",
                x_range,
                0.0..100.0,
                [(&acc, "training"), (&val_acc, "validation")],
                SeriesLabelPosition::LowerRight,
            )
            .map_err(draw)?;
            root.present().map_err(draw)?;
        }
        Ok(svg)
    }

    /// Writes [`svg`](TrainReport::svg) at 960 × 400 pixels to `path`
    /// (e.g. `target/loss.svg`).
    ///
    /// # Errors
    /// If no epoch ran or the file cannot be written; the error names the path.
    pub fn plot_svg(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let svg = self.svg(960, 400).map_err(named)?;
        std::fs::write(path, svg).map_err(named)
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    series: [(&Series, &str); 2],
    legend: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for ((points, label), colour) in series.into_iter().zip([TRAIN, VALIDATION]) {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::train::{EpochReport, TrainReport};
    use std::time::Duration;

    #[test]
    fn svg_has_both_panels_and_curves() {
        let epochs = (1..=20)
            .map(|e| EpochReport {
                epoch: e,
                loss: 2.0 / e as f64,
                accuracy: 1.0 - 0.5 / e as f64,
                val_loss: Some(2.2 / e as f64),
                val_accuracy: Some(1.0 - 0.6 / e as f64),
                learning_rate: None,
                improved: true,
                duration: Duration::ZERO,
            })
            .collect();
        let report = TrainReport {
            epochs,
            ..Default::default()
        };
        let svg = report.svg(800, 300).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in ["loss", "accuracy", "epoch", "training", "validation"] {
            assert!(svg.contains(text), "no `{text}` in the picture");
        }
        // Four curves (2 panels × training/validation) plus legend strokes.
        assert!(svg.matches("<polyline").count() >= 4);
        assert!(TrainReport::default().svg(10, 10).is_err());
        let e = TrainReport::default()
            .plot_svg("/nonexistent/x.svg")
            .unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/x.svg: "), "{e}");
    }
}
