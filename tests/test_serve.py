"""`edgegen serve` driven by the official openai client, as an app would: a server subprocess on a free port."""
import json
import threading
import time
import urllib.request

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")

import edgegen  # noqa: E402
from edgegen.serve import spawn  # noqa: E402

NUMBER = [{"role": "user", "content": "Write 31415 in words."}]


@pytest.fixture(scope="module")
def local():
    return edgegen.load()


@pytest.fixture(scope="module")
def server():
    process, url = spawn()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_chat_answers_as_the_model_does_in_process(client, local):
    reply = client.chat.completions.create(model="default", messages=NUMBER)
    expected = local.generate(NUMBER)
    assert reply.choices[0].message.content == expected.text == "thirty-one thousand four hundred fifteen"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == len(local.encode_prompt(NUMBER))
    assert reply.usage.completion_tokens == len(expected.token_ids)
    assert [m.id for m in client.models.list().data] == ["default"]


def test_streaming_gives_the_same_text_and_usage_last(client):
    chunks = list(client.chat.completions.create(model="default", messages=NUMBER, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "thirty-one thousand four hundred fifteen"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices


def test_options_stop_strings_and_edgegen_knobs(client, local):
    stopped = client.chat.completions.create(model="default", messages=NUMBER, stop=["thousand"])
    assert stopped.choices[0].message.content == local.generate(NUMBER, stop=["thousand"]).text == "thirty-one "
    lossy = client.chat.completions.create(model="default", messages=NUMBER, max_tokens=8,
                                           extra_body={"mode": "threshold", "threshold": 0.9})
    assert lossy.choices[0].message.content == local.generate(NUMBER, max_new_tokens=8, threshold=0.9).text
    assert lossy.choices[0].finish_reason == "length"
    completion = client.completions.create(model="default", prompt="x = 1", max_tokens=6)
    assert completion.choices[0].text == local.generate("x = 1", max_new_tokens=6).text


@pytest.mark.parametrize("request_options, message", [
    ({"n": 2}, "one choice per request"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "does not take tools"),
    ({"response_format": {"type": "xml"}, "stream": True}, "response_format must be"),  # refused before streaming
    ({"functions": [{"name": "f"}]}, "use tools"),
    ({"response_format": {"type": "xml"}}, "response_format must be"),
    ({"extra_body": {"vibes": 1}}, "unknown field 'vibes'"),
    ({"temperature": -1}, "temperature must be at least 0"),
    ({"messages": []}, "messages must be a non-empty list"),
    ({"logprobs": True}, "log-probabilities are not returned"),
])
def test_bad_requests_are_openai_style_400s(client, request_options, message):
    with pytest.raises(openai.BadRequestError, match=message):
        client.chat.completions.create(model="default", **{"messages": NUMBER, **request_options})


def metric(url: str, name: str) -> float:
    lines = urllib.request.urlopen(url + "/metrics").read().decode().splitlines()
    return float(next(line.split()[1] for line in lines if line.startswith(name + " ")))


def test_a_client_that_leaves_mid_stream_frees_the_model_at_once(exported):
    """The tiny random model runs to max_tokens (it rarely ends), so the stream is still going when it is left."""
    process, url = spawn(exported["mars"])
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        for _ in range(3):
            stream = client.completions.create(model="mars", prompt="x = 1", max_tokens=200, stream=True)
            next(iter(stream))
            stream.close()
            started = time.perf_counter()
            assert client.completions.create(model="mars", prompt="y = 2", max_tokens=5).choices[0].text is not None
            assert time.perf_counter() - started < 10
        assert metric(url, "edgegen_cancelled_total") >= 1 and metric(url, "edgegen_queue_depth") == 0
        assert metric(url, "edgegen_requests_total") == 3  # the left streams were stopped, not run to their end
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_api_key_is_required_when_set():
    process, url = spawn("--api-key", "sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=url + "/v1", api_key="sesame", max_retries=0)
        assert ok.chat.completions.create(model="default", messages=NUMBER).choices[0].message.content
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_full_queue_answers_503_with_retry_after(exported):
    process, url = spawn(exported["mars"], "--max-queue", "0")
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    outcomes = []

    def ask():
        try:
            client.completions.create(model="mars", prompt="x = 1", max_tokens=200)
            outcomes.append("ok")
        except openai.APIStatusError as e:
            outcomes.append((e.status_code, e.response.headers.get("retry-after")))

    try:
        threads = [threading.Thread(target=ask) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "ok" in outcomes and (503, "1") in outcomes, outcomes
    assert all(outcome in ("ok", (503, "1")) for outcome in outcomes)


def test_rag_requests_answer_as_rag_ask_does(tmp_path):
    from edgegen import Compressor, LatentStore, index_evidence, rag
    from edgegen.models import RAG_COMPRESSOR, RAG_GENERATOR

    compressor = Compressor(RAG_COMPRESSOR)
    with LatentStore.for_compressor(tmp_path / "store", compressor) as store:
        index_evidence(store, [{"text": "Kosa Gili was born in Kelmar."}, {"text": "The Rhine flows through Basel."}],
                       compressor, keep_text=True)
    question = [{"role": "user", "content": "Where was Kosa Gili born?"}]
    expected = rag(question[0]["content"], tmp_path / "store", edgegen.load(RAG_GENERATOR), compressor, k=2).text
    process, url = spawn("--rag", tmp_path / "store")
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="generator", messages=question, extra_body={"rag": {"k": 2}})
        assert reply.choices[0].message.content.strip() == expected
        with pytest.raises(openai.BadRequestError, match="rag must be an object"):
            client.chat.completions.create(model="generator", messages=question, extra_body={"rag": {"k": 0}})
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_rag_requests_to_a_server_without_a_store_are_refused(client):
    with pytest.raises(openai.BadRequestError, match="start it with --rag STORE"):
        client.chat.completions.create(model="default", messages=NUMBER, extra_body={"rag": {"k": 2}})


def test_json_schema_responses_validate(client, local):
    from test_structured import FORMAT, fits

    reply = client.chat.completions.create(model="default", messages=NUMBER, max_tokens=200, response_format=FORMAT)
    assert fits(json.loads(reply.choices[0].message.content))
    assert reply.choices[0].message.content == local.generate(NUMBER, max_new_tokens=200, response_format=FORMAT).text
