"""One model, many callers: generations never interleave on the one KV cache."""
import threading

import pytest

from edgegen import EdgegenError, load

PROMPTS = ["import json\ndef load(fp):", "class Encoder:\n    def __init__(self", "x = [1, 2,", "héllo wörld"]


def expected_texts(model) -> dict[str, str]:
    return {prompt: model.generate(prompt, max_new_tokens=20, mode="verify").text for prompt in PROMPTS}


def test_a_second_stream_in_the_same_thread_is_a_clear_error_and_the_first_stays_right(mars_model):
    expected = expected_texts(mars_model)
    first = mars_model.stream(PROMPTS[0], max_new_tokens=20, mode="verify")
    pieces = [next(first)]
    second = mars_model.stream(PROMPTS[1], max_new_tokens=20, mode="verify")
    with pytest.raises(EdgegenError, match="unfinished stream of this thread"):
        next(second)
    pieces += list(first)
    assert "".join(pieces) == expected[PROMPTS[0]]
    assert mars_model.stream(PROMPTS[1], max_new_tokens=20, mode="verify").run().text == expected[PROMPTS[1]]
    abandoned = mars_model.stream(PROMPTS[2], max_new_tokens=20)
    next(abandoned)
    abandoned.close()  # frees the model
    assert mars_model.generate(PROMPTS[3], max_new_tokens=20, mode="verify").text == expected[PROMPTS[3]]


def test_threads_sharing_a_model_each_get_their_own_right_text(mars_model):
    expected = expected_texts(mars_model)
    got, errors = {}, []

    def work(prompt):
        try:
            for _ in range(3):
                got.setdefault(prompt, []).append(mars_model.generate(prompt, max_new_tokens=20, mode="verify").text)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(prompt,)) for prompt in PROMPTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and got == {prompt: [text] * 3 for prompt, text in expected.items()}


def test_a_busy_model_makes_a_thread_wait_at_most_the_timeout(exported):
    model = load(exported["mars"], provider="cpu", max_context=256, wait=0.05)
    holder = model.stream(PROMPTS[0], max_new_tokens=20)
    next(holder)
    failures = []
    thread = threading.Thread(target=lambda: failures.append(pytest.raises(EdgegenError, model.generate, PROMPTS[1])))
    thread.start()
    thread.join()
    assert "stayed busy" in str(failures[0].value)
    holder.close()


def test_chat_turns_sent_from_two_threads_are_both_kept(mars_model):
    chat = mars_model.chat(max_new_tokens=8, mode="verify")
    threads = [threading.Thread(target=chat.send, args=(text,)) for text in ("first question", "second question")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    users = [m["content"] for m in chat.messages if m["role"] == "user"]
    assert sorted(users) == ["first question", "second question"] and len(chat.messages) == 4
