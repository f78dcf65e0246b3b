"""The official OpenAI Python SDK against the real gateway binary, unchanged."""
import time

import openai
import pytest
from openai import OpenAI

from conftest import free_port


def client(gw, key=None, **kw):
    return OpenAI(base_url=gw.url, api_key=key or gw.key, max_retries=0, **kw)


def test_plain_completion(gateway, upstream):
    r = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "Echo: hello there"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    seen = upstream.requests()[-1]
    # The provider key goes upstream; the gateway key never does.
    assert seen["authorization"] == "Bearer sk-provider-secret"
    assert gateway.key not in str(seen)


def test_request_id_header(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-request-id"].startswith("req_")


def test_streaming_arrives_in_chunks(gateway):
    # Output guards (on by default) hold back a short tail so a secret split across chunks is
    # still caught; past that tail, text flows as the upstream drips it.
    words = "one two three four five six seven eight nine ten " * 4
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini-mock-drip-30", stream=True,
        messages=[{"role": "user", "content": words}])
    arrivals, text = [], ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content
    assert text == "Echo: " + words
    assert len(arrivals) >= 5
    # Chunks were spread out as the upstream dripped them, not delivered in one burst.
    assert arrivals[-1] - arrivals[0] > 0.05


def test_streaming_usage_only_when_asked(gateway):
    chunks = list(client(gateway).chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count me"}]))
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    chunks = list(client(gateway).chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "count me"}]))
    assert all(c.usage is None for c in chunks)


def test_models_and_embeddings(gateway):
    c = client(gateway)
    ids = [m.id for m in c.models.list()]
    assert "gpt-4o-mini" in ids
    e = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 16
    assert abs(sum(x * x for x in e.data[0].embedding) - 1.0) < 1e-3
    e = c.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert len(e.data[0].embedding) == 16


def test_moderations_pass_through(gateway):
    m = client(gateway).moderations.create(model="omni-moderation-latest", input="MOCK_VIOLENCE now")
    assert m.results[0].flagged and m.results[0].categories.violence


def test_bad_key_is_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError) as e:
        client(gateway, key="pk-not-a-real-key").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"


def test_malformed_body_is_bad_request(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages="not a list")
    assert e.value.status_code == 400
    assert e.value.param == "messages"


def test_upstream_500_is_internal_server_error(gateway):
    with pytest.raises(openai.InternalServerError) as e:
        client(gateway).chat.completions.create(
            model="mock-error-500", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 500


def test_upstream_down_is_502(make_gateway):
    dead = free_port()
    gw = make_gateway(extra_args=["--upstream", f"http://127.0.0.1:{dead}/v1"])
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502


def test_rate_limit_is_rate_limit_error_with_headers(gateway):
    key = gateway.create_key("limited", extra=["--rpm", "1"])
    c = client(gateway, key=key)
    ok = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "first"}])
    assert ok.headers["x-ratelimit-limit-requests"] == "1"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "second"}])
    assert e.value.status_code == 429
    assert e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"
