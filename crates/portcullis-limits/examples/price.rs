//! Prices a call from the built-in table:
//! `cargo run -p portcullis-limits --example price -- MODEL PROMPT [CACHED] [COMPLETION]`,
//! or with no arguments lists the table.

use portcullis_limits::{Pricing, format_usd};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pricing = Pricing::builtin();
    let Some(model) = args.first() else {
        println!(
            "OpenAI list prices as of {} (USD per million tokens)",
            pricing.date
        );
        println!(
            "{:<30} {:>8} {:>8} {:>8}",
            "model", "input", "cached", "output"
        );
        for (m, p) in pricing.models() {
            let cached = p.cached_input.unwrap_or(p.input);
            println!("{m:<30} {:>8} {cached:>8} {:>8}", p.input, p.output);
        }
        return;
    };
    let n = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let (prompt, cached, completion) = (n(1), n(2), n(3));
    match (
        pricing.lookup(model),
        pricing.cost(model, prompt, cached, completion),
    ) {
        (listed, Some(cost)) => {
            let how = if listed.is_some() {
                "listed"
            } else {
                "unknown: default price"
            };
            println!(
                "{model} ({how}): {prompt} prompt ({cached} cached) + {completion} completion = {}",
                format_usd(cost)
            );
            if let Some(worst) = pricing.worst_case_cost(model, prompt, completion) {
                println!("worst case at admission: {}", format_usd(worst));
            }
        }
        (_, None) => println!("{model}: not priced"),
    }
}
