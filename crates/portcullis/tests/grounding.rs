//! Groundedness end to end: retrieved documents travel in the `portcullis` extension, reach
//! the model as spotlighted document messages (the extension itself never does), and an
//! answer they do not support is annotated, flagged or refused with its unsupported claims.

mod common;

use common::{Gateway, Mock};
use serde_json::{Value, json};

const DOC: &str = "Bob Barker hosted The Price Is Right for 35 years and retired in 2007.";
const GROUNDED: &str = "Barker hosted the show for 35 years. He retired in 2007.";
const UNGROUNDED: &str = "Barker hosted the show for 35 years. He then moved to Paris in 2011.";

fn rag_body(answer: &str) -> Value {
    json!({"model": "gpt-4o-mini",
           "messages": [{"role": "system", "content": "Answer only from the documents."},
                        {"role": "user", "content": format!("MOCK_SAY: {answer}")}],
           "portcullis": {"documents": [DOC]}})
}

fn chats(mock: &Mock) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|r| r["path"] == "/v1/chat/completions")
        .map(|r| r["body"].clone())
        .collect()
}

#[test]
fn an_ungrounded_answer_is_flagged_with_its_claims_and_the_extension_stays_home() {
    let mock = Mock::start();
    let mut gw = Gateway::start(Some(&mock.url), Some("[grounding]\naction = \"flag\"\n"));

    let ok = gw.post("/v1/chat/completions", &gw.key, &rag_body(GROUNDED));
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["x-portcullis-grounding"].to_str().unwrap(),
        "1.00; unsupported=0"
    );
    let bad = gw.post("/v1/chat/completions", &gw.key, &rag_body(UNGROUNDED));
    assert_eq!(bad.status(), 200, "flag lets the answer through");
    let header = bad.headers()["x-portcullis-grounding"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.ends_with("; unsupported=1"), "{header}");
    let body: Value = bad.json().unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], UNGROUNDED);

    // The provider saw the document as a spotlighted message, and never the extension.
    let sent = chats(&mock);
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert!(s.get("portcullis").is_none(), "{s}");
        let text = s.to_string();
        assert!(
            text.contains("retired in 2007"),
            "the document reaches the model: {s}"
        );
    }
    let doc_msg = sent[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["content"]
                .as_str()
                .is_some_and(|c| c.contains("Bob Barker hosted"))
        })
        .unwrap();
    assert_eq!(doc_msg["role"], "user");
    assert_ne!(doc_msg["content"], DOC, "wrapped in a boundary: {doc_msg}");

    // No documents: nothing to score, no header.
    let plain = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", "hello"),
    );
    assert!(plain.headers().get("x-portcullis-grounding").is_none());

    gw.stop();
    let out = gw.cli(&["audit", "query", "--json"]);
    let flagged: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.to_string().contains("unsupported_claim"))
        .collect();
    assert_eq!(flagged.len(), 1, "{out}");
    let record = flagged[0].to_string();
    assert!(
        record.contains("Paris, 2011"),
        "the claim's missing items: {record}"
    );
    let span = format!("\"span\":{{\"end\":{},\"start\":37}}", UNGROUNDED.len());
    let span_alt = format!("\"span\":{{\"start\":37,\"end\":{}}}", UNGROUNDED.len());
    assert!(
        record.contains(&span) || record.contains(&span_alt),
        "{record}"
    );
}

#[test]
fn block_refuses_naming_the_claims_and_a_bad_extension_is_a_400() {
    let mock = Mock::start();
    let gw = Gateway::start(Some(&mock.url), Some("[grounding]\naction = \"block\"\n"));
    let r = gw.post("/v1/chat/completions", &gw.key, &rag_body(UNGROUNDED));
    assert_eq!(r.status(), 403);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "ungrounded_answer");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("He then moved to Paris in 2011.") && msg.contains("Paris, 2011"),
        "{msg}"
    );
    assert!(
        !msg.contains("hosted the show"),
        "the supported claim is not listed: {msg}"
    );

    let ok = gw.post("/v1/chat/completions", &gw.key, &rag_body(GROUNDED));
    assert_eq!(ok.status(), 200);

    let mut bad = rag_body(GROUNDED);
    bad["portcullis"] = json!({"documents": "one long string"});
    let r = gw.post("/v1/chat/completions", &gw.key, &bad);
    assert_eq!(r.status(), 400);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["param"], "portcullis.documents");
    assert_eq!(
        chats(&mock).len(),
        2,
        "a malformed request never reaches the provider"
    );
}
