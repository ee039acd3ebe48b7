pub mod collect;
pub mod dns;
pub mod exposition;
pub mod flags;
pub mod flows;
pub mod labels;
pub mod metrics;
pub mod series;
