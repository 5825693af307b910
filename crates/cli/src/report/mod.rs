//! Building blocks of the HTML reports (`compare` today): inline SVG charts.

pub mod svg;
