"""PII and secrets through the official SDK (issue 4): pseudonymised on the way up, restored
on the way down (streaming included), and refused with the policy error in block mode."""
import json

import openai
import pytest
from openai import OpenAI

from conftest import Gateway

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
SSN = "536-32-3065"
PHONE = "+1 (415) 555-2671"
NAME = "Jane Roe"
KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
MESSAGE = (f"My name is {NAME}. Email me at {EMAIL} or call {PHONE}. "
           f"My SSN is {SSN} and my card is {CARD}.")


def client(gw):
    return OpenAI(base_url=gw.url, api_key=gw.key, max_retries=0)


def sent_upstream(upstream):
    return json.dumps(upstream.requests()[-1])


def test_pseudonymised_upstream_and_restored_for_the_client(gateway, upstream):
    r = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": MESSAGE}])
    assert r.choices[0].message.content == "Echo: " + MESSAGE
    body = sent_upstream(upstream)
    for raw in (EMAIL, CARD, SSN, PHONE, NAME, "Jane"):
        assert raw not in body, f"{raw!r} reached the provider"
    for placeholder in ("[EMAIL_1]", "[CREDIT_CARD_1]", "[US_SSN_1]", "[PHONE_1]", "[PERSON_1]"):
        assert placeholder in body


def test_streamed_answers_restore_placeholders_split_across_chunks(gateway, upstream):
    # The mock streams three characters per chunk, so placeholders arrive in pieces.
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini-mock-chars-3", stream=True,
        messages=[{"role": "user", "content": MESSAGE}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Echo: " + MESSAGE
    assert EMAIL not in sent_upstream(upstream)


def test_secrets_are_redacted_not_restored(gateway, upstream):
    r = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"debug this: OPENAI_KEY={KEY}"}])
    assert KEY not in sent_upstream(upstream)
    assert KEY not in r.choices[0].message.content
    assert "[SECRET]" in r.choices[0].message.content


def test_tool_results_and_arguments_are_scanned(gateway, upstream):
    messages = [
        {"role": "user", "content": "look up my account"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "lookup", "arguments": json.dumps({"email": EMAIL})}}]},
        {"role": "tool", "tool_call_id": "c1", "content": f"Account holder SSN {SSN}"},
        {"role": "user", "content": "thanks"},
    ]
    client(gateway).chat.completions.create(model="gpt-4o-mini", messages=messages)
    body = sent_upstream(upstream)
    assert EMAIL not in body and SSN not in body


def test_block_mode_raises_the_policy_error_without_the_value(make_gateway, upstream):
    gw = make_gateway(extra_args=["--upstream", upstream.url],
                      config_text='[pii.actions]\nUS_SSN = "block"\nCREDIT_CARD = "block"\n')
    before = len(upstream.requests())
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as e:
            r = client(gw).chat.completions.create(
                model="gpt-4o-mini", stream=stream, messages=[{"role": "user", "content": MESSAGE}])
            if stream:
                list(r)
        assert e.value.code == "pii_blocked"
        message = str(e.value)
        assert "US_SSN" in message and "CREDIT_CARD" in message
        assert SSN not in message and CARD not in message
    assert len(upstream.requests()) == before, "a blocked request reached the provider"
