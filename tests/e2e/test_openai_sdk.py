# SPDX-License-Identifier: Apache-2.0
"""inferd driven by the official openai Python SDK, unchanged: chat and
completions, streaming and not, n, stop, seeds, logprobs, usage, model
listing, and errors surfacing as the SDK's own exception types."""
import openai
import pytest

CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_models_list(client, server):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["SmolLM2-135M-Instruct.Q4_1"]


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=CHAT, max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert "Paris" in c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 10
    assert 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_matches_non_streaming(client):
    full = client.chat.completions.create(model="", messages=CHAT, max_tokens=24, temperature=0)
    stream = client.chat.completions.create(model="", messages=CHAT, max_tokens=24, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    text, finish, usage, roles = "", None, None, 0
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles += 1
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert roles == 1
    assert text == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason
    assert usage.completion_tokens == full.usage.completion_tokens
    assert usage.prompt_tokens == full.usage.prompt_tokens


def test_completions(client):
    r = client.completions.create(model="", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert "Paris" in r.choices[0].text
    s = client.completions.create(model="", prompt="The capital of France is", max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in s) == r.choices[0].text


def test_completions_default_max_tokens_is_16(client):
    r = client.completions.create(model="", prompt="Count: one, two, three,", temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16
    assert r.choices[0].finish_reason == "length"


def test_n_choices(client):
    r = client.chat.completions.create(model="", messages=CHAT, max_tokens=12, n=2, temperature=1.0, seed=5)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)
    assert 2 <= r.usage.completion_tokens <= 24  # both choices count


def test_stop_string(client):
    full = client.completions.create(model="", prompt="Once upon a time", max_tokens=30, temperature=0)
    text = full.choices[0].text
    stop = text[10:13]
    r = client.completions.create(model="", prompt="Once upon a time", max_tokens=30, temperature=0, stop=[stop])
    assert r.choices[0].text == text[: text.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_seed_reproducible(client):
    kw = dict(model="", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=24, temperature=1.0)
    a = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    c = client.chat.completions.create(seed=4321, **kw).choices[0].message.content
    assert a == b
    assert a != c


def test_logprobs(client):
    r = client.chat.completions.create(model="", messages=CHAT, max_tokens=6, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        # greedy: the chosen token is the most likely one
        assert entry.token == entry.top_logprobs[0].token


def test_completion_logprobs_legacy_shape(client):
    r = client.completions.create(model="", prompt="Hello", max_tokens=4, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert all(len(t) <= 2 for t in lp.top_logprobs)


def test_max_tokens_and_length_finish(client):
    r = client.chat.completions.create(model="", messages=CHAT, max_tokens=3, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3
    assert r.choices[0].finish_reason == "length"


def test_errors_are_sdk_exceptions(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="", messages=[], max_tokens=4)
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="", messages=CHAT, temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="", messages=CHAT, tools=[{"type": "function", "function": {"name": "f"}}])
    assert e.value.body["param"] == "tools"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    assert e.value.body["code"] == "model_not_found"
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="", prompt="x " * 9000, max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
