//! Scores texts from argv with the shipped classifier (for exploring thresholds).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    let m = portcullis_moderation::classifier::Model::builtin();
    for t in std::env::args().skip(1) {
        let s = m.score(&t);
        println!("{:.3} (threshold {:.2}) {t}", s.flagged, m.threshold);
    }
}
