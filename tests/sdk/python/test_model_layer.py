"""Model layer through the official SDK: parameter policy and moderation (issue 7)."""
import urllib.request

import openai
import pytest
from openai import OpenAI

CONSERVATIVE = """
[params]
preset = "conservative"
[moderation]
provider = "upstream"
output = true
fallback = "none"
on_error = "fail_closed"
"""


def client(gw):
    return OpenAI(base_url=gw.url, api_key=gw.key, max_retries=0)


@pytest.fixture()
def strict(make_gateway, upstream):
    return make_gateway(extra_args=["--upstream", upstream.url], config_text=CONSERVATIVE)


def test_clamped_parameters_are_what_the_upstream_receives(strict, upstream):
    client(strict).chat.completions.create(
        model="gpt-4o-mini", temperature=1.2, top_p=1.0,
        messages=[{"role": "user", "content": "tell me a story about clamps"}])
    sent = [r for r in upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 500
    assert sent["frequency_penalty"] == 0.5 and sent["presence_penalty"] == 0.5


def test_flagged_input_is_refused_before_the_model(strict, upstream):
    before = len([r for r in upstream.requests() if r["path"] == "/v1/chat/completions"])
    with pytest.raises(openai.BadRequestError) as e:
        client(strict).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "MOCK_VIOLENCE please"}])
    assert e.value.code == "content_policy_violation"
    assert "violence" in e.value.message
    after = len([r for r in upstream.requests() if r["path"] == "/v1/chat/completions"])
    assert after == before, "a flagged request never reaches the model"


OUTPUT_ONLY = """
[moderation]
provider = "upstream"
input = false
output = true
"""


@pytest.fixture()
def output_only(make_gateway, upstream):
    return make_gateway(extra_args=["--upstream", upstream.url], config_text=OUTPUT_ONLY)


def test_flagged_output_is_withheld(output_only):
    strict = output_only
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(strict).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "MOCK_SAY: something mock_hate here"}])
    assert e.value.code == "output_flagged"


def test_flagged_output_ends_a_stream_with_an_error(output_only):
    strict = output_only
    stream = client(strict).chat.completions.create(
        model="gpt-4o-mini", stream=True,
        messages=[{"role": "user", "content": "MOCK_SAY: a long calm introduction that goes on and on for a while before it says mock_hate and then more words"}])
    seen = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += chunk.choices[0].delta.content
    assert "withheld" in str(e.value)
    assert "mock_hate" not in seen


def test_provider_outage_follows_fail_closed_and_fail_open(make_gateway, upstream):
    closed = make_gateway(extra_args=["--upstream", upstream.url], config_text="""
[moderation]
provider = "upstream"
model = "mock-error-500"
fallback = "none"
on_error = "fail_closed"
""")
    with pytest.raises(openai.APIStatusError) as e:
        client(closed).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    assert e.value.status_code == 503
    opened = make_gateway(extra_args=["--upstream", upstream.url], config_text="""
[moderation]
provider = "upstream"
model = "mock-error-500"
fallback = "none"
on_error = "fail_open"
""")
    r = client(opened).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "Echo: hello"
    # Both outages raised the operators' alert.
    for gw in (closed, opened):
        metrics = urllib.request.urlopen(gw.url.removesuffix("/v1") + "/metrics").read().decode()
        assert 'portcullis_alerts_total{kind="guard_unavailable"} 1' in metrics, metrics
    fallback = make_gateway(extra_args=["--upstream", upstream.url], config_text="""
[moderation]
provider = "upstream"
model = "mock-error-500"
fallback = "local"
on_error = "fail_closed"
""")
    r = client(fallback).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is a good recipe for banana bread?"}])
    assert r.choices[0].message.content.startswith("Echo:")


def test_refused_parameter_names_itself(make_gateway, upstream):
    gw = make_gateway(extra_args=["--upstream", upstream.url], config_text="[params.logit_bias]\nrefuse = true\n")
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).chat.completions.create(
            model="gpt-4o-mini", logit_bias={"1234": 5}, messages=[{"role": "user", "content": "hi"}])
    assert e.value.param == "logit_bias"


def test_routes_pin_the_model_and_teams_get_their_own_range(make_gateway, upstream):
    gw = make_gateway(extra_args=["--upstream", upstream.url], config_text="""
[params]
preset = "conservative"
[params.teams.research.temperature]
max = 1.0
[params.routes.rag]
pin_model = "gpt-4o-mini"
[limits.teams.research]
routes = ["rag"]
""")
    def last_sent():
        return [r for r in upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"]

    # The fixture's key belongs to team "research": 0.8 is within its range.
    client(gw).chat.completions.create(
        model="gpt-4o", temperature=0.8, messages=[{"role": "user", "content": "team range"}])
    sent = last_sent()
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4o", 0.8, 500)
    # A route the team is granted refines the default policy: model pinned, 0.3 ceiling.
    client(gw).chat.completions.create(
        model="gpt-4o", temperature=0.8, messages=[{"role": "user", "content": "rag route"}],
        extra_headers={"x-portcullis-route": "rag"})
    sent = last_sent()
    assert (sent["model"], sent["temperature"]) == ("gpt-4o-mini", 0.3)
