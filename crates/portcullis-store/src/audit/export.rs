//! Records as CSV (one header row, RFC 4180 quoting) or JSON lines (one object per record),
//! for `audit query` and `audit export`.

use super::AuditRecord;

/// The CSV columns, in order.
pub const CSV_HEADER: &str = "seq_id,replica,seq,request_id,time_ms,key_id,user,team,model,route,\
status,outcome,error_code,prompt_tokens,completion_tokens,cached_tokens,cost_micros,\
usage_estimated,latency_ms,upstream_ms,stream,verdicts,digest,model_served,input_hmac,output_hmac";

/// One record as a CSV row (no newline).
pub fn csv_row(r: &AuditRecord) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let fields = [
        r.seq_id.clone(),
        r.replica.clone(),
        r.seq.to_string(),
        r.request_id.clone(),
        r.time.to_string(),
        opt(&r.key_id),
        opt(&r.user),
        opt(&r.team),
        opt(&r.model),
        opt(&r.route),
        r.status.to_string(),
        r.outcome.clone(),
        opt(&r.error_code),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.cached_tokens.to_string(),
        r.cost_micros.to_string(),
        r.usage_estimated.to_string(),
        r.latency_ms.to_string(),
        r.upstream_ms.map(|u| u.to_string()).unwrap_or_default(),
        r.stream.to_string(),
        r.verdicts.to_string(),
        r.digest.clone(),
        opt(&r.model_served),
        opt(&r.input_hmac),
        opt(&r.output_hmac),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// A field quoted when it holds a comma, a quote or a line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_quote_what_needs_it_and_match_the_header() {
        let r = AuditRecord {
            request_id: "r1".into(),
            user: Some("o'brien, pat".into()),
            verdicts: serde_json::json!([{"guard": "pii", "action": "flag"}]),
            status: 200,
            ..AuditRecord::default()
        };
        let row = csv_row(&r);
        assert!(row.contains("\"o'brien, pat\""), "{row}");
        assert!(
            row.contains("\"[{\"\"action\"\":\"\"flag\"\",\"\"guard\"\":\"\"pii\"\"}]\""),
            "{row}"
        );
        // Same number of columns as the header once quoted commas are skipped.
        let mut cols = 1;
        let mut quoted = false;
        for c in row.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => cols += 1,
                _ => {}
            }
        }
        assert_eq!(cols, CSV_HEADER.split(',').count());
    }
}
