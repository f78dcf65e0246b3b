"""Groundedness through the official SDK (issue 21): documents sent with extra_body reach the
model as messages (the extension never does), and an ungrounded answer is annotated with its
score or refused naming its unsupported claims."""
import openai
import pytest
from openai import OpenAI

DOC = "Bob Barker hosted The Price Is Right for 35 years and retired in 2007."
UNGROUNDED = "Barker hosted the show for 35 years. He then moved to Paris in 2011."


def ask(gw, answer):
    c = OpenAI(base_url=gw.url, api_key=gw.key, max_retries=0)
    return c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"MOCK_SAY: {answer}"}],
        extra_body={"portcullis": {"documents": [DOC]}})


def test_an_ungrounded_answer_is_annotated_and_the_extension_stays_home(make_gateway, upstream):
    gw = make_gateway(extra_args=["--upstream", upstream.url])
    raw = ask(gw, UNGROUNDED)
    assert raw.headers["x-portcullis-grounding"].endswith("; unsupported=1")
    assert raw.parse().choices[0].message.content == UNGROUNDED
    sent = [r for r in upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert "portcullis" not in sent
    assert any("retired in 2007" in str(m.get("content")) for m in sent["messages"])


def test_block_refuses_naming_the_unsupported_claim(make_gateway, upstream):
    gw = make_gateway(extra_args=["--upstream", upstream.url],
                      config_text="[grounding]\naction = \"block\"\n")
    with pytest.raises(openai.PermissionDeniedError) as e:
        ask(gw, UNGROUNDED)
    assert e.value.code == "ungrounded_answer"
    assert "He then moved to Paris in 2011." in e.value.message
